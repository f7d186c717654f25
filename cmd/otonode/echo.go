package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/otonode/otonode/dimse"
)

// scuFlags are the connection flags echo and push share.
type scuFlags struct {
	host, port, aet, calledAET string
	maxPDU                     uint
	timeout                    time.Duration
}

func (f *scuFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.host, "host", "127.0.0.1", "peer host")
	fs.StringVar(&f.port, "port", "104", "peer port")
	fs.StringVar(&f.aet, "aet", "OTONODE", "our (calling) AE title")
	fs.StringVar(&f.calledAET, "called-aet", "ANY-SCP", "the peer's (called) AE title")
	fs.UintVar(&f.maxPDU, "max-pdu", dimse.DefaultMaxPDULength, "maximum PDU length we receive")
	fs.DurationVar(&f.timeout, "timeout", 30*time.Second, "how long to wait for the peer at each step")
}

func (f *scuFlags) options() dimse.DialOptions {
	return dimse.DialOptions{CallingAETitle: f.aet, CalledAETitle: f.calledAET,
		MaxPDULength: uint32(f.maxPDU), ARTIMTimeout: f.timeout, DIMSETimeout: f.timeout}
}

func (f *scuFlags) addr() string { return net.JoinHostPort(f.host, f.port) }

// parseInterleaved parses flags that may come before, between or after the
// positional arguments, and returns the positional ones.
func parseInterleaved(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		if fs.NArg() == 0 {
			return pos, nil
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
}

func runEcho(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("echo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var f scuFlags
	f.register(fs)
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: otonode echo --host HOST --port PORT [--aet AE] [--called-aet AE]\n\nVerify a DICOM peer with C-ECHO.")
		fs.PrintDefaults()
	}
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 0 {
		return fmt.Errorf("%w: unexpected arguments %q", errUsage, pos)
	}
	start := time.Now()
	a, err := dimse.Dial(ctx, f.addr(), f.options())
	if err != nil {
		return err
	}
	if err := a.Echo(ctx); err != nil {
		a.Abort()
		return err
	}
	if err := a.Release(ctx); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "C-ECHO %s@%s: success (%v)\n", f.calledAET, f.addr(), time.Since(start).Round(time.Millisecond))
	return nil
}

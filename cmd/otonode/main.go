// Command otonode is the DICOM node for temporal-bone CT: it receives series,
// analyses the inner ear and returns the results to PACS. Each subcommand
// lives in its own file; main only parses the first argument and dispatches.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sort"
	"syscall"
)

// command is one subcommand of the otonode binary.
type command struct {
	name    string
	summary string
	// run receives the arguments after the subcommand name. It returns
	// errUsage (possibly wrapped) when the arguments are wrong.
	run func(ctx context.Context, args []string, stdout, stderr io.Writer) error
}

// errUsage marks an error in the command line rather than in the work.
var errUsage = errors.New("usage")

// commands lists every subcommand; each entry's function sits in a file
// named for the command.
func commands() []command {
	cmds := []command{
		// One line per subcommand; keep this list free of logic.
		{name: "version", summary: "print the version", run: runVersion},
		{name: "analyze", summary: "analyse a CT series offline (segmentation, landmarks, uncertainty)", run: runAnalyze},
		{name: "evaluate", summary: "score the analysis on a labelled dataset with the paper's metrics", run: runEvaluate},
		{name: "bench", summary: "benchmarks against a peer in the same run (bench analysis: the paper's protocol vs ours)", run: runBench},
		{name: "echo", summary: "verify a DICOM peer with C-ECHO", run: runEcho},
		{name: "push", summary: "send DICOM files and folders by C-STORE", run: runPush},
		{name: "serve", summary: "run the ingest node (C-STORE SCP, index, completion, NATS events)", run: runServe},
		{name: "complete", summary: "complete a receiving series now (via the node's HTTP API)", run: runComplete},
		{name: "find", summary: "query a DICOM peer by C-FIND", run: runFind},
		{name: "move", summary: "have a DICOM peer send instances to an AE by C-MOVE", run: runMove},
		{name: "get", summary: "retrieve instances from a DICOM peer by C-GET into a folder", run: runGet},
		{name: "worker", summary: "run an analysis worker on the node's work stream (serve starts one itself)", run: runWorker},
		{name: "status", summary: "list recent analyses with their flags (from the node's database)", run: runStatus},
		{name: "phantom", summary: "generate synthetic temporal-bone CT with ground truth (case, dataset, preview)", run: runPhantom},
		{name: "exports", summary: "list the export outbox (pending, sent, dead); exports retry sends dead rows again", run: runExports},
	}
	sort.Slice(cmds, func(i, j int) bool { return cmds[i].name < cmds[j].name })
	return cmds
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage(stderr)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	for _, c := range commands() {
		if c.name != args[0] {
			continue
		}
		err := c.run(ctx, args[1:], stdout, stderr)
		switch {
		case err == nil:
			return 0
		case errors.Is(err, flag.ErrHelp):
			return 0
		case errors.Is(err, errUsage):
			fmt.Fprintf(stderr, "otonode %s: %v\n", c.name, err)
			return 2
		default:
			fmt.Fprintf(stderr, "otonode %s: %v\n", c.name, err)
			return 1
		}
	}
	fmt.Fprintf(stderr, "otonode: unknown command %q\n\n", args[0])
	usage(stderr)
	return 2
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: otonode COMMAND [arguments]\n\ncommands:")
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-10s %s\n", c.name, c.summary)
	}
	fmt.Fprintln(w, "\nRun 'otonode COMMAND -h' for the options of one command.")
}

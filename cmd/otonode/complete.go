package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

func runComplete(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("complete", flag.ContinueOnError)
	fs.SetOutput(stderr)
	node := fs.String("node", "http://127.0.0.1:8080", "the node's HTTP address (http.listen of otonode serve)")
	timeout := fs.Duration("timeout", 10*time.Second, "how long to wait for the node")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: otonode complete [--node URL] SERIES_UID...\n\nComplete the receiving revision of each series now, whatever its timers say.")
		fs.PrintDefaults()
	}
	uids, err := parseInterleaved(fs, args)
	if err != nil {
		return err
	}
	if len(uids) == 0 {
		return fmt.Errorf("%w: no series instance UID given", errUsage)
	}
	base := strings.TrimRight(*node, "/")
	if !strings.Contains(base, "://") {
		base = "http://" + base
	}
	client := &http.Client{Timeout: *timeout}
	failed := 0
	for _, uid := range uids {
		rq, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/series/"+url.PathEscape(uid)+"/complete", nil)
		if err != nil {
			return err
		}
		resp, err := client.Do(rq)
		if err != nil {
			return fmt.Errorf("node %s: %w", base, err)
		}
		var body map[string]any
		json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			failed++
			fmt.Fprintf(stderr, "%s: %s: %v\n", uid, resp.Status, body["error"])
			continue
		}
		fmt.Fprintf(stdout, "%s revision %v complete (%v instances)\n", uid, body["revision"], body["instances"])
	}
	if failed > 0 {
		return fmt.Errorf("%d of %d series not completed", failed, len(uids))
	}
	return nil
}

package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/otonode/otonode/analysis"
	"github.com/otonode/otonode/analysis/evaluate"
	"github.com/otonode/otonode/analysis/infer"
	"github.com/otonode/otonode/analysis/tta"
)

func runEvaluate(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("evaluate", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dataset := fs.String("dataset", "", "dataset folder (dataset.json and case folders; required)")
	splits := fs.String("split", "test", "comma-separated splits to evaluate; empty means all")
	model := fs.String("model", os.Getenv("OTONODE_MODEL"), "model manifest; default $OTONODE_MODEL")
	ortLib := fs.String("ort-lib", "", "path of libonnxruntime.so; default $ORT_LIB")
	provider := fs.String("provider", "cpu", "execution provider: cpu or cuda")
	threads := fs.Int("threads", 0, "intra-op threads; 0 means one per core")
	largest := fs.Bool("largest-component", false, "keep only the largest connected component of each ear's segmentation (default: as the model's manifest says)")
	raw := fs.Bool("raw", false, "the network's own output: no post-processing the manifest asks for (the paper's protocol)")
	ttaSet := fs.String("tta", "", "comma-separated TTA transforms; default all 10")
	ttaFlags := addTTAFlags(fs)
	format := fs.String("format", "table", "output: table (summaries), csv (one row per case) or json (both)")
	by := fs.String("by", "variant", "group summaries by: variant or split")
	limit := fs.Int("limit", 0, "evaluate at most this many cases (0: all)")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: otonode evaluate --dataset DIR [--model MANIFEST] [--format table|csv|json]\n\n"+
			"Analyse every case of a labelled dataset and print the paper's metrics: Dice, IoU,\n"+
			"volumetric similarity, Hausdorff and average Hausdorff distance, landmark errors.")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *dataset == "" || fs.NArg() > 0 {
		return fmt.Errorf("%w: need --dataset DIR and no other arguments", errUsage)
	}
	if *model == "" {
		return fmt.Errorf("%w: no model: give --model or set OTONODE_MODEL", errUsage)
	}
	key := map[string]func(evaluate.CaseResult) string{
		"variant": func(r evaluate.CaseResult) string { return r.Variant },
		"split":   func(r evaluate.CaseResult) string { return r.Split },
	}[*by]
	if key == nil {
		return fmt.Errorf("%w: --by %q", errUsage, *by)
	}
	var sp []string
	if *splits != "" {
		sp = strings.Split(*splits, ",")
	}
	cases, err := evaluate.ReadDataset(*dataset, sp...)
	if err != nil {
		return err
	}
	if *limit > 0 && len(cases) > *limit {
		cases = cases[:*limit]
	}
	opts := analysis.Options{LargestComponent: *largest, Raw: *raw}
	ttaFlags.apply(&opts)
	if *ttaSet != "" {
		if opts.TTA, err = tta.ByName(strings.Split(*ttaSet, ",")); err != nil {
			return fmt.Errorf("%w: %v", errUsage, err)
		}
	}
	man, net, err := analysis.OpenModel(*model, *ortLib, infer.Options{Provider: infer.Provider(*provider), Threads: *threads})
	if err != nil {
		return err
	}
	defer net.Close()
	a := &analysis.Analyzer{Manifest: man, Model: net, Options: opts}
	start := time.Now()
	var rs []evaluate.CaseResult
	for n, c := range cases {
		fmt.Fprintf(stderr, "\r[%d/%d] %s  %.0fs elapsed", n+1, len(cases), c.ID, time.Since(start).Seconds())
		r, err := evaluate.Run(ctx, a, c)
		if err != nil {
			fmt.Fprintln(stderr)
			return err
		}
		rs = append(rs, *r)
	}
	fmt.Fprintf(stderr, "\r%d cases in %.0fs%30s\n", len(cases), time.Since(start).Seconds(), "")
	ss := evaluate.Summarise(rs, key)
	switch *format {
	case "table":
		return evaluate.WriteTable(stdout, ss)
	case "csv":
		return evaluate.WriteCSV(stdout, rs)
	case "json":
		return evaluate.WriteJSON(stdout, rs, ss)
	}
	return fmt.Errorf("%w: --format %q", errUsage, *format)
}

// Package storescu sends DICOM files by C-STORE: it scans files and
// folders, proposes each file's own transfer syntax (plus uncompressed
// fallbacks) and stores every instance verbatim, opening further
// associations when the files need more than 128 presentation contexts.
package storescu

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"

	"github.com/otonode/otonode/dimse"
)

// File is a DICOM Part-10 file found by Scan.
type File struct {
	Path string
	Size int64
	Meta dimse.FileMeta
}

// Scan walks paths (files, or folders recursively) and returns the DICOM
// files in a stable order. Files that are not Part-10 DICOM are reported in
// skipped, not fatal.
func Scan(paths []string) (files []File, skipped []error, err error) {
	for _, root := range paths {
		err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if d.IsDir() || !d.Type().IsRegular() {
				return nil
			}
			f, err := readMeta(p)
			if err != nil {
				skipped = append(skipped, fmt.Errorf("%s: %w", p, err))
				return nil
			}
			files = append(files, f)
			return nil
		})
		if err != nil {
			return nil, skipped, err
		}
	}
	sort.SliceStable(files, func(i, j int) bool { return files[i].Path < files[j].Path })
	return files, skipped, nil
}

func readMeta(p string) (File, error) {
	f, err := os.Open(p)
	if err != nil {
		return File{}, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return File{}, err
	}
	fm, err := dimse.ReadFileMeta(bufio.NewReaderSize(f, 4096))
	if err != nil {
		return File{}, err
	}
	return File{Path: p, Size: st.Size(), Meta: fm}, nil
}

// Progress is reported after each file.
type Progress struct {
	Done, Total       int
	Bytes, TotalBytes int64
	Failed            int
	Last              File
	LastErr           error
}

// Result summarises a push.
type Result struct {
	Stored, Warnings int
	Failed           []error
}

// maxContexts is the number of presentation contexts one association can
// carry (PS3.8 9.3.2.2).
const maxContexts = 128

// maxBreaks is how many associations in a row may break before Push stops.
const maxBreaks = 3

// Push stores files on addr, as few associations as the contexts allow.
// A failed instance is recorded and the push goes on; an association that
// breaks ends the push with an error.
func Push(ctx context.Context, addr string, opts dimse.DialOptions, files []File, progress func(Progress)) (Result, error) {
	var res Result
	p := Progress{Total: len(files)}
	for _, f := range files {
		p.TotalBytes += f.Size
	}
	breaks := 0
	for start := 0; start < len(files); {
		// Take files while their proposals fit in one association.
		seen := map[[2]string]bool{}
		var props []dimse.Proposal
		end := start
		for ; end < len(files); end++ {
			m := files[end].Meta
			k := [2]string{m.MediaStorageSOPClassUID, m.TransferSyntaxUID}
			if seen[k] {
				continue
			}
			more := dimse.StorageProposals(m.MediaStorageSOPClassUID, m.TransferSyntaxUID)
			var add []dimse.Proposal
			for _, pr := range more {
				pk := [2]string{pr.AbstractSyntax, pr.TransferSyntaxes[0]}
				if !seen[pk] {
					add = append(add, pr)
				}
			}
			if len(props)+len(add) > maxContexts {
				break
			}
			for _, pr := range add {
				seen[[2]string{pr.AbstractSyntax, pr.TransferSyntaxes[0]}] = true
			}
			seen[k] = true
			props = append(props, add...)
		}
		o := opts
		o.Proposals = props
		a, err := dimse.Dial(ctx, addr, o)
		if err != nil {
			return res, err
		}
		next := end
		for i, f := range files[start:end] {
			rsp, err := a.StoreFile(ctx, f.Path)
			p.Done++
			p.Bytes += f.Size
			p.Last, p.LastErr = f, err
			var se *dimse.StatusError
			broken := false
			switch {
			case err == nil && rsp.Status.Class() == dimse.ClassWarning:
				res.Warnings++
				res.Stored++
			case err == nil:
				res.Stored++
			case errors.As(err, &se), errors.Is(err, dimse.ErrNoContext), errors.Is(err, dimse.ErrNotPart10), errors.Is(err, fs.ErrNotExist):
				p.Failed++
				res.Failed = append(res.Failed, fmt.Errorf("%s: %w", f.Path, err))
			default:
				// The association broke on this file (a peer may abort on
				// a data set it cannot parse): note it and carry on with
				// the rest on a new association, unless it keeps happening.
				p.Failed++
				res.Failed = append(res.Failed, fmt.Errorf("%s: %w", f.Path, err))
				a.Abort()
				if ctx.Err() != nil {
					return res, ctx.Err()
				}
				broken = true
				breaks++
				if breaks >= maxBreaks {
					return res, fmt.Errorf("giving up after %d broken associations: %w", breaks, err)
				}
			}
			if progress != nil {
				progress(p)
			}
			if broken {
				next = start + i + 1
				break
			}
			breaks = 0
		}
		if next == end {
			if err := a.Release(ctx); err != nil {
				return res, err
			}
		}
		start = next
	}
	return res, nil
}

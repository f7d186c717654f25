package storescu

import (
	"context"
	"errors"
	"sync"

	"github.com/otonode/otonode/dimse"
)

// PushParallel stores files over n associations at once, each taking every
// n-th file, so a receiver that makes each instance durable before
// answering can overlap its disk flushes. Progress is reported for the
// whole push, serialised. n < 2 is Push.
func PushParallel(ctx context.Context, addr string, opts dimse.DialOptions, files []File, n int, progress func(Progress)) (Result, error) {
	if n < 2 || len(files) < 2 {
		return Push(ctx, addr, opts, files, progress)
	}
	n = min(n, len(files))
	parts := make([][]File, n)
	for i, f := range files {
		parts[i%n] = append(parts[i%n], f)
	}
	var (
		mu    sync.Mutex
		total Progress
		res   Result
		errs  []error
		wg    sync.WaitGroup
	)
	for _, f := range files {
		total.TotalBytes += f.Size
	}
	total.Total = len(files)
	for _, part := range parts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var last Progress
			r, err := Push(ctx, addr, opts, part, func(p Progress) {
				mu.Lock()
				defer mu.Unlock()
				total.Done += p.Done - last.Done
				total.Bytes += p.Bytes - last.Bytes
				total.Failed += p.Failed - last.Failed
				total.Last, total.LastErr = p.Last, p.LastErr
				last = p
				if progress != nil {
					progress(total)
				}
			})
			mu.Lock()
			defer mu.Unlock()
			res.Stored += r.Stored
			res.Warnings += r.Warnings
			res.Failed = append(res.Failed, r.Failed...)
			if err != nil {
				errs = append(errs, err)
			}
		}()
	}
	wg.Wait()
	return res, errors.Join(errs...)
}

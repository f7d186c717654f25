package scp

import (
	"sync"
	"time"
)

// waker lets other goroutines wake a loop that sleeps between rounds (the
// completion scheduler, the selector). Its zero value is ready; Poke never
// blocks and coalesces.
type waker struct {
	once sync.Once
	ch   chan struct{}
}

func (w *waker) c() chan struct{} {
	w.once.Do(func() { w.ch = make(chan struct{}, 1) })
	return w.ch
}

// Poke makes the loop look again now.
func (w *waker) Poke() {
	select {
	case w.c() <- struct{}{}:
	default:
	}
}

// clock returns now from f, or the wall clock when f is nil (tests inject f).
func clock(f func() time.Time) time.Time {
	if f != nil {
		return f()
	}
	return time.Now()
}

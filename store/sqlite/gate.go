package sqlite

import (
	"context"
	"slices"
	"sync"

	"github.com/adaptflow/adaptflow/store"
)

// writeGate orders the writer connection's users. SQLite takes one writer
// at a time and database/sql hands a freed connection to a random waiter,
// so under load an API request's write could wait behind any number of
// workers' writes. The gate queues writers in arrival order, interactive
// ones (store.Interactive: a caller is waiting) before background ones.
// Background writes cannot starve: interactive writes are a small share of
// a busy server's writes, each a few hundred microseconds.
type writeGate struct {
	mu   sync.Mutex
	held bool
	// waiting holds the interactive (0) and background (1) waiters, in
	// arrival order; unlock hands the gate to the first by closing it.
	waiting [2][]chan struct{}
}

// lock waits for the gate, or for ctx to end.
func (g *writeGate) lock(ctx context.Context) error {
	g.mu.Lock()
	if !g.held {
		g.held = true
		g.mu.Unlock()
		return nil
	}
	q := 1
	if store.IsInteractive(ctx) {
		q = 0
	}
	ch := make(chan struct{})
	g.waiting[q] = append(g.waiting[q], ch)
	g.mu.Unlock()
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
	}
	g.mu.Lock()
	select {
	case <-ch: // handed over as ctx ended: pass it on
		g.mu.Unlock()
		g.unlock()
	default:
		g.waiting[q] = slices.DeleteFunc(g.waiting[q], func(c chan struct{}) bool { return c == ch })
		g.mu.Unlock()
	}
	return ctx.Err()
}

// unlock hands the gate to the next waiter, interactive ones first.
func (g *writeGate) unlock() {
	g.mu.Lock()
	defer g.mu.Unlock()
	for q := range g.waiting {
		if len(g.waiting[q]) > 0 {
			ch := g.waiting[q][0]
			g.waiting[q][0] = nil
			g.waiting[q] = g.waiting[q][1:]
			close(ch)
			return
		}
	}
	g.held = false
}

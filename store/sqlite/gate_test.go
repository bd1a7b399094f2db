package sqlite

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/adaptflow/adaptflow/store"
)

// waitQueued waits until the gate has n waiters in queue q.
func waitQueued(t *testing.T, g *writeGate, q, n int) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		g.mu.Lock()
		got := len(g.waiting[q])
		g.mu.Unlock()
		if got == n {
			return
		}
	}
	t.Fatalf("queue %d never had %d waiters", q, n)
}

func TestWriteGateServesInteractiveWritesFirst(t *testing.T) {
	var g writeGate
	ctx := t.Context()
	if err := g.lock(ctx); err != nil {
		t.Fatal(err)
	}
	order := make(chan string, 4)
	var wg sync.WaitGroup
	enqueue := func(name string, c context.Context, q, n int) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := g.lock(c); err != nil {
				t.Error(err)
				return
			}
			order <- name
			g.unlock()
		}()
		waitQueued(t, &g, q, n)
	}
	enqueue("bg1", ctx, 1, 1)
	enqueue("bg2", ctx, 1, 2)
	enqueue("api1", store.Interactive(ctx), 0, 1)
	enqueue("api2", store.Interactive(ctx), 0, 2)
	g.unlock()
	wg.Wait()
	close(order)
	var got []string
	for n := range order {
		got = append(got, n)
	}
	if want := "[api1 api2 bg1 bg2]"; fmt.Sprint(got) != want {
		t.Fatalf("served %v, want %s", got, want)
	}
}

func TestWriteGateWaiterWhoseContextEndsLeaves(t *testing.T) {
	var g writeGate
	if err := g.lock(t.Context()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	errc := make(chan error, 1)
	go func() { errc <- g.lock(ctx) }()
	waitQueued(t, &g, 1, 1)
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled waiter: %v", err)
	}
	waitQueued(t, &g, 1, 0)
	g.unlock()
	// Free again: a new writer gets it at once.
	short, stop := context.WithTimeout(t.Context(), time.Second)
	defer stop()
	if err := g.lock(short); err != nil {
		t.Fatalf("gate not freed: %v", err)
	}
	g.unlock()
}

// Many writers, some giving up: the gate never admits two at once and
// never stays held once all are done.
func TestWriteGateExcludesUnderContention(t *testing.T) {
	var g writeGate
	var inside, maxInside, served int
	var mu sync.Mutex
	var wg sync.WaitGroup
	for i := range 64 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range 200 {
				ctx := t.Context()
				if i%2 == 0 {
					ctx = store.Interactive(ctx)
				}
				var cancel context.CancelFunc = func() {}
				if (i+j)%7 == 0 {
					ctx, cancel = context.WithTimeout(ctx, time.Duration(j%3)*time.Microsecond)
				}
				if g.lock(ctx) == nil {
					mu.Lock()
					inside++
					maxInside = max(maxInside, inside)
					served++
					mu.Unlock()
					mu.Lock()
					inside--
					mu.Unlock()
					g.unlock()
				}
				cancel()
			}
		}()
	}
	wg.Wait()
	if maxInside != 1 || served == 0 {
		t.Fatalf("at most %d inside at once (want 1), %d served", maxInside, served)
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.held || len(g.waiting[0])+len(g.waiting[1]) != 0 {
		t.Fatalf("gate left held %v with waiters %d/%d", g.held, len(g.waiting[0]), len(g.waiting[1]))
	}
}

// Writes that return their rows (RETURNING) run through a query, not an
// Exec: they take their turn in the gate too, so an API request's lease,
// audit entry or webhook claim is not left behind the workers' writes.
func TestWritesReturningRowsTakeTheGate(t *testing.T) {
	s := openTemp(t)
	ctx := store.Interactive(t.Context())
	now := time.Now()
	if err := s.w.gate.lock(ctx); err != nil {
		t.Fatal(err)
	}
	writes := []func() error{
		func() error { _, err := s.TakeLease(ctx, "sweeper", "a", now, time.Minute); return err },
		func() error {
			_, err := s.AppendAudit(ctx, store.AuditEntry{At: now, Actor: "ops", Role: "system", Action: "test", Target: "x"})
			return err
		},
		func() error {
			_, err := s.ClaimWebhookRedelivery(ctx, 1, now, now.Add(time.Minute))
			if errors.Is(err, store.ErrNotFound) {
				return nil
			}
			return err
		},
	}
	done := make(chan error, len(writes))
	for i, w := range writes {
		go func() { done <- w() }()
		waitQueued(t, s.w.gate, 0, i+1)
	}
	select {
	case err := <-done:
		t.Fatalf("a write ran while another held the gate (err %v)", err)
	case <-time.After(50 * time.Millisecond):
	}
	s.w.gate.unlock()
	for range writes {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	if l, err := s.TakeLease(ctx, "sweeper", "b", now, time.Minute); err != nil || l.Holder != "a" {
		t.Fatalf("lease after the gate opened: %+v, %v", l, err)
	}
}

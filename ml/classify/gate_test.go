package classify_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/adaptflow/adaptflow/ml/classify"
)

// After a temporary failure the gate asks nothing for its pause, then asks
// again; a call its caller gave up on is no failure, nor is a refusal of a
// call's input; a call that outlasts the wait is one.
func TestGate(t *testing.T) {
	now := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	var told []string
	g := &classify.Gate{Pause: 30 * time.Second, Now: func() time.Time { return now }, Observe: func(o string) { told = append(told, o) }}
	calls := 0
	ok := func(context.Context) error { calls++; return nil }
	down := fmt.Errorf("%w: 503 from the provider", classify.ErrRetryable)
	refused := fmt.Errorf("%w: 400, the input is too long", classify.ErrRejected)
	failing := func(context.Context) error { calls++; return down }
	hanging := func(ctx context.Context) error { calls++; <-ctx.Done(); return ctx.Err() }

	// The caller gives up: the next call is made.
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := g.Do(ctx, time.Second, hanging); !errors.Is(err, context.Canceled) {
		t.Fatalf("a call its caller gave up on: %v", err)
	}
	if err := g.Do(t.Context(), time.Second, ok); err != nil || calls != 2 {
		t.Fatalf("after the caller gave up: %v, %d calls", err, calls)
	}
	// A refusal of the input pauses nothing.
	if err := g.Do(t.Context(), time.Second, func(context.Context) error { calls++; return refused }); !errors.Is(err, refused) {
		t.Fatalf("refused call: %v", err)
	}
	if err := g.Do(t.Context(), time.Second, ok); err != nil || calls != 4 {
		t.Fatalf("after a refusal: %v, %d calls", err, calls)
	}
	// A temporary failure pauses the gate.
	if err := g.Do(t.Context(), time.Second, failing); !errors.Is(err, down) {
		t.Fatalf("failing call: %v", err)
	}
	if err := g.Do(t.Context(), time.Second, ok); !errors.Is(err, down) || calls != 5 {
		t.Fatalf("during the pause: %v, %d calls (want the first failure, and no call)", err, calls)
	}
	now = now.Add(31 * time.Second)
	if err := g.Do(t.Context(), time.Second, ok); err != nil || calls != 6 {
		t.Fatalf("after the pause: %v, %d calls", err, calls)
	}
	// A call that outlasts the wait fails, and pauses the gate.
	if err := g.Do(t.Context(), 10*time.Millisecond, hanging); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("a call past its wait: %v", err)
	}
	if err := g.Do(t.Context(), time.Second, ok); err == nil || calls != 7 {
		t.Fatalf("after a call past its wait: %v, %d calls", err, calls)
	}
	// Each call is told but the one its caller gave up on.
	if want := "ok failed ok failed skipped ok failed skipped"; strings.Join(told, " ") != want {
		t.Fatalf("outcomes told %q, want %q", told, want)
	}
}

// With a probe, no call waits on a provider still down once a pause is
// over: the call that finds it over is skipped and the probe asks in the
// background; calls are skipped until the probe gets an answer.
func TestGateProbes(t *testing.T) {
	var mu sync.Mutex
	now := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	down := fmt.Errorf("%w: 503 from the provider", classify.ErrRetryable)
	probeErr := down
	outcomes := make(chan string, 16)
	g := &classify.Gate{
		Pause:   30 * time.Second,
		Now:     func() time.Time { mu.Lock(); defer mu.Unlock(); return now },
		Observe: func(o string) { outcomes <- o },
		Probe: func(context.Context) error {
			mu.Lock()
			defer mu.Unlock()
			return probeErr
		},
	}
	// told waits for the next n outcomes (a call's and a probe's may come
	// in either order) and checks them, sorted, against want.
	told := func(want ...string) {
		t.Helper()
		var got []string
		for range want {
			select {
			case o := <-outcomes:
				got = append(got, o)
			case <-time.After(10 * time.Second):
				t.Fatalf("outcomes told %q, want %q", got, want)
			}
		}
		slices.Sort(got)
		if !slices.Equal(got, want) {
			t.Fatalf("outcomes told %q, want %q", got, want)
		}
	}
	calls := 0
	ok := func(context.Context) error { calls++; return nil }
	if err := g.Do(t.Context(), time.Second, func(context.Context) error { calls++; return down }); !errors.Is(err, down) {
		t.Fatal(err)
	}
	told("failed")
	later := func() { mu.Lock(); now = now.Add(31 * time.Second); mu.Unlock() }
	later()
	// The pause is over: this call is skipped, and the probe (still down)
	// asks in the background.
	if err := g.Do(t.Context(), time.Second, ok); err == nil || calls != 1 {
		t.Fatalf("the call that found the pause over: %v, %d calls", err, calls)
	}
	told("failed", "skipped")
	// The probe's failure paused the gate again: no probe until it is over.
	if err := g.Do(t.Context(), time.Second, ok); err == nil || calls != 1 {
		t.Fatalf("after a probe that failed: %v, %d calls", err, calls)
	}
	told("skipped")
	// The next probe gets an answer: calls go through again.
	mu.Lock()
	probeErr = nil
	mu.Unlock()
	later()
	if err := g.Do(t.Context(), time.Second, ok); err == nil || calls != 1 {
		t.Fatalf("the call that started the second probe: %v, %d calls", err, calls)
	}
	told("ok", "skipped")
	if err := g.Do(t.Context(), time.Second, ok); err != nil || calls != 2 {
		t.Fatalf("after a probe that got an answer: %v, %d calls (want 2)", err, calls)
	}
	told("ok")
}

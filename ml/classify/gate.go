package classify

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
)

// Gate keeps callers from waiting on a provider that does not answer: a
// call through it gets at most the wait its caller gives, and after a
// temporary failure (ErrRetryable: no answer in time, 429, 5xx) no call
// asks the provider for Pause; then the first call asks again, or, with a
// Probe, the probe asks in the background and calls are skipped until it
// succeeds, so that none waits on a provider still down. A refusal of one
// call's input (a 4xx) pauses nothing. A caller that has something else
// to do meanwhile (the hashing embedding, a review without similar cases,
// an example embedded later) does it at once. The zero value pauses 30 s
// by the wall clock; it is safe for concurrent use.
type Gate struct {
	Pause time.Duration
	// Now is the clock the pause goes by (default time.Now).
	Now func() time.Time
	// Observe, when set, is told how each call and each probe went: "ok",
	// "failed" (an error, or no answer within the wait), or "skipped" (a
	// call not made: the gate was paused). A call its caller gave up on is
	// not told. A probe's outcome is told once the gate has settled on it.
	Observe func(outcome string)
	// Probe, when set, asks the provider whether it answers again once a
	// pause is over (a small request of its own), within the wait of the
	// call that found the pause over.
	Probe func(ctx context.Context) error

	mu        sync.Mutex
	downSince time.Time
	downUntil time.Time
	err       error // the failure that paused it; nil once it answers
	probing   bool
}

// DefaultWait is the wait Do gives a call when its caller gives none.
const DefaultWait = 5 * time.Second

// Do runs call within wait (0: DefaultWait), unless the provider failed
// lately: then it returns at once, saying since when and why.
func (g *Gate) Do(ctx context.Context, wait time.Duration, call func(context.Context) error) error {
	if wait <= 0 {
		wait = DefaultWait
	}
	now := g.now()
	g.mu.Lock()
	if g.err != nil && (now.Before(g.downUntil) || g.probing || g.Probe != nil) {
		err := fmt.Errorf("not asked again until %s (it failed at %s: %w)", g.downUntil.UTC().Format(time.RFC3339), g.downSince.UTC().Format(time.RFC3339), g.err)
		if !now.Before(g.downUntil) {
			err = fmt.Errorf("not asked while a probe sees whether it answers again (it failed at %s: %w)", g.downSince.UTC().Format(time.RFC3339), g.err)
			if !g.probing {
				g.probing = true
				go g.probe(wait)
			}
		}
		g.mu.Unlock()
		g.observe("skipped")
		return err
	}
	g.mu.Unlock()
	cctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	err := call(cctx)
	switch {
	case err == nil:
		g.observe("ok")
	case ctx.Err() == nil:
		g.observe("failed")
	}
	// A call its caller gave up on is no failure of the provider's.
	if ctx.Err() == nil {
		g.settle(err)
	}
	return err
}

// settle pauses the gate after a temporary failure, and opens it after an
// answer.
func (g *Gate) settle(err error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	switch {
	case err == nil:
		g.err = nil
	case errors.Is(err, ErrRetryable) || errors.Is(err, context.DeadlineExceeded):
		pause := g.Pause
		if pause <= 0 {
			pause = 30 * time.Second
		}
		now := g.now()
		g.downSince, g.downUntil, g.err = now, now.Add(pause), err
	}
}

// probe asks Probe whether the provider answers again, within wait.
func (g *Gate) probe(wait time.Duration) {
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	err := g.Probe(ctx)
	outcome := "ok"
	if err != nil {
		outcome = "failed"
	}
	if !errors.Is(err, ErrRetryable) && !errors.Is(err, context.DeadlineExceeded) {
		err = nil // it answered, if only to refuse the probe
	}
	g.settle(err)
	g.mu.Lock()
	g.probing = false
	g.mu.Unlock()
	// Told once the gate is settled: whoever hears it finds the gate as
	// the probe left it.
	g.observe(outcome)
}

func (g *Gate) observe(outcome string) {
	if g.Observe != nil {
		g.Observe(outcome)
	}
}

func (g *Gate) now() time.Time {
	if g.Now != nil {
		return g.Now()
	}
	return time.Now()
}

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
// asks the provider for Pause (the first one after asks again); a refusal
// of one call's input (a 4xx) pauses nothing. A caller that has something else to do meanwhile (the hashing
// embedding, a review without similar cases, an example embedded later)
// does it at once. The zero value pauses 30 s by the wall clock; it is
// safe for concurrent use.
type Gate struct {
	Pause time.Duration
	// Now is the clock the pause goes by (default time.Now).
	Now func() time.Time
	// Observe, when set, is told how each call went: "ok", "failed" (an
	// error, or no answer within the wait), or "skipped" (not asked: the
	// gate was paused). A call its caller gave up on is not told.
	Observe func(outcome string)

	mu        sync.Mutex
	downSince time.Time
	downUntil time.Time
	err       error
}

// DefaultWait is the wait Do gives a call when its caller gives none.
const DefaultWait = 5 * time.Second

// Do runs call within wait (0: DefaultWait), unless the provider failed
// lately: then it returns at once, saying since when and why.
func (g *Gate) Do(ctx context.Context, wait time.Duration, call func(context.Context) error) error {
	now := g.now()
	g.mu.Lock()
	if now.Before(g.downUntil) {
		err := fmt.Errorf("not asked again until %s (it failed at %s: %w)", g.downUntil.UTC().Format(time.RFC3339), g.downSince.UTC().Format(time.RFC3339), g.err)
		g.mu.Unlock()
		g.observe("skipped")
		return err
	}
	g.mu.Unlock()
	if wait <= 0 {
		wait = DefaultWait
	}
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
	if err != nil && ctx.Err() == nil && (errors.Is(err, ErrRetryable) || errors.Is(err, context.DeadlineExceeded)) {
		pause := g.Pause
		if pause <= 0 {
			pause = 30 * time.Second
		}
		now := g.now()
		g.mu.Lock()
		g.downSince, g.downUntil, g.err = now, now.Add(pause), err
		g.mu.Unlock()
	}
	return err
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

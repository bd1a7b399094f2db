package api

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// embeddingError is a failure of the embeddings provider: answered 503,
// as for any dependency that is not answering.
type embeddingError struct{ err error }

func (e embeddingError) Error() string { return "embeddings provider: " + e.err.Error() }
func (e embeddingError) Unwrap() error { return e.err }

const (
	// DefaultEmbedWait is how long a request waits for the embeddings
	// provider by default (Options.EmbedWait).
	DefaultEmbedWait = 5 * time.Second
	// embedPause is how long the API leaves the embeddings provider alone
	// after it failed a request: meanwhile requests go on without asking
	// it (the first one after the pause asks again).
	embedPause = 30 * time.Second
)

// embedGate keeps the API's requests from waiting on an embeddings
// provider that does not answer. A request waits for it at most
// Options.EmbedWait; after a failure, requests do not ask it for
// embedPause. What needs an embedding goes on without one: a review is
// shown without its similar cases, a lesson or an example is kept
// without its embedding, which the sweeper adds (EmbedExamples, not
// gated: it has time).
type embedGate struct {
	mu        sync.Mutex
	downSince time.Time
	downUntil time.Time
	err       error
}

// closed says why the provider is not asked now, or nil.
func (g *embedGate) closed(now time.Time) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if now.Before(g.downUntil) {
		return fmt.Errorf("not asked again until %s (it failed at %s: %w)", g.downUntil.UTC().Format(time.RFC3339), g.downSince.UTC().Format(time.RFC3339), g.err)
	}
	return nil
}

// failed leaves the provider alone for embedPause from now.
func (g *embedGate) failed(now time.Time, err error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.downSince, g.downUntil, g.err = now, now.Add(embedPause), err
}

// embed embeds text for a request (embedTexts).
func (s *server) embed(ctx context.Context, text string) ([]float32, error) {
	vs, err := s.embedTexts(ctx, func(ctx context.Context) ([][]float32, error) {
		return s.Embedder.Embed(ctx, []string{text})
	})
	if err != nil {
		return nil, err
	}
	return vs[0], nil
}

// embedTexts runs embed, a request's call to the embeddings provider
// (when one is configured), within Options.EmbedWait, unless the provider
// failed lately. A failure is an embeddingError.
func (s *server) embedTexts(ctx context.Context, embed func(context.Context) ([][]float32, error)) ([][]float32, error) {
	if !s.Embedder.Provider() {
		vs, err := embed(ctx)
		if err != nil {
			return nil, embeddingError{err}
		}
		return vs, nil
	}
	if err := s.embedGate.closed(s.Clock()); err != nil {
		return nil, embeddingError{err}
	}
	wait, cancel := context.WithTimeout(ctx, s.EmbedWait)
	defer cancel()
	vs, err := embed(wait)
	if err != nil {
		// A request its client left is no failure of the provider's.
		if ctx.Err() == nil {
			s.embedGate.failed(s.Clock(), err)
		}
		return nil, embeddingError{err}
	}
	return vs, nil
}

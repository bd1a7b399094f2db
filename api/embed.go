package api

import (
	"context"
	"time"

	"github.com/adaptflow/adaptflow/ml/classify"
)

// embeddingError is a failure of the embeddings provider: answered 503,
// as for any dependency that is not answering.
type embeddingError struct{ err error }

func (e embeddingError) Error() string { return "embeddings provider: " + e.err.Error() }
func (e embeddingError) Unwrap() error { return e.err }

// DefaultEmbedWait is how long a request waits for the embeddings
// provider by default (Options.EmbedWait).
const DefaultEmbedWait = classify.DefaultWait

// embedPause is how long the API leaves the embeddings provider alone
// after it failed a request.
const embedPause = 30 * time.Second

// embed embeds text for a request (embedBatch).
func (s *server) embed(ctx context.Context, text string) ([]float32, error) {
	vs, err := s.embedBatch(ctx, []string{text})
	if err != nil {
		return nil, err
	}
	return vs[0], nil
}

// embedBatch embeds texts for a request, the wait growing with the
// provider's requests they take (classify.Embedder's batches).
func (s *server) embedBatch(ctx context.Context, texts []string) ([][]float32, error) {
	requests := (len(texts) + classify.EmbedBatch - 1) / classify.EmbedBatch
	return s.embedWithin(ctx, time.Duration(requests)*s.EmbedWait, func(ctx context.Context) ([][]float32, error) {
		return s.Embedder.Embed(ctx, texts)
	})
}

// embedWithin runs embed, a request's call to the embeddings provider
// (when one is configured), through the server's gate: within wait, and
// after a failure not until a probe in the background (after embedPause)
// finds it answers again. What needs an embedding goes on without one: a
// review is shown without its similar cases, a lesson or an example is
// kept without its embedding, which the example embedder adds
// (EmbedExamples, not gated: it has time). A failure is an
// embeddingError.
func (s *server) embedWithin(ctx context.Context, wait time.Duration, embed func(context.Context) ([][]float32, error)) ([][]float32, error) {
	var vs [][]float32
	call := func(ctx context.Context) (err error) {
		vs, err = embed(ctx)
		return err
	}
	var err error
	if s.Embedder.Provider() {
		err = s.embedGate.Do(ctx, wait, call)
	} else {
		err = call(ctx)
	}
	if err != nil {
		return nil, embeddingError{err}
	}
	return vs, nil
}

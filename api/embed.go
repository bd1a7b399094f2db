package api

import "context"

// embeddingError is a failure of the embeddings provider: answered 503,
// as for any dependency that is not answering.
type embeddingError struct{ err error }

func (e embeddingError) Error() string { return "embeddings provider: " + e.err.Error() }
func (e embeddingError) Unwrap() error { return e.err }

func (s *server) embed(ctx context.Context, text string) ([]float32, error) {
	vs, err := s.Embedder.Embed(ctx, []string{text})
	if err != nil {
		return nil, embeddingError{err}
	}
	return vs[0], nil
}

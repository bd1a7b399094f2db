package sqlite

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"

	"github.com/adaptflow/adaptflow/store"
	"github.com/adaptflow/adaptflow/store/vectors"
)

// PutExample stores (or replaces) a labeled example.
func (s *Store) PutExample(ctx context.Context, e store.Example) error {
	if err := store.CheckEmbedding(e.Embedding, s.dim); err != nil {
		return err
	}
	blob := make([]byte, 4*len(e.Embedding))
	for i, f := range e.Embedding {
		binary.LittleEndian.PutUint32(blob[4*i:], math.Float32bits(f))
	}
	_, err := s.w.ExecContext(ctx, `INSERT INTO examples (id, classifier, text, label, fields, source, embedding, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (id) DO UPDATE SET classifier = excluded.classifier, text = excluded.text, label = excluded.label, fields = excluded.fields,
		source = excluded.source, embedding = excluded.embedding, created_at = excluded.created_at`,
		e.ID, e.Classifier, e.Text, e.Label, string(e.Fields), e.Source, blob, micros(e.CreatedAt))
	if err != nil {
		return fmt.Errorf("sqlite: put example: %w", err)
	}
	return nil
}

// NearestExamples returns the k examples of a classifier closest to q by
// cosine distance, nearest first. SQLite has no vector index: this is an
// exact search in Go over the classifier's examples.
func (s *Store) NearestExamples(ctx context.Context, classifier string, q []float32, k int) ([]store.Neighbor, error) {
	if err := store.CheckEmbedding(q, s.dim); err != nil {
		return nil, err
	}
	top := vectors.NewTopK[store.Example](k)
	rows, err := s.r.QueryContext(ctx, `SELECT id, classifier, text, label, fields, source, embedding, created_at FROM examples WHERE classifier = ?`, classifier)
	if err != nil {
		return nil, fmt.Errorf("sqlite: nearest examples: %w", err)
	}
	defer rows.Close()
	qn := vectors.Norm(q)
	v := make([]float32, s.dim)
	for rows.Next() {
		var e store.Example
		var fields string
		var blob []byte
		var at int64
		if err := rows.Scan(&e.ID, &e.Classifier, &e.Text, &e.Label, &fields, &e.Source, &blob, &at); err != nil {
			return nil, fmt.Errorf("sqlite: nearest examples: %w", err)
		}
		if len(blob) != 4*s.dim {
			return nil, fmt.Errorf("sqlite: example %s has a %d-byte embedding, want %d", e.ID, len(blob), 4*s.dim)
		}
		for i := range v {
			v[i] = math.Float32frombits(binary.LittleEndian.Uint32(blob[4*i:]))
		}
		d := vectors.CosineDistance(q, qn, v)
		if !top.Wants(d) {
			continue
		}
		if fields != "" {
			e.Fields = json.RawMessage(fields)
		}
		e.Embedding = append([]float32(nil), v...)
		e.CreatedAt = fromMicros(at)
		top.Push(e, d)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: nearest examples: %w", err)
	}
	items, dists := top.Sorted()
	out := make([]store.Neighbor, len(items))
	for i := range items {
		out[i] = store.Neighbor{Example: items[i], Distance: dists[i]}
	}
	return out, nil
}

// ExamplesOf lists the examples of a classifier, oldest first, without
// their embeddings.
func (s *Store) ExamplesOf(ctx context.Context, classifier string) ([]store.Example, error) {
	return collect(ctx, s.r, "examples", func(r scanner) (store.Example, error) {
		var e store.Example
		var fields string
		var at int64
		err := r.Scan(&e.ID, &e.Classifier, &e.Text, &e.Label, &fields, &e.Source, &at)
		if fields != "" {
			e.Fields = json.RawMessage(fields)
		}
		e.CreatedAt = fromMicros(at)
		return e, err
	}, `SELECT id, classifier, text, label, fields, source, created_at FROM examples WHERE classifier = ? ORDER BY created_at, id`, classifier)
}

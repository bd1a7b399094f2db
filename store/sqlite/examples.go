package sqlite

import (
	"context"
	"database/sql"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"

	"github.com/adaptflow/adaptflow/store"
	"github.com/adaptflow/adaptflow/store/vectors"
)

// PutExample stores (or replaces) a labeled example. One without an
// embedding (the provider did not answer) keeps the one its text had, if
// any, and is embedded later (ExamplesToEmbed).
func (s *Store) PutExample(ctx context.Context, e store.Example) error {
	return s.PutExamples(ctx, []store.Example{e})
}

// PutExamples stores examples as PutExample does each, in one transaction:
// all of them, or none. Each changed classifier's version is bumped once.
func (s *Store) PutExamples(ctx context.Context, es []store.Example) error {
	for _, e := range es {
		if err := store.CheckExampleEmbedding(e.Embedding, s.dim); err != nil {
			return fmt.Errorf("example %s: %w", e.ID, err)
		}
	}
	err := s.tx(ctx, func(tx *sql.Tx) error {
		changed := map[string]bool{}
		for _, e := range es {
			// The example as it was, if there was one.
			var was *store.Example
			var old store.Example
			var fields string
			switch err := tx.QueryRowContext(ctx, `SELECT classifier, text, label, fields FROM examples WHERE id = ?`, e.ID).Scan(&old.Classifier, &old.Text, &old.Label, &fields); {
			case err == nil:
				old.Fields, was = []byte(fields), &old
			case !errors.Is(err, sql.ErrNoRows):
				return err
			}
			if _, err := tx.ExecContext(ctx, `INSERT INTO examples (id, classifier, text, label, fields, source, embedding, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)
			ON CONFLICT (id) DO UPDATE SET classifier = excluded.classifier, text = excluded.text, label = excluded.label, fields = excluded.fields,
			source = excluded.source, created_at = excluded.created_at,
			embedding = CASE WHEN length(excluded.embedding) > 0 OR excluded.text <> examples.text THEN excluded.embedding ELSE examples.embedding END`,
				e.ID, e.Classifier, e.Text, e.Label, string(e.Fields), e.Source, embeddingBlob(e.Embedding), micros(e.CreatedAt)); err != nil {
				return err
			}
			for _, c := range store.ChangedClassifiers(e, was) {
				changed[c] = true
			}
		}
		for _, c := range slices.Sorted(maps.Keys(changed)) {
			if _, err := tx.ExecContext(ctx, `INSERT INTO example_versions (classifier, version) VALUES (?, 1)
				ON CONFLICT (classifier) DO UPDATE SET version = version + 1`, c); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("sqlite: put examples: %w", err)
	}
	return nil
}

// DeleteExample removes a stored example of a classifier (ErrNotFound
// when it has none of that id), and bumps the classifier's version of its
// examples so that its models learn without it.
func (s *Store) DeleteExample(ctx context.Context, classifier, id string) error {
	err := s.tx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `DELETE FROM examples WHERE id = ? AND classifier = ?`, id, classifier)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil || n == 0 {
			return errors.Join(err, fmt.Errorf("example %s of %s: %w", id, classifier, store.ErrNotFound))
		}
		_, err = tx.ExecContext(ctx, `UPDATE example_versions SET version = version + 1 WHERE classifier = ?`, classifier)
		return err
	})
	if err != nil {
		return fmt.Errorf("sqlite: delete example: %w", err)
	}
	return nil
}

// DeleteExamples deletes the examples of a classifier a filter keeps (its
// page aside), in one transaction, and says how many.
func (s *Store) DeleteExamples(ctx context.Context, f store.ExampleFilter) (int, error) {
	q, args := store.DeleteExamplesQuery(f, dialect)
	var n int64
	err := s.tx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, q, args...)
		if err != nil {
			return err
		}
		if n, err = res.RowsAffected(); err != nil || n == 0 {
			return err
		}
		_, err = tx.ExecContext(ctx, `UPDATE example_versions SET version = version + 1 WHERE classifier = ?`, f.Classifier)
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("sqlite: delete examples: %w", err)
	}
	return int(n), nil
}

// ExamplesVersion is a classifier's version of its examples: it changes
// whenever one of them is written; 0 when it has none.
func (s *Store) ExamplesVersion(ctx context.Context, classifier string) (int64, error) {
	var v int64
	err := s.r.QueryRowContext(ctx, `SELECT version FROM example_versions WHERE classifier = ?`, classifier).Scan(&v)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("sqlite: examples version: %w", err)
	}
	return v, nil
}

// NearestExamples returns the k examples of a classifier closest to q by
// cosine distance, nearest first. SQLite has no vector index: this is an
// exact search in Go over the classifier's examples.
func (s *Store) NearestExamples(ctx context.Context, classifier string, q []float32, k int) ([]store.Neighbor, error) {
	if err := store.CheckEmbedding(q, s.dim); err != nil {
		return nil, err
	}
	top := vectors.NewTopK[store.Example](k)
	rows, err := s.r.QueryContext(ctx, `SELECT id, classifier, text, label, fields, source, embedding, created_at FROM examples WHERE classifier = ? AND length(embedding) > 0`, classifier)
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

// ExamplesToEmbed lists up to limit examples stored without an embedding,
// oldest first, without their fields.
func (s *Store) ExamplesToEmbed(ctx context.Context, limit int) ([]store.Example, error) {
	return collect(ctx, s.r, "examples to embed", func(r scanner) (store.Example, error) { return store.ScanExampleToEmbed(r.Scan) },
		`SELECT `+store.ExamplesToEmbedColumns+` FROM examples WHERE length(embedding) = 0 ORDER BY created_at, id LIMIT ?`, limit)
}

// SetExampleEmbedding gives the example id of text its embedding, unless
// it has one or its text changed since it was read (it reports whether it
// did).
func (s *Store) SetExampleEmbedding(ctx context.Context, id, text string, v []float32) (bool, error) {
	if err := store.CheckEmbedding(v, s.dim); err != nil {
		return false, err
	}
	res, err := s.w.ExecContext(ctx, `UPDATE examples SET embedding = ? WHERE id = ? AND text = ? AND length(embedding) = 0`, embeddingBlob(v), id, text)
	if err != nil {
		return false, fmt.Errorf("sqlite: set example embedding: %w", err)
	}
	n, err := res.RowsAffected()
	return n == 1, err
}

// embeddingBlob is an embedding as the store keeps it (little-endian
// float32s; none is empty).
func embeddingBlob(v []float32) []byte {
	blob := make([]byte, 4*len(v))
	for i, f := range v {
		binary.LittleEndian.PutUint32(blob[4*i:], math.Float32bits(f))
	}
	return blob
}

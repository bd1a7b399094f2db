package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/pgvector/pgvector-go"

	"github.com/adaptflow/adaptflow/store"
)

// PutExample stores (or replaces) a labeled example. One without an
// embedding (the provider did not answer) keeps the one its text had, if
// any, and is embedded later (ExamplesToEmbed).
func (s *Store) PutExample(ctx context.Context, e store.Example) error {
	return s.PutExamples(ctx, []store.Example{e})
}

// PutExamples stores examples as PutExample does each, in one transaction:
// all of them, or none. Each changed classifier's version is bumped once.
// The rows are taken in the order of their ids, so that batches writing
// the same examples at once wait for each other rather than deadlock.
func (s *Store) PutExamples(ctx context.Context, es []store.Example) error {
	for _, e := range es {
		if err := store.CheckExampleEmbedding(e.Embedding, s.dim); err != nil {
			return fmt.Errorf("example %s: %w", e.ID, err)
		}
	}
	es = slices.SortedStableFunc(slices.Values(es), func(a, b store.Example) int { return strings.Compare(a.ID, b.ID) })
	err := s.tx(ctx, func(tx pgx.Tx) error {
		changed := map[string]bool{}
		for _, e := range es {
			var v *pgvector.Vector
			if len(e.Embedding) > 0 {
				vv := pgvector.NewVector(e.Embedding)
				v = &vv
			}
			// The example as it was, if there was one.
			var was *store.Example
			var old store.Example
			var fields string
			switch err := tx.QueryRow(ctx, `SELECT classifier, text, label, fields FROM examples WHERE id = $1 FOR UPDATE`, e.ID).Scan(&old.Classifier, &old.Text, &old.Label, &fields); {
			case err == nil:
				old.Fields, was = []byte(fields), &old
			case !errors.Is(err, pgx.ErrNoRows):
				return err
			}
			if _, err := tx.Exec(ctx, `INSERT INTO examples (id, classifier, text, label, fields, source, embedding, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
			ON CONFLICT (id) DO UPDATE SET classifier = excluded.classifier, text = excluded.text, label = excluded.label, fields = excluded.fields,
			source = excluded.source, created_at = excluded.created_at,
			embedding = CASE WHEN excluded.embedding IS NOT NULL OR excluded.text <> examples.text THEN excluded.embedding ELSE examples.embedding END`,
				e.ID, e.Classifier, e.Text, e.Label, string(e.Fields), e.Source, v, micros(e.CreatedAt)); err != nil {
				return err
			}
			for _, c := range store.ChangedClassifiers(e, was) {
				changed[c] = true
			}
		}
		for _, c := range slices.Sorted(maps.Keys(changed)) {
			if _, err := tx.Exec(ctx, `INSERT INTO example_versions (classifier, version) VALUES ($1, 1)
				ON CONFLICT (classifier) DO UPDATE SET version = example_versions.version + 1`, c); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("postgres: put examples: %w", err)
	}
	return nil
}

// DeleteExample removes a stored example of a classifier (ErrNotFound
// when it has none of that id), and bumps the classifier's version of its
// examples so that its models learn without it.
func (s *Store) DeleteExample(ctx context.Context, classifier, id string) error {
	err := s.tx(ctx, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `DELETE FROM examples WHERE id = $1 AND classifier = $2`, id, classifier)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return fmt.Errorf("example %s of %s: %w", id, classifier, store.ErrNotFound)
		}
		_, err = tx.Exec(ctx, `UPDATE example_versions SET version = version + 1 WHERE classifier = $1`, classifier)
		return err
	})
	if err != nil {
		return fmt.Errorf("postgres: delete example: %w", err)
	}
	return nil
}

// DeleteExamples deletes the examples of a classifier a filter keeps (its
// page aside), in one transaction, and says how many.
func (s *Store) DeleteExamples(ctx context.Context, f store.ExampleFilter) (int, error) {
	q, args := store.DeleteExamplesQuery(f, s.Dialect())
	var n int64
	err := s.tx(ctx, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, q, args...)
		if err != nil {
			return err
		}
		if n = tag.RowsAffected(); n == 0 {
			return nil
		}
		_, err = tx.Exec(ctx, `UPDATE example_versions SET version = version + 1 WHERE classifier = $1`, f.Classifier)
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("postgres: delete examples: %w", err)
	}
	return int(n), nil
}

// ExamplesVersion is a classifier's version of its examples: it changes
// whenever one of them is written; 0 when it has none.
func (s *Store) ExamplesVersion(ctx context.Context, classifier string) (int64, error) {
	var v int64
	err := s.pool.QueryRow(ctx, `SELECT version FROM example_versions WHERE classifier = $1`, classifier).Scan(&v)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("postgres: examples version: %w", err)
	}
	return v, nil
}

// NearestExamples returns the k examples of a classifier closest to q by
// cosine distance, nearest first, through the HNSW index.
func (s *Store) NearestExamples(ctx context.Context, classifier string, q []float32, k int) ([]store.Neighbor, error) {
	if err := store.CheckEmbedding(q, s.dim); err != nil {
		return nil, err
	}
	return collect(ctx, s.pool, "nearest examples", func(r scanner) (store.Neighbor, error) {
		var n store.Neighbor
		var fields string
		var v pgvector.Vector
		var at int64
		err := r.Scan(&n.ID, &n.Classifier, &n.Text, &n.Label, &fields, &n.Source, &v, &at, &n.Distance)
		if fields != "" {
			n.Fields = json.RawMessage(fields)
		}
		n.Embedding, n.CreatedAt = v.Slice(), fromMicros(at)
		return n, err
	}, `SELECT id, classifier, text, label, fields, source, embedding, created_at, embedding <=> $1 AS distance
		FROM examples WHERE classifier = $2 AND embedding IS NOT NULL ORDER BY embedding <=> $1 LIMIT $3`, pgvector.NewVector(q), classifier, k)
}

// ExamplesToEmbed lists up to limit examples stored without an embedding,
// oldest first, without their fields.
func (s *Store) ExamplesToEmbed(ctx context.Context, limit int) ([]store.Example, error) {
	return collect(ctx, s.pool, "examples to embed", func(r scanner) (store.Example, error) { return store.ScanExampleToEmbed(r.Scan) },
		`SELECT `+store.ExamplesToEmbedColumns+` FROM examples WHERE embedding IS NULL ORDER BY created_at, id LIMIT $1`, limit)
}

// SetExampleEmbedding gives the example id of text its embedding, unless
// it has one or its text changed since it was read (it reports whether it
// did).
func (s *Store) SetExampleEmbedding(ctx context.Context, id, text string, v []float32) (bool, error) {
	if err := store.CheckEmbedding(v, s.dim); err != nil {
		return false, err
	}
	tag, err := s.pool.Exec(ctx, `UPDATE examples SET embedding = $1 WHERE id = $2 AND text = $3 AND embedding IS NULL`, pgvector.NewVector(v), id, text)
	if err != nil {
		return false, fmt.Errorf("postgres: set example embedding: %w", err)
	}
	return tag.RowsAffected() == 1, nil
}

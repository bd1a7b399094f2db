package postgres_test

import (
	"strings"
	"testing"

	"github.com/adaptflow/adaptflow/store/postgres"
	"github.com/adaptflow/adaptflow/store/storetest"
)

// TestConformance runs the stores' suite on a database whose character
// classes are the C locale's (ASCII's), the least a server may have: the
// store's text search folds every letter even there.
func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) storetest.Store {
		s, err := postgres.Open(t.Context(), storetest.FreshPostgres(t, "TEMPLATE template0 LC_CTYPE 'C'"), postgres.Options{Migrate: true})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = s.Close() })
		return s
	})
}

func TestEmbeddingDimensionIsFixed(t *testing.T) {
	url := storetest.FreshPostgres(t)
	s, err := postgres.Open(t.Context(), url, postgres.Options{Migrate: true, EmbeddingDim: 8})
	if err != nil {
		t.Fatal(err)
	}
	_ = s.Close()
	if _, err := postgres.Open(t.Context(), url, postgres.Options{Migrate: true, EmbeddingDim: 16}); err == nil || !strings.Contains(err.Error(), "8-dimensional embeddings but the embedding dimension is configured as 16") {
		t.Fatalf("reopen with another dimension: %v", err)
	}
}

// TestConcurrentMigrations starts several stores on one empty database at
// once, as replicas do: the advisory lock lets each migration apply once.
func TestConcurrentMigrations(t *testing.T) {
	url := storetest.FreshPostgres(t)
	errs := make(chan error, 6)
	for range 6 {
		go func() {
			s, err := postgres.Open(t.Context(), url, postgres.Options{Migrate: true})
			if err == nil {
				_ = s.Close()
			}
			errs <- err
		}()
	}
	for range 6 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	s, err := postgres.Open(t.Context(), url, postgres.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	list, err := s.MigrationStatus(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range list {
		if m.AppliedAt == nil {
			t.Fatalf("migration %s not applied", m.Name)
		}
	}
}

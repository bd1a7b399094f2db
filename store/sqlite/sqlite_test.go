package sqlite_test

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/adaptflow/adaptflow/store"
	"github.com/adaptflow/adaptflow/store/sqlite"
	"github.com/adaptflow/adaptflow/store/storetest"
)

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) storetest.Store {
		s, err := sqlite.Open(t.Context(), filepath.Join(t.TempDir(), "test.db"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = s.Close() })
		return s
	})
}

func TestReopenKeepsDataAndMigrationsOnce(t *testing.T) {
	path := filepath.Join(t.TempDir(), "test.db")
	s, err := sqlite.Open(t.Context(), path)
	if err != nil {
		t.Fatal(err)
	}
	created, err := s.PutDefinition(t.Context(), storetestDef())
	if err != nil || !created {
		t.Fatal(created, err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s, err = sqlite.Open(t.Context(), path)
	if err != nil {
		t.Fatalf("reopen (migrations must apply once): %v", err)
	}
	defer s.Close()
	if _, err := s.Definition(t.Context(), "orders", 1); err != nil {
		t.Fatal(err)
	}
}

func storetestDef() store.DefinitionRecord {
	return store.DefinitionRecord{Name: "orders", Version: 1, Doc: []byte(`{}`), Digest: "d", Author: "t", CreatedAt: time.Now()}
}

func TestEmbeddingDimensionIsFixed(t *testing.T) {
	path := filepath.Join(t.TempDir(), "dim.db")
	s, err := sqlite.OpenWith(t.Context(), path, sqlite.Options{EmbeddingDim: 8})
	if err != nil {
		t.Fatal(err)
	}
	_ = s.Close()
	if _, err := sqlite.OpenWith(t.Context(), path, sqlite.Options{EmbeddingDim: 16}); err == nil || !strings.Contains(err.Error(), "8-dimensional embeddings but the embedding dimension is configured as 16") {
		t.Fatalf("reopen with another dimension: %v", err)
	}
}

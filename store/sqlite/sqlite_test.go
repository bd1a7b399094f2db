package sqlite_test

import (
	"database/sql"
	"errors"
	"os"
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

// A store in a directory whose name holds what a "file:" URI reads
// otherwise ('?' its query, '#' its fragment, '%' an escape) is the file
// named, opened with its pragmas (WAL), and found there again.
func TestOpenWhereTheNameReadsAsAURI(t *testing.T) {
	for _, name := range []string{"a?mode=ro", "a#b", "100%", "%41", "x?_pragma=journal_mode(DELETE)"} {
		t.Run(name, func(t *testing.T) {
			parent := t.TempDir()
			path := filepath.Join(parent, name, "adaptflow.db")
			if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
				t.Fatal(err)
			}
			s, err := sqlite.Open(t.Context(), path)
			if err != nil {
				t.Fatal(err)
			}
			if _, _, err := s.CreateInstance(t.Context(), store.Instance{ID: "i-1", Process: "p", ProcessVersion: 1, BusinessKey: "k", Input: []byte(`{}`), CreatedAt: time.Now()}); err != nil {
				t.Fatal(err)
			}
			_ = s.Close()
			if _, err := os.Stat(path + "-wal"); err != nil && !errors.Is(err, os.ErrNotExist) {
				t.Fatal(err)
			}
			db, err := sql.Open("sqlite", "file:"+sqlite.URIPath(path)+"?mode=ro")
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			var mode string
			if err := db.QueryRowContext(t.Context(), `PRAGMA journal_mode`).Scan(&mode); err != nil || mode != "wal" {
				t.Fatalf("journal mode %q (%v): the pragmas were not applied", mode, err)
			}
			if entries, _ := os.ReadDir(parent); len(entries) != 1 {
				t.Fatalf("beside the directory: %v", entries)
			}
			ro, err := sqlite.OpenReadOnly(t.Context(), path)
			if err != nil {
				t.Fatal(err)
			}
			defer ro.Close()
			if _, err := ro.Instance(t.Context(), "i-1"); err != nil {
				t.Fatalf("read again: %v", err)
			}
		})
	}
}

package sqlite_test

import (
	"path/filepath"
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

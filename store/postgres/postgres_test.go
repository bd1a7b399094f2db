package postgres_test

import (
	"testing"

	"github.com/adaptflow/adaptflow/store/postgres"
	"github.com/adaptflow/adaptflow/store/storetest"
)

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) storetest.Store {
		s, err := postgres.Open(t.Context(), storetest.FreshPostgres(t), postgres.Options{Migrate: true})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = s.Close() })
		return s
	})
}

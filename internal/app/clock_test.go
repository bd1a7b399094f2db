package app

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/adaptflow/adaptflow/api"
	"github.com/adaptflow/adaptflow/api/apitest"
	"github.com/adaptflow/adaptflow/store"
	"github.com/adaptflow/adaptflow/store/postgres"
	"github.com/adaptflow/adaptflow/store/sqlite"
	"github.com/adaptflow/adaptflow/store/storetest"
)

// skewedClock is the store's clock as a replica whose own clock is skew
// off reckons it.
func skewedClock(st clockSource, skew time.Duration) *storeClock {
	c := newStoreClock(st, slog.New(slog.DiscardHandler))
	c.local = func() time.Time { return time.Now().Add(skew) }
	return c
}

// TestStoreClockCorrectsASkewedReplica: a replica's clock 10 minutes off
// reads the store's time (here the machine's: SQLite is a local file).
func TestStoreClockCorrectsASkewedReplica(t *testing.T) {
	st := openLeases(t)
	for _, skew := range []time.Duration{-10 * time.Minute, 10 * time.Minute} {
		if off := time.Until(skewedClock(st, skew).read()); off.Abs() > time.Second {
			t.Fatalf("a replica %v off reads the store's time %v off", skew, off)
		}
	}
}

// TestSkewedReplicasJudgeAClaimAlike: two API replicas, one's clock 10
// minutes behind, the other's 10 minutes ahead. A reviewer's claim for a
// minute, taken through the first, holds the review against another
// reviewer through the second. By the replicas' own clocks the second
// would find it run out 19 minutes ago, and give the review to both.
func TestSkewedReplicasJudgeAClaimAlike(t *testing.T) {
	st := openLeases(t)
	ctx := t.Context()
	now := time.Now()
	if _, _, err := st.CreateInstance(ctx, store.Instance{ID: "i-1", Process: "p", ProcessVersion: 1, BusinessKey: "k", Input: []byte(`{}`), CreatedAt: now}); err != nil {
		t.Fatal(err)
	}
	if _, err := st.CreateReview(ctx, store.Review{ID: "rv-1", InstanceID: "i-1", RunID: "r", Process: "p", Step: "s", Queue: "q", Reason: "why", CreatedAt: now}); err != nil {
		t.Fatal(err)
	}
	behind := apiReplica(t, st, skewedClock(st, -10*time.Minute).read)
	ahead := apiReplica(t, st, skewedClock(st, 10*time.Minute).read)
	ann, bob := reviewerKey(t, st, "ann"), reviewerKey(t, st, "bob")

	if code, body := post(t, behind, "/v1/reviews/rv-1/claim", ann, `{"lease":"1m"}`); code != http.StatusOK {
		t.Fatalf("ann's claim: %d %s", code, body)
	}
	code, body := post(t, ahead, "/v1/reviews/rv-1/claim", bob, `{"lease":"1m"}`)
	if code != http.StatusConflict || !strings.Contains(body, "claimed by ann") {
		t.Fatalf("bob's claim while ann's holds: %d %s", code, body)
	}
	// Released through the replica ahead, as ann's own.
	if code, body := post(t, ahead, "/v1/reviews/rv-1/release", ann, ``); code != http.StatusOK {
		t.Fatalf("ann's release: %d %s", code, body)
	}
	if code, body := post(t, ahead, "/v1/reviews/rv-1/claim", bob, `{"lease":"1m"}`); code != http.StatusOK {
		t.Fatalf("bob's claim after ann's release: %d %s", code, body)
	}
}

// apiReplica serves the API on st with clock, Temporal down.
func apiReplica(t *testing.T, st *sqlite.Store, clock func() time.Time) *httptest.Server {
	t.Helper()
	opts := apitest.Options(t, st)
	opts.TaskQueue, opts.Clock = TaskQueue, clock
	h, err := api.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv
}

// reviewerKey is the secret of a new reviewer's key named name.
func reviewerKey(t *testing.T, st *sqlite.Store, name string) string {
	t.Helper()
	k, secret := api.NewKey(name, store.RoleReviewer, time.Now())
	if err := st.PutKey(t.Context(), k); err != nil {
		t.Fatal(err)
	}
	return secret
}

func post(t *testing.T, srv *httptest.Server, path, key, body string) (int, string) {
	t.Helper()
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, srv.URL+path, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+key)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	res, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var b strings.Builder
	_, _ = io.Copy(&b, res.Body)
	return res.StatusCode, b.String()
}

// countedClock counts the reads of a store's clock.
type countedClock struct {
	clockSource
	reads atomic.Int32
}

func (c *countedClock) Clock(ctx context.Context) (time.Time, error) {
	c.reads.Add(1)
	return c.clockSource.Clock(ctx)
}

// TestStoreClockWaitsBeforeMeasuringAgain: a store whose clock cannot be
// read (PostgreSQL gone) is asked again only after clockRetry, not by
// every request, which would each wait for it in turn.
func TestStoreClockWaitsBeforeMeasuringAgain(t *testing.T) {
	st, err := postgres.Open(t.Context(), storetest.FreshPostgres(t), postgres.Options{Migrate: true})
	if err != nil {
		t.Fatal(err)
	}
	src := &countedClock{clockSource: st}
	c := newStoreClock(src, slog.New(slog.DiscardHandler))
	local := time.Now()
	c.local = func() time.Time { return local }
	c.read()
	st.Close()
	local = local.Add(clockEvery) // due again
	for range 3 {
		c.read()
	}
	if n := src.reads.Load(); n != 2 {
		t.Fatalf("the clock was read %d times, want 2 (the first, one failed)", n)
	}
	local = local.Add(clockRetry)
	c.read()
	if n := src.reads.Load(); n != 3 {
		t.Fatalf("after %v, the clock was read %d times in all, want 3", clockRetry, n)
	}
}

package app

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// clockSource is a store that tells its time.
type clockSource interface {
	// Clock is the store's time, which leases and claims go by: replicas
	// share the store, not a clock.
	Clock(ctx context.Context) (time.Time, error)
}

// storeClock is the store's time as this replica reckons it: its own
// clock, corrected by the offset to the store's, measured every
// clockEvery. Leases of background tasks, claims on reviews and on
// retries are written by one replica and judged by others; by their own
// clocks, a replica whose clock runs behind would write leases and claims
// the others find run out already, and one whose clock runs ahead would
// hold them well past their end.
type storeClock struct {
	source clockSource
	logger *slog.Logger
	// local is this replica's clock (time.Now; a test's skewed one).
	local func() time.Time
	// mu guards offset, the store's clock minus this replica's as last
	// measured, and synced, when (locally) it was.
	mu     sync.Mutex
	offset time.Duration
	synced time.Time
}

func newStoreClock(source clockSource, lg *slog.Logger) *storeClock {
	return &storeClock{source: source, logger: lg, local: time.Now}
}

// clockEvery is how often a replica measures its clock against the
// store's.
const clockEvery = time.Minute

// now is the store's time, measuring the offset first when the last
// measure is older than clockEvery.
func (c *storeClock) now(ctx context.Context) time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	if local := c.local(); c.synced.IsZero() || local.Sub(c.synced) >= clockEvery || local.Before(c.synced) {
		c.syncClock(ctx)
	}
	return c.local().Add(c.offset)
}

// read is now for a request, or a worker's task: a measure it makes (once
// a minute) gives up after clockWait, and the last offset serves.
func (c *storeClock) read() time.Time {
	ctx, cancel := context.WithTimeout(context.Background(), clockWait)
	defer cancel()
	return c.now(ctx)
}

// clockWait bounds a measure of the store's clock made for a request.
const clockWait = 2 * time.Second

// clockRetry is how soon a measure that failed is tried again: not at
// every call, which would queue every request behind a store that does
// not answer.
const clockRetry = 5 * time.Second

// retryAt makes the next measure due clockRetry after t.
func (c *storeClock) retryAt(t time.Time) {
	c.synced = t.Add(clockRetry - clockEvery)
}

// syncClock measures the offset of the store's clock to this replica's
// (the midpoint of the round trip, as NTP does). A failed or slow
// measure keeps the last offset; the next call tries again.
func (c *storeClock) syncClock(ctx context.Context) {
	t0 := c.local()
	at, err := c.source.Clock(ctx)
	t1 := c.local()
	if err != nil {
		if ctx.Err() == nil {
			c.logger.Warn("the store's clock cannot be read; leases and claims go by the last offset to it", "offset", c.offset, "err", err)
		}
		c.retryAt(t1)
		return
	}
	rtt := t1.Sub(t0)
	if rtt < 0 || rtt > 2*time.Second {
		c.retryAt(t1) // too slow a round trip to measure by
		return
	}
	offset := at.Sub(t0.Add(rtt / 2))
	if off := offset.Abs(); off > time.Second && (offset-c.offset).Abs() > time.Second {
		c.logger.Warn("this replica's clock is off the store's; its leases and claims go by the store's", "offset", offset.Round(time.Millisecond))
	}
	c.offset, c.synced = offset, t1
}

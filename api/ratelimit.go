package api

import (
	"fmt"
	"math"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/gin-gonic/gin"
	"golang.org/x/time/rate"
)

// DefaultRateLimit is how many requests per second one API key may make
// (with bursts of twice that) unless configured otherwise.
const DefaultRateLimit = 200

// limiters holds one token bucket per API key. The limit is per API
// replica: N replicas allow N times as much.
type limiters struct {
	perSecond float64
	mu        sync.Mutex
	byKey     map[string]*rate.Limiter
}

func (l *limiters) get(key string) *rate.Limiter {
	l.mu.Lock()
	defer l.mu.Unlock()
	lim, ok := l.byKey[key]
	if !ok {
		lim = rate.NewLimiter(rate.Limit(l.perSecond), int(math.Max(1, 2*l.perSecond)))
		l.byKey[key] = lim
	}
	return lim
}

// rateLimit answers 429 with Retry-After when the caller's key has used up
// its requests.
func (s *server) rateLimit(c *gin.Context) {
	if err := s.spend(c, 1); err != nil {
		fail(c, err)
		return
	}
	c.Next()
}

// spend takes n more requests of the caller's limit (a batch of n+1
// starts, whose request took one; the request itself: n is 1): 429 with
// Retry-After when they are not there now, 400 naming instances when a
// batch is larger than the key may ever send at once (its burst).
func (s *server) spend(c *gin.Context, n int) error {
	if s.limits == nil || n <= 0 {
		return nil
	}
	lim := s.limits.get(caller(c).ID)
	if n > lim.Burst() {
		return badRequest("instances", "a batch of %d starts is more than this key may send at once (%d: %g requests per second, bursts of twice that); send smaller batches", n+1, lim.Burst()+1, s.limits.perSecond)
	}
	r := lim.ReserveN(time.Now(), n)
	if d := r.Delay(); d > 0 {
		r.Cancel()
		secs := max(1, int(math.Ceil(d.Seconds())))
		c.Header("Retry-After", strconv.Itoa(secs))
		what := "requests"
		if n > 1 {
			what = fmt.Sprintf("requests (a batch of %d starts counts as %d)", n+1, n+1)
		}
		return &httpError{status: http.StatusTooManyRequests, code: "rate_limited",
			msg: fmt.Sprintf("API key %s is over its limit of %g %s per second; retry in %s", caller(c).ID, s.limits.perSecond, what, d.Round(time.Millisecond))}
	}
	return nil
}

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

// limiters holds one token bucket per API key. The limit is the whole
// service's: with N API replicas (SetReplicas) each refills a key's bucket
// at 1/N of it, so a key's steady rate across them stays the limit. Each
// replica keeps the whole burst, so that a batch fits wherever it lands.
type limiters struct {
	perSecond float64
	mu        sync.Mutex
	replicas  int
	byKey     map[string]*rate.Limiter
}

// share is the rate of a key's bucket in this replica; l.mu held.
func (l *limiters) share() rate.Limit {
	return rate.Limit(l.perSecond / float64(max(1, l.replicas)))
}

func (l *limiters) get(key string) (*rate.Limiter, int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	lim, ok := l.byKey[key]
	if !ok {
		lim = rate.NewLimiter(l.share(), int(math.Max(1, 2*l.perSecond)))
		l.byKey[key] = lim
	}
	return lim, max(1, l.replicas)
}

// setReplicas shares the limit among n replicas from now on.
func (l *limiters) setReplicas(n int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	n = max(1, n)
	if n == max(1, l.replicas) {
		return
	}
	l.replicas = n
	now := time.Now()
	for _, lim := range l.byKey {
		lim.SetLimitAt(now, l.share())
	}
}

// SetReplicas says how many API replicas share the requests (1 or less:
// this one alone): each key's rate limit is the whole service's, so each
// replica allows a key 1/n of it. The app counts the live replicas in the
// store and calls this as the count changes.
func (h *Handler) SetReplicas(n int) {
	if h.limits != nil {
		h.limits.setReplicas(n)
	}
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

// spend takes n more requests of the caller's limit (the request itself:
// n is 1): 429 with Retry-After when they are not there now.
func (s *server) spend(c *gin.Context, n int) error {
	return s.spendBatch(c, n, "", "")
}

// spendBatch is spend for a batch of n+1 items (whose request took one),
// named field in the body and what in messages ("starts"); 400 naming
// field when the batch is larger than the key may ever send at once (its
// burst).
func (s *server) spendBatch(c *gin.Context, n int, field, what string) error {
	if s.limits == nil || n <= 0 {
		return nil
	}
	lim, replicas := s.limits.get(caller(c).ID)
	if n > lim.Burst() {
		return badRequest(field, "a batch of %d %s is more than this key may send at once (%d: %g requests per second, bursts of twice that); send smaller batches", n+1, what, lim.Burst()+1, s.limits.perSecond)
	}
	r := lim.ReserveN(time.Now(), n)
	if d := r.Delay(); d > 0 {
		r.Cancel()
		secs := max(1, int(math.Ceil(d.Seconds())))
		c.Header("Retry-After", strconv.Itoa(secs))
		counted := "requests"
		if n > 1 {
			counted = fmt.Sprintf("requests (a batch of %d %s counts as %d)", n+1, what, n+1)
		}
		shared := ""
		if replicas > 1 {
			shared = fmt.Sprintf(" (across %d API replicas)", replicas)
		}
		return &httpError{status: http.StatusTooManyRequests, code: "rate_limited",
			msg: fmt.Sprintf("API key %s is over its limit of %g %s per second%s; retry in %s", caller(c).ID, s.limits.perSecond, counted, shared, d.Round(time.Millisecond))}
	}
	return nil
}

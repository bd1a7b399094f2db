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
	if s.limits == nil {
		c.Next()
		return
	}
	r := s.limits.get(caller(c).ID).Reserve()
	if d := r.Delay(); d > 0 {
		r.Cancel()
		secs := max(1, int(math.Ceil(d.Seconds())))
		c.Header("Retry-After", strconv.Itoa(secs))
		fail(c, &httpError{status: http.StatusTooManyRequests, code: "rate_limited",
			msg: fmt.Sprintf("API key %s is over its limit of %g requests per second; retry in %s", caller(c).ID, s.limits.perSecond, d.Round(time.Millisecond))})
		return
	}
	c.Next()
}

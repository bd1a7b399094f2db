package api

import (
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/adaptflow/adaptflow/store"
)

// notAudited are the writes that change nothing kept (a simulation, a
// classification tried) or are the business itself rather than its
// configuration (instance starts and the events other systems send them,
// recorded with their instances).
var notAudited = map[string]bool{
	"POST /v1/policies/simulate":         true,
	"POST /v1/processes/:name/classify":  true,
	"POST /v1/processes/:name/instances": true,
	"POST /v1/instances/:id/events":      true,
}

// audit records every successful change made through the API after its
// handler ran: who (the key), when, what (method, route and parameters)
// and from where.
func (s *server) audit(c *gin.Context) {
	c.Next()
	if c.Request.Method == http.MethodGet || c.Request.Method == http.MethodHead || c.Writer.Status() >= 400 {
		return
	}
	action := c.Request.Method + " " + c.FullPath()
	if notAudited[action] {
		return
	}
	params := make([]string, 0, len(c.Params))
	for _, p := range c.Params {
		params = append(params, p.Key+"="+p.Value)
	}
	k := caller(c)
	e := store.AuditEntry{
		At: time.Now().UTC(), KeyID: k.ID, Actor: k.Name, Role: k.Role, Action: action, Target: strings.Join(params, ","),
		Status: c.Writer.Status(), Remote: c.ClientIP(), RequestID: c.GetString(ctxRequestID),
	}
	// The change is made; an entry that cannot be kept is logged loudly
	// rather than turning a done change into an error.
	if err := s.AuditLog.AppendAudit(c.Request.Context(), e); err != nil {
		loggerFrom(c).ErrorContext(c.Request.Context(), "audit entry not kept", "action", action, "target", e.Target, "actor", k.Name, "err", err)
	}
}

func (s *server) listAudit(c *gin.Context) {
	f := store.AuditFilter{Actor: c.Query("actor"), Action: c.Query("action")}
	since, err := agoParam(c, "since", time.Now())
	if err != nil {
		fail(c, err)
		return
	}
	f.Since = since
	for _, q := range []struct {
		name     string
		into     *int64
		min, max int64
	}{{"after", &f.After, 0, 1 << 62}, {"limit", nil, 1, 1000}} {
		v := c.Query(q.name)
		if v == "" {
			continue
		}
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < q.min || n > q.max {
			fail(c, badRequest(q.name, "must be a whole number from %d to %d (got %q)", q.min, q.max, v))
			return
		}
		if q.into != nil {
			*q.into = n
		} else {
			f.Limit = int(n)
		}
	}
	es, err := s.AuditLog.Audit(c.Request.Context(), f)
	if err != nil {
		fail(c, err)
		return
	}
	c.JSON(http.StatusOK, gin.H{"entries": es})
}

package api

import (
	"context"
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
	"POST /v1/policies/simulate":                 true,
	"POST /v1/processes/:name/classify":          true,
	"POST /v1/processes/:name/classify/evaluate": true,
	"POST /v1/processes/:name/instances":         true,
	"POST /v1/processes/:name/instances/batch":   true,
	"POST /v1/instances/:id/events":              true,
}

// audit records every change made through the API: who (the key), when,
// what (method, route and parameters), from where, and how it ended. The
// entry is written before the handler runs, so that no change goes
// unrecorded: when it cannot be written the change is refused (503), and a
// server that stops midway leaves the entry with status 0 (not known).
// Once the handler has run, the entry takes its status; a request refused
// (4xx) changed nothing, and its entry goes.
func (s *server) audit(c *gin.Context) {
	action := c.Request.Method + " " + c.FullPath()
	if c.Request.Method == http.MethodGet || c.Request.Method == http.MethodHead || notAudited[action] {
		c.Next()
		return
	}
	params := make([]string, 0, len(c.Params))
	for _, p := range c.Params {
		params = append(params, p.Key+"="+p.Value)
	}
	k := caller(c)
	e := store.AuditEntry{
		At: time.Now().UTC(), KeyID: k.ID, Actor: k.Name, Role: k.Role, Action: action, Target: strings.Join(params, ","),
		Remote: c.ClientIP(), RequestID: c.GetString(ctxRequestID),
	}
	ctx := c.Request.Context()
	seq, err := s.AuditLog.AppendAudit(ctx, e)
	if err != nil {
		loggerFrom(c).ErrorContext(ctx, "audit entry not written: change refused", "action", action, "target", e.Target, "actor", k.Name, "err", err)
		c.Header("Retry-After", "5")
		fail(c, &httpError{status: http.StatusServiceUnavailable, code: "unavailable", msg: "the audit log cannot be written, so no change is made; retry shortly"})
		return
	}
	c.Next()
	// The change has ended (or not: the entry then keeps status 0, which
	// says so); the request's context may be gone with its client.
	if err := s.AuditLog.SettleAudit(context.WithoutCancel(ctx), seq, c.Writer.Status(), c.GetString(ctxAuditTarget)); err != nil {
		loggerFrom(c).ErrorContext(ctx, "audit entry's status not kept", "seq", seq, "action", action, "target", e.Target, "status", c.Writer.Status(), "err", err)
	}
}

// ctxAuditTarget is the key under which a handler whose change the route's
// parameters do not name (a bulk decision: its reviews are in the body)
// says what it changed, for its audit entry.
const ctxAuditTarget = "adaptflow.audit_target"

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

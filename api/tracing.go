package api

import (
	"context"
	"net/http"

	"github.com/gin-gonic/gin"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// traceContext reads and writes W3C traceparent headers.
var traceContext = propagation.TraceContext{}

// startSpan starts the request's server span, as a child of the caller's
// traceparent when it sent one. The span is named by method and route
// pattern (not the path, which holds ids).
func (s *server) startSpan(ctx context.Context, c *gin.Context) (context.Context, trace.Span) {
	ctx = traceContext.Extract(ctx, propagation.HeaderCarrier(c.Request.Header))
	route := c.FullPath()
	if route == "" {
		route = "unmatched"
	}
	ctx, span := s.Tracer.Start(ctx, c.Request.Method+" "+route, trace.WithSpanKind(trace.SpanKindServer),
		trace.WithAttributes(attribute.String("http.request.method", c.Request.Method), attribute.String("http.route", route),
			attribute.String("url.path", c.Request.URL.Path), attribute.String("adaptflow.request_id", c.GetString(ctxRequestID))))
	return ctx, span
}

func endSpan(span trace.Span, c *gin.Context) {
	status := c.Writer.Status()
	span.SetAttributes(attribute.Int("http.response.status_code", status))
	if k := caller(c); k.ID != "" {
		span.SetAttributes(attribute.String("adaptflow.key_id", k.ID))
	}
	if status >= http.StatusInternalServerError {
		span.SetStatus(codes.Error, http.StatusText(status))
	}
	span.End()
}

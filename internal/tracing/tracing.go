// Package tracing sets up OpenTelemetry tracing for adaptflow when an OTLP
// endpoint is configured: spans go to it over OTLP/HTTP, the API makes a
// span per request, and the Temporal SDK's tracing interceptor carries the
// trace through workflow starts, workflows, activities, queries and updates.
package tracing

import (
	"context"
	"fmt"
	"net/url"
	"strings"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	temporalotel "go.temporal.io/sdk/contrib/opentelemetry"
	"go.temporal.io/sdk/interceptor"
)

// Tracing is a tracer provider exporting to an OTLP endpoint.
type Tracing struct {
	provider *sdktrace.TracerProvider
	// Tracer names spans adaptflow makes itself (API requests).
	Tracer trace.Tracer
	// Interceptor traces Temporal calls; give it to the client, whose
	// workers inherit it.
	Interceptor interceptor.Interceptor
}

// New exports spans to endpoint, an OTLP/HTTP base URL such as
// http://collector:4318 (its /v1/traces is used when it has no path), as
// service (adaptflow-dev, adaptflow-server, adaptflow-worker).
func New(ctx context.Context, endpoint, service string) (*Tracing, error) {
	u, err := url.Parse(endpoint)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("--otlp-endpoint %q: want an http(s) URL such as http://collector:4318", endpoint)
	}
	if strings.Trim(u.Path, "/") == "" {
		u.Path = "/v1/traces"
	}
	exp, err := otlptracehttp.New(ctx, otlptracehttp.WithEndpointURL(u.String()))
	if err != nil {
		return nil, fmt.Errorf("otlp exporter: %w", err)
	}
	res := resource.NewSchemaless(attribute.String("service.name", service))
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithResource(res))
	tracer := tp.Tracer("github.com/adaptflow/adaptflow")
	ic, err := temporalotel.NewTracingInterceptor(temporalotel.TracerOptions{Tracer: tracer})
	if err != nil {
		_ = tp.Shutdown(ctx)
		return nil, fmt.Errorf("temporal tracing interceptor: %w", err)
	}
	return &Tracing{provider: tp, Tracer: tracer, Interceptor: ic}, nil
}

// Shutdown sends the spans still buffered and stops the exporter.
func (t *Tracing) Shutdown(ctx context.Context) error { return t.provider.Shutdown(ctx) }

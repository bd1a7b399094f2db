package api_test

import (
	"io"
	"net/http"
	"strings"
	"testing"
)

func get(t *testing.T, c *http.Client, url string, header ...string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	res, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res, string(b)
}

func TestWebUIIsServed(t *testing.T) {
	srv, _ := newServer(t)
	noRedirect := *srv.Client()
	noRedirect.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

	for _, path := range []string{"/", "/ui"} {
		res, _ := get(t, &noRedirect, srv.URL+path)
		if res.StatusCode/100 != 3 || res.Header.Get("Location") != "/ui/" {
			t.Fatalf("%s: %d to %q, want a redirect to /ui/", path, res.StatusCode, res.Header.Get("Location"))
		}
	}

	res, page := get(t, srv.Client(), srv.URL+"/ui/")
	if res.StatusCode != http.StatusOK || !strings.HasPrefix(res.Header.Get("Content-Type"), "text/html") || !strings.Contains(page, `src="app.js"`) {
		t.Fatalf("index: %d %s\n%s", res.StatusCode, res.Header.Get("Content-Type"), page)
	}
	// The pages may run only their own scripts: text from an instance that
	// slipped into the markup could not run.
	csp := res.Header.Get("Content-Security-Policy")
	if !strings.Contains(csp, "script-src 'self'") || strings.Contains(csp, "unsafe-inline") || !strings.Contains(csp, "frame-ancestors 'none'") {
		t.Fatalf("Content-Security-Policy: %q", csp)
	}
	if res.Header.Get("X-Content-Type-Options") != "nosniff" {
		t.Fatalf("X-Content-Type-Options: %q", res.Header.Get("X-Content-Type-Options"))
	}

	res, script := get(t, srv.Client(), srv.URL+"/ui/app.js")
	if res.StatusCode != http.StatusOK || !strings.HasPrefix(res.Header.Get("Content-Type"), "text/javascript") || !strings.Contains(script, "/v1/whoami") {
		t.Fatalf("app.js: %d %s", res.StatusCode, res.Header.Get("Content-Type"))
	}
	// Revalidated on each load, answered 304 while unchanged.
	etag := res.Header.Get("ETag")
	if etag == "" || res.Header.Get("Cache-Control") != "no-cache" {
		t.Fatalf("app.js caching: ETag %q, Cache-Control %q", etag, res.Header.Get("Cache-Control"))
	}
	if res, _ := get(t, srv.Client(), srv.URL+"/ui/app.js", "If-None-Match", etag); res.StatusCode != http.StatusNotModified {
		t.Fatalf("app.js with its ETag: %d, want 304", res.StatusCode)
	}
	if res, _ := get(t, srv.Client(), srv.URL+"/ui/app.css"); res.StatusCode != http.StatusOK || !strings.HasPrefix(res.Header.Get("Content-Type"), "text/css") {
		t.Fatalf("app.css: %d %s", res.StatusCode, res.Header.Get("Content-Type"))
	}

	for _, path := range []string{"/ui/nope.js", "/ui/../api.go", "/ui/ui/app.js"} {
		res, body := get(t, srv.Client(), srv.URL+path)
		if res.StatusCode != http.StatusNotFound || !strings.Contains(body, `"not_found"`) {
			t.Fatalf("%s: %d %s", path, res.StatusCode, body)
		}
	}
}

// Package apitest checks HTTP exchanges against adaptflow's OpenAPI
// document. The API's tests and the product's end-to-end tests pass every
// response they get through it, so a response that drifts from the contract
// fails a test.
package apitest

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/legacy"

	"github.com/adaptflow/adaptflow/api"
)

var (
	once   sync.Once
	doc    *openapi3.T
	router routers.Router
	docErr error
)

// Document loads the served document and validates it with kin-openapi.
func Document() (*openapi3.T, error) {
	once.Do(func() {
		l := openapi3.NewLoader()
		if doc, docErr = l.LoadFromData(api.OpenAPI()); docErr != nil {
			return
		}
		if docErr = doc.Validate(context.Background()); docErr != nil {
			return
		}
		if !doc.IsOpenAPI31OrLater() {
			docErr = fmt.Errorf("the document is OpenAPI %s, not 3.1", doc.OpenAPI)
			return
		}
		router, docErr = legacy.NewRouter(doc)
	})
	return doc, docErr
}

// CheckResponse fails t when the response to method path (with query) does
// not match what the document says the route answers with that status.
func CheckResponse(t testing.TB, method, target string, status int, header http.Header, body []byte) {
	t.Helper()
	if err := Response(method, target, status, header, body); err != nil {
		t.Errorf("%s %s answered %d outside the OpenAPI contract: %v\nbody: %.600s", method, target, status, err, body)
	}
}

// Response is CheckResponse's check as an error.
func Response(method, target string, status int, header http.Header, body []byte) error {
	if _, err := Document(); err != nil {
		return err
	}
	u, err := url.Parse(target)
	if err != nil {
		return err
	}
	if u.Path == "/" || u.Path == "/ui" || strings.HasPrefix(u.Path, "/ui/") {
		return nil // the web UI's pages are outside the API
	}
	req := &http.Request{Method: method, URL: &url.URL{Path: u.Path, RawQuery: u.RawQuery}, Header: http.Header{}}
	route, params, err := router.FindRoute(req)
	if err != nil {
		if status == http.StatusNotFound || status == http.StatusMethodNotAllowed {
			return nil // no such route: the error shape is checked by the API's own tests
		}
		return fmt.Errorf("no route in the document: %w", err)
	}
	opts := &openapi3filter.Options{IncludeResponseStatus: true, AuthenticationFunc: openapi3filter.NoopAuthenticationFunc}
	return openapi3filter.ValidateResponse(context.Background(), &openapi3filter.ResponseValidationInput{
		RequestValidationInput: &openapi3filter.RequestValidationInput{Request: req, PathParams: params, Route: route, Options: opts},
		Status:                 status,
		Header:                 header,
		Body:                   io.NopCloser(bytes.NewReader(body)),
		Options:                opts,
	})
}

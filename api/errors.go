package api

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"syscall"

	"github.com/gin-gonic/gin"
	"go.temporal.io/api/serviceerror"

	"github.com/adaptflow/adaptflow/policies"
	"github.com/adaptflow/adaptflow/process"
	"github.com/adaptflow/adaptflow/store"
)

// ErrorBody is the one shape of every error response.
type ErrorBody struct {
	Error ErrorDetail `json:"error"`
}

// ErrorDetail says what went wrong and, for bad input, where.
type ErrorDetail struct {
	Code      string         `json:"code"`
	Message   string         `json:"message"`
	Field     string         `json:"field,omitempty"`
	Details   []FieldProblem `json:"details,omitempty"`
	RequestID string         `json:"request_id,omitempty"`
}

// FieldProblem is one problem of a document, by path.
type FieldProblem struct {
	Field   string `json:"field"`
	Message string `json:"message"`
}

// httpError is an error with the status and code to answer with.
type httpError struct {
	status int
	code   string
	msg    string
	field  string
}

func (e *httpError) Error() string { return e.msg }

func badRequest(field, format string, args ...any) error {
	msg := fmtMsg(format, args...)
	if field != "" {
		msg = field + ": " + msg
	}
	return &httpError{status: http.StatusBadRequest, code: "invalid_argument", msg: msg, field: field}
}

// conflict is a 409: the request is well formed, but what it is about
// is in a state that refuses it.
func conflict(format string, args ...any) error {
	return &httpError{status: http.StatusConflict, code: "conflict", msg: fmtMsg(format, args...)}
}

func fmtMsg(format string, args ...any) string {
	if len(args) == 0 {
		return format
	}
	return sprintf(format, args...)
}

// fail answers with the error, mapping known errors to their status in this
// one place.
func fail(c *gin.Context, err error) {
	status, d := errorDetail(c, err)
	c.AbortWithStatusJSON(status, ErrorBody{Error: d})
}

// errorDetail is the status and error body err answers with; it sets
// Retry-After when the client should retry, and logs what is unexpected.
func errorDetail(c *gin.Context, err error) (int, ErrorDetail) {
	d := ErrorDetail{RequestID: c.GetString(ctxRequestID)}
	status := http.StatusInternalServerError
	var he *httpError
	var fe *process.FieldError
	var fes process.Errors
	var unavailable *serviceerror.Unavailable
	var embedding embeddingError
	var deadline *serviceerror.DeadlineExceeded
	var exhausted *serviceerror.ResourceExhausted
	var tests policies.TestFailures
	var held *heldError
	switch {
	case errors.As(err, &held):
		// An update to an instance held by a pause: it has no workflow yet.
		status, d.Code, d.Message = http.StatusServiceUnavailable, "unavailable", held.Error()
		c.Header("Retry-After", "30")
	case errors.As(err, &tests):
		status, d.Code = http.StatusUnprocessableEntity, "tests_failed"
		d.Message = fmt.Sprintf("%d test case(s) of the policy failed; the version was not stored: %s", len(tests), tests.Error())
		for _, f := range tests {
			d.Details = append(d.Details, FieldProblem{Field: "tests." + f.Case, Message: f.Message + tracePart(f.Trace)})
		}
	case errors.As(err, &he):
		status, d.Code, d.Message, d.Field = he.status, he.code, he.msg, he.field
	case errors.As(err, &fes):
		status, d.Code, d.Message = http.StatusBadRequest, "invalid_argument", fes.Error()
		for _, e := range fes {
			d.Details = append(d.Details, FieldProblem{Field: e.Path, Message: e.Message})
		}
		if len(fes) > 0 {
			d.Field = fes[0].Path
		}
	case errors.As(err, &fe):
		status, d.Code, d.Message, d.Field = http.StatusBadRequest, "invalid_argument", fe.Error(), fe.Path
	case errors.Is(err, store.ErrNotFound):
		status, d.Code, d.Message = http.StatusNotFound, "not_found", strings.TrimSuffix(err.Error(), ": "+store.ErrNotFound.Error())+" not found"
	case errors.Is(err, store.ErrInvalid):
		status, d.Code, d.Message = http.StatusUnprocessableEntity, "invalid", err.Error()
	case errors.Is(err, store.ErrConflict):
		status, d.Code, d.Message = http.StatusConflict, "conflict", err.Error()
	case errors.As(err, &embedding):
		status, d.Code, d.Message = http.StatusServiceUnavailable, "unavailable", "the embeddings provider did not answer; retry shortly"
		c.Header("Retry-After", "5")
		loggerFrom(c).WarnContext(c.Request.Context(), "embeddings provider failed", "err", err)
	case errors.As(err, &unavailable), errors.As(err, &deadline), errors.As(err, &exhausted), errors.Is(err, context.DeadlineExceeded), dependencyDown(err):
		status, d.Code, d.Message = http.StatusServiceUnavailable, "unavailable", "a dependency is not answering; retry shortly"
		c.Header("Retry-After", "5")
	default:
		d.Code, d.Message = "internal", "internal error"
		loggerFrom(c).ErrorContext(c.Request.Context(), "request failed", "err", err, "path", c.FullPath())
	}
	return status, d
}

func asErrors(err error, es *process.Errors) bool { return errors.As(err, es) }

func tracePart(trace string) string {
	if trace == "" {
		return ""
	}
	return " — " + trace
}

// dependencyDown reports errors that mean the database is not reachable
// right now: a refused or broken connection, or PostgreSQL's connection
// exceptions (SQLSTATE class 08) and shutdowns (57P01-57P03).
func dependencyDown(err error) bool {
	var op *net.OpError
	if errors.As(err, &op) {
		return true
	}
	var retry interface{ SafeToRetry() bool }
	if errors.As(err, &retry) && retry.SafeToRetry() {
		return true
	}
	var coded interface{ SQLState() string }
	if errors.As(err, &coded) {
		state := coded.SQLState()
		return strings.HasPrefix(state, "08") || state == "57P01" || state == "57P02" || state == "57P03"
	}
	return errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET)
}

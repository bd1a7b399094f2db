// Package openaitest serves the OpenAI chat-completions wire format for
// tests: a real HTTP server answering POST /v1/chat/completions with the
// replies it is given, in turn (the last one repeats).
package openaitest

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Reply is one answer: an assistant message, or an error status.
type Reply struct {
	Status  int // 0 or 200: a completion with Content
	Content string
	Delay   time.Duration
}

// Server is the test server.
type Server struct {
	*httptest.Server
	calls   atomic.Int32
	replies []Reply
	mu      sync.Mutex
	last    map[string]any
}

// New starts a server that gives replies in turn.
func New(t testing.TB, replies ...Reply) *Server {
	t.Helper()
	s := &Server{replies: replies}
	s.Server = httptest.NewServer(http.HandlerFunc(s.serve))
	t.Cleanup(s.Close)
	return s
}

// BaseURL is the API base to configure a client with.
func (s *Server) BaseURL() string { return s.URL + "/v1" }

// Calls is how many completions were asked for.
func (s *Server) Calls() int { return int(s.calls.Load()) }

// Last is the last request body.
func (s *Server) Last() map[string]any {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.last
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/v1/chat/completions" || r.Method != http.MethodPost {
		http.NotFound(w, r)
		return
	}
	n := int(s.calls.Add(1)) - 1
	body, _ := io.ReadAll(r.Body)
	var req map[string]any
	_ = json.Unmarshal(body, &req)
	s.mu.Lock()
	s.last = req
	s.mu.Unlock()
	rep := s.replies[min(n, len(s.replies)-1)]
	if rep.Delay > 0 {
		select {
		case <-time.After(rep.Delay):
		case <-r.Context().Done():
			return
		}
	}
	w.Header().Set("Content-Type", "application/json")
	if rep.Status != 0 && rep.Status != http.StatusOK {
		w.WriteHeader(rep.Status)
		_, _ = w.Write([]byte(`{"error":{"message":"upstream says no","type":"server_error","code":null}}`))
		return
	}
	content, _ := json.Marshal(rep.Content)
	_, _ = w.Write([]byte(`{"id":"chatcmpl-1","object":"chat.completion","created":1,"model":"test-model","choices":[{"index":0,"message":{"role":"assistant","content":` +
		string(content) + `},"finish_reason":"stop"}],"usage":{"prompt_tokens":120,"completion_tokens":30,"total_tokens":150}}`))
}

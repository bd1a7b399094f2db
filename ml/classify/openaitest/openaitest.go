// Package openaitest serves the OpenAI chat-completions and embeddings wire
// formats for tests: a real HTTP server answering POST
// /v1/chat/completions with the replies it is given, in turn (the last one
// repeats), and POST /v1/embeddings with a bag-of-words embedding of each
// input (texts sharing words land near each other).
package openaitest

import (
	"encoding/json"
	"hash/fnv"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unicode"
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
	answer  func(req map[string]any) Reply
	// Embedding requests: how many, their dimension (default 16), and the
	// status to answer them with (0: embeddings).
	embedCalls  atomic.Int32
	embedDim    int
	embedStatus int
	// embedHold, while set, holds embeddings requests until it is closed
	// (or their client gives up): a provider that does not answer.
	embedHold chan struct{}
}

// HoldEmbeddings makes embeddings requests wait, as a provider that does
// not answer, until release is called (or their client gives up).
func (s *Server) HoldEmbeddings() (release func()) {
	hold := make(chan struct{})
	s.mu.Lock()
	s.embedHold = hold
	s.mu.Unlock()
	return sync.OnceFunc(func() {
		s.mu.Lock()
		if s.embedHold == hold {
			s.embedHold = nil
		}
		s.mu.Unlock()
		close(hold)
	})
}

// SetEmbeddings sets the dimension of the embeddings the server answers
// with, and a status to fail them with instead (0 for none).
func (s *Server) SetEmbeddings(dim, status int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.embedDim, s.embedStatus = dim, status
}

// EmbedCalls is how many embeddings requests were made.
func (s *Server) EmbedCalls() int { return int(s.embedCalls.Load()) }

// Embedding is the server's embedding of text at dimension dim: its
// lower-cased words hashed into dim buckets, L2-normalized.
func Embedding(text string, dim int) []float32 {
	v := make([]float32, dim)
	for _, w := range strings.FieldsFunc(strings.ToLower(text), func(r rune) bool { return !unicode.IsLetter(r) && !unicode.IsDigit(r) }) {
		h := fnv.New32a()
		_, _ = h.Write([]byte(w))
		v[h.Sum32()%uint32(dim)]++
	}
	var n float64
	for _, x := range v {
		n += float64(x) * float64(x)
	}
	if n > 0 {
		for i := range v {
			v[i] /= float32(math.Sqrt(n))
		}
	}
	return v
}

func (s *Server) embeddings(w http.ResponseWriter, r *http.Request) {
	s.embedCalls.Add(1)
	var req struct {
		Input any    `json:"input"`
		Model string `json:"model"`
	}
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	s.mu.Lock()
	dim, status, hold := s.embedDim, s.embedStatus, s.embedHold
	s.mu.Unlock()
	if hold != nil {
		select {
		case <-hold:
		case <-r.Context().Done():
			return
		}
	}
	if dim == 0 {
		dim = 16
	}
	w.Header().Set("Content-Type", "application/json")
	if status != 0 {
		w.WriteHeader(status)
		_, _ = w.Write([]byte(`{"error":{"message":"upstream says no","type":"server_error","code":null}}`))
		return
	}
	var texts []string
	switch in := req.Input.(type) {
	case string:
		texts = []string{in}
	case []any:
		for _, t := range in {
			s, _ := t.(string)
			texts = append(texts, s)
		}
	}
	type item struct {
		Object    string    `json:"object"`
		Index     int       `json:"index"`
		Embedding []float32 `json:"embedding"`
	}
	out := struct {
		Object string         `json:"object"`
		Data   []item         `json:"data"`
		Model  string         `json:"model"`
		Usage  map[string]int `json:"usage"`
	}{Object: "list", Model: req.Model, Usage: map[string]int{"prompt_tokens": len(texts), "total_tokens": len(texts)}}
	for i, t := range texts {
		out.Data = append(out.Data, item{Object: "embedding", Index: i, Embedding: Embedding(t, dim)})
	}
	_ = json.NewEncoder(w).Encode(out)
}

// New starts a server that gives replies in turn.
func New(t testing.TB, replies ...Reply) *Server {
	t.Helper()
	s := &Server{replies: replies}
	s.Server = httptest.NewServer(http.HandlerFunc(s.serve))
	t.Cleanup(s.Close)
	return s
}

// AnswerWith makes the server answer each chat completion with what f
// makes of its request (the JSON body), in place of the replies in turn:
// a model that reads the text.
func (s *Server) AnswerWith(f func(req map[string]any) Reply) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.answer = f
}

// LastUserText is the content of the last user message of a chat
// completion request: the text to classify.
func LastUserText(req map[string]any) string {
	msgs, _ := req["messages"].([]any)
	for i := len(msgs) - 1; i >= 0; i-- {
		if m, _ := msgs[i].(map[string]any); m["role"] == "user" {
			text, _ := m["content"].(string)
			return text
		}
	}
	return ""
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
	if r.URL.Path == "/v1/embeddings" && r.Method == http.MethodPost {
		s.embeddings(w, r)
		return
	}
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
	answer := s.answer
	s.mu.Unlock()
	var rep Reply
	if answer != nil {
		rep = answer(req)
	} else {
		rep = s.replies[min(n, len(s.replies)-1)]
	}
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

package temporalserver

import (
	"bytes"
	"context"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
)

// lockedBuffer is a log the server's goroutines write to side by side.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// takePorts makes the services' ports picked while taken true be one
// another process holds (bound between the pick and the server's bind).
func takePorts(t *testing.T, taken func(pick int) bool) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.Close() })
	held := l.Addr().(*net.TCPAddr).Port
	var picks atomic.Int32
	servicePort = func(host string) (int, error) {
		if taken(int(picks.Add(1))) {
			return held, nil
		}
		return freePort(host)
	}
	t.Cleanup(func() { servicePort = freePort })
}

// TestStartWithAPortTaken: a port of a service taken as the server starts
// (its Fatal, which would otherwise leave it half started) makes the
// start try again with other ports, and the server then answers. A try
// that failed midway leaves the frontend's port bound: the next binds
// another.
func TestStartWithAPortTaken(t *testing.T) {
	// Picks 1 to 4 are the first try's: the frontend's HTTP port, then
	// the history, matching and worker services' gRPC ports. The server
	// binds the frontend's gRPC port before the HTTP and worker ones.
	for _, tc := range []struct {
		name string
		pick int
	}{{"http", 1}, {"history", 2}, {"worker", 4}} {
		t.Run(tc.name, func(t *testing.T) {
			takePorts(t, func(pick int) bool { return pick == tc.pick })
			var logs lockedBuffer
			opts := DefaultOptions()
			opts.FrontendAddress = "127.0.0.1:0"
			opts.Logger = slog.New(slog.NewTextHandler(&logs, nil))
			s, err := Start(t.Context(), opts)
			if err != nil {
				t.Fatalf("start: %v\n%s", err, logs.String())
			}
			defer func() { _ = s.Stop() }()
			if !strings.Contains(logs.String(), "trying again with others") {
				t.Fatalf("the start was not tried again:\n%s", logs.String())
			}
			if err := answers(t, s); err != nil {
				t.Fatalf("the server started on a second try does not answer: %v", err)
			}
		})
	}
}

// TestStartWithPortsAlwaysTaken: a start that keeps finding its ports
// taken gives up after three tries with the error, never a panic.
func TestStartWithPortsAlwaysTaken(t *testing.T) {
	takePorts(t, func(pick int) bool { return pick%4 == 2 })
	opts := DefaultOptions()
	opts.FrontendAddress = "127.0.0.1:0"
	opts.Logger = slog.New(slog.DiscardHandler)
	s, err := Start(t.Context(), opts)
	if err == nil {
		_ = s.Stop()
		t.Fatal("started with the history service's port taken every time")
	}
	if !strings.Contains(err.Error(), "address already in use") {
		t.Fatalf("the error does not say a port was taken: %v", err)
	}
}

// TestServicePortsRepeatNoneTaken: a pick for a service that is the
// frontend's port (free when picked: the frontend binds it later) or
// another service's is not used. Such a repeat made the frontend's bind
// fail, and every try after it, on a frontend port the caller named.
func TestServicePortsRepeatNoneTaken(t *testing.T) {
	frontend, err := freePort("127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	other, err := freePort("127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	var picks atomic.Int32
	servicePort = func(host string) (int, error) {
		switch picks.Add(1) {
		case 1:
			return frontend, nil
		case 2, 3:
			return other, nil
		}
		return freePort(host)
	}
	t.Cleanup(func() { servicePort = freePort })
	var logs lockedBuffer
	opts := DefaultOptions()
	opts.FrontendAddress = net.JoinHostPort("127.0.0.1", strconv.Itoa(frontend))
	opts.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	s, err := Start(t.Context(), opts)
	if err != nil {
		t.Fatalf("start: %v\n%s", err, logs.String())
	}
	defer func() { _ = s.Stop() }()
	if strings.Contains(logs.String(), "trying again with others") {
		t.Fatalf("the start was tried again:\n%s", logs.String())
	}
	if err := answers(t, s); err != nil {
		t.Fatalf("the server does not answer: %v", err)
	}
}

// answers is whether s describes its default namespace to a client.
func answers(t *testing.T, s *Server) error {
	t.Helper()
	c, err := client.Dial(client.Options{HostPort: s.Address(), Namespace: "default"})
	if err != nil {
		return err
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	_, err = c.WorkflowService().DescribeNamespace(ctx, &workflowservice.DescribeNamespaceRequest{Namespace: "default"})
	return err
}

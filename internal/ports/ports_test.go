package ports_test

import (
	"net"
	"strconv"
	"testing"

	"github.com/adaptflow/adaptflow/internal/ports"
)

func TestFreePortsAreOutsideTheEphemeralRangeAndBindable(t *testing.T) {
	seen := map[int]bool{}
	for range 20 {
		p, err := ports.Free("127.0.0.1")
		if err != nil {
			t.Fatal(err)
		}
		if p < ports.Low || p >= ports.High {
			t.Fatalf("port %d outside [%d, %d)", p, ports.Low, ports.High)
		}
		l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
		if err != nil {
			t.Fatalf("port %d cannot be bound: %v", p, err)
		}
		_ = l.Close()
		seen[p] = true
	}
	// Drawn at random: twenty draws give (nearly always) twenty ports,
	// where the kernel's "port 0" would hand one out again and again.
	if len(seen) < 15 {
		t.Fatalf("%d distinct ports in 20 draws", len(seen))
	}
}

func TestAPortInUseIsNotGivenOut(t *testing.T) {
	// Hold most of the range's first ports: Free never returns a held one.
	var held []net.Listener
	defer func() {
		for _, l := range held {
			_ = l.Close()
		}
	}()
	busy := map[int]bool{}
	for p := ports.Low; p < ports.Low+200; p++ {
		if l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p))); err == nil {
			held = append(held, l)
			busy[p] = true
		}
	}
	for range 200 {
		p, err := ports.Free("127.0.0.1")
		if err != nil {
			t.Fatal(err)
		}
		if busy[p] {
			t.Fatalf("port %d is in use", p)
		}
	}
}

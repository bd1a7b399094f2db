// Package ports picks free TCP ports for servers that bind them later.
//
// A port the kernel hands out for "port 0" comes from the ephemeral range,
// where every outgoing connection and every other "port 0" bind on the
// machine draws too: once released, the same port is soon handed out
// again. A server told to bind it a moment later can then find it taken.
// Free picks ports below the ephemeral range instead, at random, where
// only explicit binds go.
package ports

import (
	"fmt"
	"math/rand/v2"
	"net"
	"strconv"
)

// The range Free draws from: above the well-known and most registered
// service ports in common use, below Linux's ephemeral range (32768 on).
const (
	Low  = 20000
	High = 32000
)

// Free returns a port on host that could be bound just now: one drawn at
// random from [Low, High), or, when none of the tries is free, one the
// kernel picks.
func Free(host string) (int, error) {
	for range 64 {
		p := Low + rand.IntN(High-Low)
		l, err := net.Listen("tcp", net.JoinHostPort(host, strconv.Itoa(p)))
		if err == nil {
			_ = l.Close()
			return p, nil
		}
	}
	l, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

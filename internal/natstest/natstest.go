// Package natstest starts real embedded NATS servers with JetStream for
// tests: one node, or a cluster of nodes on loopback routes.
package natstest

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/concord-macp/concord/host/natsnode"
)

// Logger writes warnings and errors to the test's log.
func Logger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(writer{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

type writer struct{ t testing.TB }

func (w writer) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// Single starts one node in a temporary directory; the test stops it.
func Single(t testing.TB) *natsnode.Node {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	n, err := natsnode.Start(ctx, natsnode.Options{Name: "solo", Dir: t.TempDir(), Logger: Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(n.Shutdown)
	return n
}

// Cluster starts size nodes routed to each other on loopback, each with
// its own directory, and waits until JetStream answers on every one. The
// test stops them (those it has not stopped itself).
func Cluster(t testing.TB, size int) []*natsnode.Node {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var nodes []*natsnode.Node
	var seed string
	for i := range size {
		opts := natsnode.Options{
			Name:          fmt.Sprintf("n%d", i+1),
			Dir:           t.TempDir(),
			ClusterListen: "127.0.0.1:0",
			Logger:        Logger(t),
		}
		if seed != "" {
			opts.Peers = []string{seed}
		}
		n, err := natsnode.Start(ctx, opts)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(n.Shutdown)
		if seed == "" {
			seed = n.ClusterAddr()
		}
		nodes = append(nodes, n)
	}
	for _, n := range nodes {
		WaitJetStream(t, n)
	}
	return nodes
}

// WaitJetStream waits until node n's JetStream answers account requests.
func WaitJetStream(t testing.TB, n *natsnode.Node) {
	t.Helper()
	nc, err := n.Connect("natstest")
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	deadline := time.Now().Add(60 * time.Second)
	for {
		_, err := nc.Request("$JS.API.INFO", nil, 2*time.Second)
		if err == nil {
			msg, _ := nc.Request("$JS.API.INFO", nil, 2*time.Second)
			if msg != nil && !strings.Contains(string(msg.Data), `"error"`) {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("JetStream on %s did not become available: %v", n.Name(), err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Connect opens a client connection to n that the test closes.
func Connect(t testing.TB, n *natsnode.Node, name string) *nats.Conn {
	t.Helper()
	nc, err := n.Connect(name)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc
}

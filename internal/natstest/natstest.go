// Package natstest starts real embedded NATS servers with JetStream for
// tests: one node, or a cluster of nodes on loopback routes.
package natstest

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/concord-macp/concord/host/natsnode"
)

// Logger writes errors to the test's log (a forming cluster warns a lot).
func Logger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(writer{t}, &slog.HandlerOptions{Level: slog.LevelError}))
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
// its own directory and a client port (ClientURL), and waits until JetStream answers on every one. The
// test stops them (those it has not stopped itself).
func Cluster(t testing.TB, size int) []*natsnode.Node {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	// The client ports come from the same batch as the routes: a client
	// listener on port 0 could be given a route port freed a moment ago
	// whose node has not bound it yet.
	addrs := FreeAddrs(t, 2*size)
	routes, clients := addrs[:size], addrs[size:]
	nodes := make([]*natsnode.Node, size)
	errs := make(chan error, size)
	// The nodes start together: each waits for its routes to the others.
	for i := range size {
		go func() {
			n, err := natsnode.Start(ctx, natsnode.Options{
				Name:          fmt.Sprintf("n%d", i+1),
				Dir:           t.TempDir(),
				ClusterListen: routes[i],
				ClientListen:  clients[i],
				Peers:         routes,
				Logger:        Logger(t),
			})
			nodes[i] = n
			errs <- err
		}()
	}
	for range size {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	for _, n := range nodes {
		t.Cleanup(n.Shutdown)
	}
	for _, n := range nodes {
		WaitJetStream(t, n)
	}
	return nodes
}

// FreeAddrs returns n distinct loopback addresses with ports free right
// now. Take every address a test needs from one call: the ports of one
// call are held open together, those of two calls may coincide.
func FreeAddrs(t testing.TB, n int) []string {
	t.Helper()
	var out []string
	var lns []net.Listener
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		lns = append(lns, ln)
		out = append(out, ln.Addr().String())
	}
	for _, ln := range lns {
		_ = ln.Close()
	}
	return out
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

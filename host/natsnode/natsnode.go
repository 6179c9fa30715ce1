// Package natsnode runs a NATS server with JetStream inside the Concord
// process: alone (tests, a single node on JetStream) or as one peer of a
// cluster whose routes name the other peers. The process's own client
// connects to it in-process, without a socket; other Concord nodes reach
// the cluster through their own embedded peers.
package natsnode

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"strings"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// DefaultMaxPayload is the largest message an embedded node accepts: one
// commit of a session (an envelope of up to 1 MiB and a mode state of up
// to 2 MiB) always fits.
const DefaultMaxPayload = 8 << 20

// Options configure a node.
type Options struct {
	// Name is the server's name in the cluster; it must be unique and
	// stable across restarts (JetStream's peers are named by it).
	Name string
	// Dir holds JetStream's files (required).
	Dir string
	// ClientListen, when set, also serves NATS clients on this address
	// (host:port; port 0 picks one). Empty serves in-process clients only,
	// except in a cluster: the server starts its routes only after its
	// client listener, so a clustered node listens on a loopback port the
	// system picks.
	ClientListen string
	// ClusterListen is this node's route address (host:port; port 0 picks
	// one). Empty runs a single node without routes.
	ClusterListen string
	// Peers are the route addresses (host:port) of the other nodes. This
	// node's own address may be among them.
	Peers []string
	// ClusterName names the cluster; every peer must use the same.
	ClusterName string
	// MaxPayload caps one message (default DefaultMaxPayload).
	MaxPayload int
	// Logger receives the server's notices, warnings and errors.
	Logger *slog.Logger
}

// Node is a running embedded NATS server.
type Node struct {
	srv *server.Server
}

// DefaultClusterName is the cluster name when none is given.
const DefaultClusterName = "concord"

// Start starts the server and waits until it accepts connections.
func Start(ctx context.Context, opts Options) (*Node, error) {
	if opts.Name == "" || opts.Dir == "" {
		return nil, errors.New("natsnode: a node needs a name and a directory")
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.MaxPayload <= 0 {
		opts.MaxPayload = DefaultMaxPayload
	}
	if opts.ClusterName == "" {
		opts.ClusterName = DefaultClusterName
	}
	so := &server.Options{
		ServerName: opts.Name,
		JetStream:  true,
		StoreDir:   opts.Dir,
		MaxPayload: int32(opts.MaxPayload),
		// Slow consumers of a big backfill are cut off otherwise.
		MaxPending: 64 << 20,
		NoSigs:     true,
	}
	if opts.ClientListen == "" && opts.ClusterListen != "" {
		opts.ClientListen = "127.0.0.1:0"
	}
	if opts.ClientListen == "" {
		so.DontListen = true
	} else {
		host, port, err := splitHostPort(opts.ClientListen)
		if err != nil {
			return nil, fmt.Errorf("natsnode: client address: %w", err)
		}
		so.Host, so.Port = host, port
	}
	if opts.ClusterListen != "" {
		host, port, err := splitHostPort(opts.ClusterListen)
		if err != nil {
			return nil, fmt.Errorf("natsnode: cluster address: %w", err)
		}
		so.Cluster = server.ClusterOpts{Name: opts.ClusterName, Host: host, Port: port}
		for _, p := range opts.Peers {
			p = strings.TrimSpace(p)
			if p == "" {
				continue
			}
			if _, _, err := splitHostPort(p); err != nil {
				return nil, fmt.Errorf("natsnode: peer %q: %w", p, err)
			}
			so.Routes = append(so.Routes, &url.URL{Scheme: "nats", Host: p})
		}
	}
	srv, err := server.NewServer(so)
	if err != nil {
		return nil, fmt.Errorf("natsnode: %w", err)
	}
	srv.SetLoggerV2(logger{opts.Logger.With("component", "nats", "node", opts.Name)}, false, false, false)
	go srv.Start()
	deadline := 30 * time.Second
	if d, ok := ctx.Deadline(); ok {
		deadline = time.Until(d)
	}
	if !srv.ReadyForConnections(deadline) {
		srv.Shutdown()
		return nil, fmt.Errorf("natsnode: %s did not start within %s", opts.Name, deadline)
	}
	return &Node{srv: srv}, nil
}

func splitHostPort(addr string) (string, int, error) {
	host, p, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, err
	}
	port, err := net.LookupPort("tcp", p)
	if err != nil {
		return "", 0, err
	}
	if port == 0 {
		port = server.RANDOM_PORT // the server reads 0 as its default port
	}
	return host, port, nil
}

// Name returns the node's name.
func (n *Node) Name() string { return n.srv.Name() }

// ClusterAddr returns the address the node's routes listen on, or "" for
// a node without a cluster.
func (n *Node) ClusterAddr() string {
	if a := n.srv.ClusterAddr(); a != nil {
		return a.String()
	}
	return ""
}

// ClientURL returns the URL clients connect to, or "" when the node serves
// in-process clients only.
func (n *Node) ClientURL() string {
	if n.srv.Addr() == nil {
		return ""
	}
	return n.srv.ClientURL()
}

// Connect opens a client connection to the node, in-process.
func (n *Node) Connect(name string, opts ...nats.Option) (*nats.Conn, error) {
	opts = append([]nats.Option{nats.Name(name), nats.InProcessServer(n.srv), nats.MaxReconnects(-1)}, opts...)
	nc, err := nats.Connect("", opts...)
	if err != nil {
		return nil, fmt.Errorf("natsnode: connect to %s: %w", n.Name(), err)
	}
	return nc, nil
}

// Shutdown stops the server: clients are disconnected, JetStream's files
// flushed, and this node's leaderships handed to its peers.
func (n *Node) Shutdown() {
	n.srv.Shutdown()
	n.srv.WaitForShutdown()
}

// logger passes the server's log lines to slog.
type logger struct{ log *slog.Logger }

func (l logger) Noticef(format string, v ...any) { l.log.Debug(fmt.Sprintf(format, v...)) }
func (l logger) Warnf(format string, v ...any)   { l.log.Warn(fmt.Sprintf(format, v...)) }
func (l logger) Fatalf(format string, v ...any)  { l.log.Error(fmt.Sprintf(format, v...)) }
func (l logger) Errorf(format string, v ...any)  { l.log.Error(fmt.Sprintf(format, v...)) }
func (l logger) Debugf(format string, v ...any)  { l.log.Debug(fmt.Sprintf(format, v...)) }
func (l logger) Tracef(format string, v ...any)  {}

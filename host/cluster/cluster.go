// Package cluster makes Concord nodes one runtime on NATS JetStream: they
// share the session log and registries (host/storage/jetstream), each open
// session has one owner node at a time, held as a lease in a KV bucket,
// every node forwards calls on a session to its owner, and when an owner
// stops renewing its leases the others take its sessions over. A node runs
// an embedded NATS server (a cluster of Concord processes and nothing
// else) or joins an existing NATS cluster.
package cluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/concord-macp/concord/host/kernel"
	"github.com/concord-macp/concord/host/natsnode"
	"github.com/concord-macp/concord/host/storage/jetstream"
)

// Config configures a node. Exactly one of URLs and Embedded is set.
type Config struct {
	// Name names this node in the cluster: letters, digits, _ and -,
	// unique and stable across restarts.
	Name string
	// URLs are the servers of an existing NATS cluster with JetStream.
	URLs []string
	// Embedded runs a NATS server inside this process.
	Embedded *Embedded
	// DataDir holds the embedded server's JetStream files.
	DataDir string
	// Replicas of the streams and buckets: default 3, or 1 for an embedded
	// node without peers.
	Replicas int
	// LeaseTTL is how long a session's lease lasts without renewal: the
	// time an owner's failure takes to be noticed (default 5s, at least 1s).
	LeaseTTL time.Duration
	// Prefix names the streams, buckets and subjects (default "concord").
	Prefix string
	// Logger; slog.Default() when nil.
	Logger *slog.Logger
	// NATSOptions are extra options of the client connection (credentials,
	// TLS) to an existing cluster.
	NATSOptions []nats.Option
	// JoinTimeout bounds how long Start waits for the embedded server's
	// routes and for JetStream to create the streams and buckets; zero
	// waits until Start's context ends (a NATS cluster still forming).
	JoinTimeout time.Duration
}

// Embedded configures the NATS server a node runs itself.
type Embedded struct {
	// Listen is the route address other nodes connect to (host:port).
	Listen string
	// Peers are the route addresses of the other nodes.
	Peers []string
	// ClientListen, when set, also serves NATS clients here (the nats
	// CLI, monitoring); empty serves this process only.
	ClientListen string
}

// DefaultLeaseTTL is a lease's lifetime when none is configured.
const DefaultLeaseTTL = 5 * time.Second

// Node is one Concord node of a cluster.
type Node struct {
	name   string
	cfg    Config
	log    *slog.Logger
	nc     *nats.Conn
	js     natsjs.JetStream
	server *natsnode.Node // nil when joining an existing cluster
	store  *jetstream.Store
	leases natsjs.KeyValue
	ttl    time.Duration
	// leaseSubject prefixes a lease key into its subject.
	leaseSubject string
	// callSubject is where this node serves forwarded calls; other nodes'
	// are the same with their names.
	callPrefix string
	// startSeq is the log's end when the node started: the follower
	// begins after it, the kernel's restore read everything before.
	startSeq uint64

	kernel   *kernel.Kernel
	watchers []watcher

	mu sync.Mutex
	// held are the leases this node holds, by session id.
	held map[string]*lease
	// owners is every session's owner as the lease watch last saw it.
	owners map[string]string
	// live are the sessions known to be open or suspended.
	live map[string]bool

	stats counters

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	sub    *nats.Subscription
}

var _ kernel.Cluster = (*Node)(nil)

// Start connects to the cluster (starting the embedded server first, if
// configured) and opens the shared store. The node serves no session
// until Attach gives it its kernel.
func Start(ctx context.Context, cfg Config) (_ *Node, err error) {
	if !validName(cfg.Name) {
		return nil, fmt.Errorf("cluster: node name %q: use 1 to 64 letters, digits, _ and -", cfg.Name)
	}
	if (len(cfg.URLs) == 0) == (cfg.Embedded == nil) {
		return nil, errors.New("cluster: give either NATS URLs or an embedded server, not both or neither")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.LeaseTTL == 0 {
		cfg.LeaseTTL = DefaultLeaseTTL
	}
	if cfg.LeaseTTL < time.Second {
		return nil, fmt.Errorf("cluster: lease TTL %s is below the 1s JetStream allows", cfg.LeaseTTL)
	}
	if cfg.Prefix == "" {
		cfg.Prefix = "concord"
	}
	if cfg.Replicas <= 0 {
		cfg.Replicas = 3
		if cfg.Embedded != nil && len(cfg.Embedded.Peers) == 0 {
			cfg.Replicas = 1
		}
	}
	if cfg.JoinTimeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, cfg.JoinTimeout)
		defer cancel()
	}
	log := cfg.Logger.With("component", "cluster", "node", cfg.Name)
	n := &Node{
		name: cfg.Name, cfg: cfg, log: log, ttl: cfg.LeaseTTL,
		held: map[string]*lease{}, owners: map[string]string{}, live: map[string]bool{},
	}
	defer func() {
		if err != nil {
			n.Close()
		}
	}()
	if cfg.Embedded != nil {
		if cfg.DataDir == "" {
			return nil, errors.New("cluster: an embedded NATS server needs a data directory")
		}
		opts := natsnode.Options{
			Name:         cfg.Name,
			Dir:          filepath.Join(cfg.DataDir, "nats"),
			ClientListen: cfg.Embedded.ClientListen,
			Logger:       cfg.Logger,
		}
		if len(cfg.Embedded.Peers) > 0 { // a node without peers runs alone, without routes
			opts.ClusterListen, opts.Peers = cfg.Embedded.Listen, cfg.Embedded.Peers
		}
		n.server, err = natsnode.Start(ctx, opts)
		if err != nil {
			return nil, fmt.Errorf("cluster: %w", err)
		}
		n.nc, err = n.server.Connect("concord-"+cfg.Name, cfg.NATSOptions...)
	} else {
		opts := append([]nats.Option{nats.Name("concord-" + cfg.Name), nats.MaxReconnects(-1)}, cfg.NATSOptions...)
		n.nc, err = nats.Connect(strings.Join(cfg.URLs, ","), opts...)
	}
	if err != nil {
		return nil, fmt.Errorf("cluster: connect to NATS: %w", err)
	}
	n.store, err = jetstream.Open(ctx, jetstream.Options{
		Conn: n.nc, Replicas: cfg.Replicas, Prefix: cfg.Prefix, Writer: cfg.Name, Logger: cfg.Logger,
	})
	if err != nil {
		return nil, fmt.Errorf("cluster: %w", err)
	}
	n.js = n.store.JetStream()
	if err := n.openLeases(ctx); err != nil {
		return nil, err
	}
	if n.startSeq, err = n.store.LastSequence(ctx); err != nil {
		return nil, fmt.Errorf("cluster: %w", err)
	}
	n.callPrefix = strings.ToLower(cfg.Prefix) + ".node."
	return n, nil
}

func validName(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// Store returns the shared store the kernel runs over.
func (n *Node) Store() *jetstream.Store { return n.store }

// Name returns the node's name.
func (n *Node) Name() string { return n.name }

// Attach gives the node its kernel and starts serving: forwarded calls,
// the lease watch and renewals, the follower of the shared log, and the
// takeover of sessions without an owner.
func (n *Node) Attach(ctx context.Context, k *kernel.Kernel) error {
	n.kernel = k
	n.ctx, n.cancel = context.WithCancel(context.WithoutCancel(ctx))
	if err := n.learnSessions(ctx); err != nil {
		return err
	}
	sub, err := n.nc.Subscribe(n.callSubject(n.name), n.onCall)
	if err != nil {
		return fmt.Errorf("cluster: serve forwarded calls: %w", err)
	}
	n.sub = sub
	ready := make(chan error, 1)
	n.run(func(ctx context.Context) { n.watchOwners(ctx, ready) })
	select {
	case err := <-ready:
		if err != nil {
			return err
		}
	case <-ctx.Done():
		return ctx.Err()
	}
	n.run(n.renewLoop)
	n.run(n.follow)
	n.run(n.adoptLoop)
	for _, w := range n.watchers {
		n.run(func(ctx context.Context) { n.watch(ctx, w) })
	}
	n.log.Info("joined the cluster", "replicas", n.cfg.Replicas, "lease_ttl", n.ttl)
	return nil
}

// run starts a background loop that ends with the node.
func (n *Node) run(fn func(context.Context)) {
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		fn(n.ctx)
	}()
}

// Close releases this node's leases (so that the other nodes take its
// sessions over at once), stops its loops and disconnects, then stops the
// embedded server. Call it after the kernel stopped taking calls.
func (n *Node) Close() {
	if n.cancel != nil {
		n.releaseAll()
		n.cancel()
		n.wg.Wait()
	}
	if n.sub != nil {
		_ = n.sub.Unsubscribe()
	}
	if n.store != nil {
		_ = n.store.Close()
	}
	if n.nc != nil {
		_ = n.nc.Drain()
		n.nc.Close()
	}
	if n.server != nil {
		n.server.Shutdown()
	}
}

// Halt stops the node the way a crash would, for tests of failover: no
// lease is released, loops stop, the connection and the embedded server
// (if any) go away at once.
func (n *Node) Halt() {
	if n.cancel != nil {
		n.cancel()
	}
	if n.sub != nil {
		_ = n.sub.Unsubscribe()
	}
	if n.nc != nil {
		n.nc.Close()
	}
	n.wg.Wait()
	if n.server != nil {
		n.server.Shutdown()
	}
}

// Status is what the node knows of the cluster's sessions, for the admin
// UI and metrics.
type Status struct {
	Node string
	// Held are the leases this node holds.
	Held []Lease
	// Owners maps every session with a lease to its owner node.
	Owners map[string]string
	// Counters since start.
	Acquired, Renewed, Lost, Released, Forwarded, Served uint64
}

// Lease is one lease this node holds.
type Lease struct {
	Session    string
	Revision   uint64
	ValidUntil time.Time
}

// Owner returns the node that owns session id as far as this node knows,
// and whether any does.
func (n *Node) Owner(id string) (string, bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if l, ok := n.held[id]; ok && l.valid(time.Now()) {
		return n.name, true
	}
	o, ok := n.owners[id]
	return o, ok
}

// Status returns a snapshot of the node's view of the cluster.
func (n *Node) Status() Status {
	n.mu.Lock()
	defer n.mu.Unlock()
	st := Status{Node: n.name, Owners: make(map[string]string, len(n.owners))}
	for id, l := range n.held {
		st.Held = append(st.Held, Lease{Session: id, Revision: l.rev, ValidUntil: l.until})
	}
	for id, o := range n.owners {
		st.Owners[id] = o
	}
	st.Acquired, st.Renewed, st.Lost = n.stats.acquired.Load(), n.stats.renewed.Load(), n.stats.lost.Load()
	st.Released, st.Forwarded, st.Served = n.stats.released.Load(), n.stats.forwarded.Load(), n.stats.served.Load()
	return st
}

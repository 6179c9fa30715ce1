package jetstream

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/concord-macp/concord/host/storage"
)

// Options configure Open.
type Options struct {
	// Conn is a connection to a NATS server with JetStream. The store does
	// not close it.
	Conn *nats.Conn
	// Replicas of every stream and bucket: 1 for one node, 3 (or 5) in a
	// cluster. 0 means 1.
	Replicas int
	// Prefix names the streams and buckets (upper case) and subjects
	// (lower case); default "concord". Two deployments sharing one NATS
	// account need different prefixes.
	Prefix string
	// Writer is the name recorded in every log message this handle writes
	// (the node's name).
	Writer string
	// Timeout bounds one write or read (default 10s).
	Timeout time.Duration
	// Logger receives the store's messages; slog.Default() when nil.
	Logger *slog.Logger
}

// DefaultTimeout bounds one request to JetStream.
const DefaultTimeout = 10 * time.Second

// Store is a storage.Store on JetStream. Its methods are safe for
// concurrent use. Several Stores (one per node) may share the same streams.
type Store struct {
	nc       *nats.Conn
	js       natsjs.JetStream
	log      natsjs.Stream
	logName  string
	subject  string // "<prefix>.log."
	writer   string
	timeout  time.Duration
	maxBytes int // largest message the server takes, less headroom
	logger   *slog.Logger

	records natsjs.KeyValue
	// recordStream is the records bucket's stream, recordSubject the
	// prefix of its subjects.
	recordStream  natsjs.Stream
	recordSubject string
	blobs         natsjs.ObjectStore

	mu       sync.Mutex
	sessions map[string]*sessionLog
	closed   bool
}

var _ storage.Store = (*Store)(nil)

// recordKinds and blobKinds are the kinds the store keeps: each kind is
// the first token of its records' keys in the one records bucket, and the
// first part of its blobs' names in the one object store. Fewer buckets
// are fewer replicated groups for the cluster to run.
var (
	recordKinds = map[storage.Kind]bool{
		storage.Policies: true, storage.ModeBindings: true, storage.ModeDeclarations: true,
		storage.Audit: true, storage.GovernanceAudit: true,
	}
	blobKinds = map[storage.BlobKind]bool{storage.Modules: true, storage.RegoSources: true}
)

// Open creates the streams and buckets if they are missing (or updates
// their replicas) and returns a handle on them. In a cluster that is still
// forming, it retries until ctx ends.
func Open(ctx context.Context, opts Options) (*Store, error) {
	if opts.Conn == nil {
		return nil, errors.New("jetstream: no NATS connection")
	}
	if opts.Replicas <= 0 {
		opts.Replicas = 1
	}
	if opts.Prefix == "" {
		opts.Prefix = "concord"
	}
	if !plainToken(opts.Prefix) {
		return nil, fmt.Errorf("jetstream: prefix %q: use letters, digits, _ and -", opts.Prefix)
	}
	if opts.Timeout <= 0 {
		opts.Timeout = DefaultTimeout
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	js, err := natsjs.New(opts.Conn)
	if err != nil {
		return nil, fmt.Errorf("jetstream: %w", err)
	}
	upper, lower := strings.ToUpper(opts.Prefix), strings.ToLower(opts.Prefix)
	s := &Store{
		nc:       opts.Conn,
		js:       js,
		logName:  upper + "_LOG",
		subject:  lower + ".log.",
		writer:   opts.Writer,
		timeout:  opts.Timeout,
		maxBytes: int(opts.Conn.MaxPayload()) - 4<<10,
		logger:   opts.Logger.With("component", "store", "backend", "jetstream"),
		sessions: map[string]*sessionLog{},
	}
	err = retry(ctx, func(ctx context.Context) error {
		s.log, err = js.CreateOrUpdateStream(ctx, natsjs.StreamConfig{
			Name:        s.logName,
			Description: "Concord session logs: one subject per session",
			Subjects:    []string{s.subject + ">"},
			Retention:   natsjs.LimitsPolicy,
			Storage:     natsjs.FileStorage,
			Replicas:    opts.Replicas,
			Discard:     natsjs.DiscardNew,
			MaxMsgs:     -1,
			MaxBytes:    -1,
			MaxMsgSize:  -1,
			DenyDelete:  true,
			DenyPurge:   true,
			// Reads go to the stream leader: a replica's direct answer may
			// lag a write just acknowledged.
			AllowDirect: false,
			Duplicates:  time.Minute,
		})
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("jetstream: create stream %s: %w", s.logName, err)
	}
	err = retry(ctx, func(ctx context.Context) error {
		s.records, err = js.CreateOrUpdateKeyValue(ctx, natsjs.KeyValueConfig{
			Bucket:      upper + "_RECORDS",
			Description: "Concord records: policies, mode bindings and declarations, audit",
			History:     1,
			Storage:     natsjs.FileStorage,
			Replicas:    opts.Replicas,
		})
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("jetstream: create bucket %s_RECORDS: %w", upper, err)
	}
	s.recordSubject = "$KV." + upper + "_RECORDS."
	if s.recordStream, err = js.Stream(ctx, "KV_"+upper+"_RECORDS"); err != nil {
		return nil, fmt.Errorf("jetstream: bucket %s_RECORDS: %w", upper, err)
	}
	err = retry(ctx, func(ctx context.Context) error {
		s.blobs, err = js.CreateOrUpdateObjectStore(ctx, natsjs.ObjectStoreConfig{
			Bucket:      upper + "_BLOBS",
			Description: "Concord blobs: mode modules, Rego sources",
			Storage:     natsjs.FileStorage,
			Replicas:    opts.Replicas,
		})
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("jetstream: create object store %s_BLOBS: %w", upper, err)
	}
	return s, nil
}

// retry runs op until it succeeds or ctx ends: a cluster that is still
// electing its leaders answers "temporarily unavailable" for a while.
func retry(ctx context.Context, op func(context.Context) error) error {
	wait := 50 * time.Millisecond
	for {
		opCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
		err := op(opCtx)
		cancel()
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (last error: %w)", ctx.Err(), err)
		case <-time.After(wait):
		}
		wait = min(2*wait, time.Second)
	}
}

// Close makes the handle refuse further calls. Commits already queued
// still complete. It does not close the connection.
func (s *Store) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	return nil
}

// JetStream returns the JetStream context the store uses.
func (s *Store) JetStream() natsjs.JetStream { return s.js }

// LogStream returns the name of the session log stream.
func (s *Store) LogStream() string { return s.logName }

// withTimeout bounds one request.
func (s *Store) withTimeout(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, s.timeout)
}

func (s *Store) usable() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return storage.ErrClosed
	}
	return nil
}

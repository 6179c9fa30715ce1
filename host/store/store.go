package store

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dgraph-io/badger/v4"
	"google.golang.org/protobuf/proto"

	"github.com/concord-macp/concord/host/storage"
	storev1 "github.com/concord-macp/concord/proto/concord/store/v1"
)

// The store's errors are those of the storage contract.
var (
	ErrNotFound = storage.ErrNotFound
	ErrInvalid  = storage.ErrInvalid
	ErrSequence = storage.ErrSequence
	ErrTooLarge = storage.ErrTooLarge
	ErrClosed   = storage.ErrClosed
	ErrStop     = storage.ErrStop
	// ErrFailed: an earlier write failed; the store refuses all further
	// calls until it is reopened.
	ErrFailed = errors.New("failed by an earlier write error")
)

// Defaults for Options.
const (
	DefaultMaxGroupCommits = 1024
	DefaultMaxGroupBytes   = 4 << 20
	DefaultGCInterval      = 10 * time.Minute
)

var _ storage.Store = (*Store)(nil)

// Options configures Open.
type Options struct {
	// Dir is the database directory; created if missing. Ignored when
	// InMemory is set.
	Dir string
	// InMemory keeps everything in memory (tests, --memory); nothing
	// survives Close.
	InMemory bool
	// Logger receives Badger's warnings and errors and the store's own
	// messages. Nil means slog.Default().
	Logger *slog.Logger
	// MaxGroupCommits caps how many Commits share one transaction and one
	// fsync. 0 means DefaultMaxGroupCommits; 1 turns grouping off.
	MaxGroupCommits int
	// MaxGroupBytes caps the encoded size of one group; a single larger
	// Commit is written alone. 0 means DefaultMaxGroupBytes. It is clamped
	// to half of what one Badger transaction can hold.
	MaxGroupBytes int
	// GCInterval is how often the value log is garbage-collected on disk.
	// 0 means DefaultGCInterval; negative turns it off.
	GCInterval time.Duration
	// Hooks observe commits and synced transactions (metrics, traces).
	Hooks Hooks
	// Space measures the filesystem of Dir; nil means Statfs. Tests that
	// cannot mount a small filesystem pass a fake one.
	Space SpaceFunc
}

// Stats counts the committer's work since Open.
type Stats struct {
	Commits uint64 // Commit calls written durably
	Entries uint64 // log entries written durably
	Groups  uint64 // synced transactions that carried them
}

// Store is the durable session log. Its methods are safe for concurrent use.
type Store struct {
	db       *badger.DB
	lock     *os.File // the directory lock; nil in memory
	dir      string   // the database directory; "" in memory
	log      *slog.Logger
	maxGroup int
	maxBytes int
	hooks    Hooks

	queue   chan *request
	closing chan struct{} // closed by Close
	stopped chan struct{} // closed when the committer has exited

	closeOnce sync.Once
	closeErr  error
	gcDone    chan struct{}
	pollDone  chan struct{} // nil without a disk guard

	failure atomic.Pointer[error]

	// disk refuses writes that would leave less free space than Badger
	// needs for itself; nil for an in-memory store.
	disk *guard

	// cursor maps a session id to the last sequence durably written. Only
	// the committer goroutine touches it. Sessions in a terminal state are
	// dropped and reloaded from their snapshot if ever written again.
	cursor map[string]uint64

	commits, entries, groups atomic.Uint64

	// beforeCommit, when set (tests only), runs before each transaction
	// commit; an error is treated as a failed commit.
	beforeCommit func() error
}

// Open opens (creating if needed) the store in opts.Dir, or an in-memory
// store when opts.InMemory is set.
func Open(ctx context.Context, opts Options) (*Store, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	log = log.With("component", "store")

	var (
		bo   badger.Options
		lock *os.File
		disk *guard
	)
	if opts.InMemory {
		bo = badger.DefaultOptions("").WithInMemory(true)
	} else {
		if opts.Dir == "" {
			return nil, errors.New("store: open: no directory and not in memory")
		}
		var (
			geo geometry
			err error
		)
		if lock, err = lockDir(opts.Dir); err != nil {
			return nil, fmt.Errorf("store: open: %w", err)
		}
		if disk, geo, err = checkSpace(opts, log); err != nil {
			_ = lock.Close()
			return nil, err
		}
		bo = badger.DefaultOptions(opts.Dir).WithSyncWrites(true).
			WithMemTableSize(geo.memTable).
			WithBaseTableSize(geo.baseTable).
			WithBaseLevelSize(geo.baseLevel).
			WithValueThreshold(geo.valueThreshold).
			WithValueLogFileSize(geo.valueLogFile).
			// Two compactors (Badger's minimum): one for level 0, one for
			// the rest, which is what the disk reserve allows for.
			WithNumCompactors(2)
	}
	unlock := func() {
		if lock != nil {
			_ = lock.Close()
		}
	}
	bo = bo.WithLogger(badgerLogger{log}).
		WithDetectConflicts(false). // one writer: the committer
		WithMetricsEnabled(false)   // Badger's metrics are process-global expvars

	if !opts.InMemory {
		if err := removeInterruptedLogs(opts.Dir, log); err != nil {
			unlock()
			return nil, fmt.Errorf("store: open %q: %w", opts.Dir, err)
		}
	}
	db, err := badger.Open(bo)
	if err != nil {
		unlock()
		return nil, fmt.Errorf("store: open %q: %w", opts.Dir, err)
	}
	if err := checkFormat(db); err != nil {
		err = errors.Join(fmt.Errorf("store: open %q: %w", opts.Dir, err), db.Close())
		unlock()
		return nil, err
	}

	if opts.InMemory {
		opts.Dir = ""
	}
	s := &Store{
		db:       db,
		lock:     lock,
		dir:      opts.Dir,
		log:      log,
		maxGroup: opts.MaxGroupCommits,
		maxBytes: opts.MaxGroupBytes,
		hooks:    opts.Hooks,
		queue:    make(chan *request, 1024),
		closing:  make(chan struct{}),
		stopped:  make(chan struct{}),
		gcDone:   make(chan struct{}),
		cursor:   make(map[string]uint64),
		disk:     disk,
	}
	if disk != nil {
		disk.start(db.Levels)
	}
	if s.maxGroup <= 0 {
		s.maxGroup = DefaultMaxGroupCommits
	}
	if s.maxBytes <= 0 {
		s.maxBytes = DefaultMaxGroupBytes
	}
	if limit := int(db.MaxBatchSize() / 2); s.maxBytes > limit {
		s.maxBytes = limit
	}
	go s.run()

	gcEvery := opts.GCInterval
	if gcEvery == 0 {
		gcEvery = DefaultGCInterval
	}
	if opts.InMemory || gcEvery < 0 {
		close(s.gcDone)
	} else {
		go s.collectGarbage(gcEvery)
	}
	if disk != nil {
		s.pollDone = make(chan struct{})
		go s.pollSpace()
	}
	return s, nil
}

// checkSpace measures the filesystem of opts.Dir before Badger opens it,
// picks Badger's geometry for its size, and refuses to open when the free
// space could not take the flush of the write-ahead logs Badger left
// behind plus the reserve: Badger would fault part way through opening.
func checkSpace(opts Options, log *slog.Logger) (*guard, geometry, error) {
	measure := opts.Space
	if measure == nil {
		measure = Statfs
	}
	if err := os.MkdirAll(opts.Dir, 0o750); err != nil {
		return nil, geometry{}, fmt.Errorf("store: open %q: %w", opts.Dir, err)
	}
	sp, err := measure(opts.Dir)
	if err != nil {
		return nil, geometry{}, fmt.Errorf("store: open %q: %w", opts.Dir, err)
	}
	geo := geometryFor(sp.Total)
	backlog, err := walBacklog(opts.Dir)
	if err != nil {
		return nil, geometry{}, fmt.Errorf("store: open %q: %w", opts.Dir, err)
	}
	tables, err := tableBytes(opts.Dir)
	if err != nil {
		return nil, geometry{}, fmt.Errorf("store: open %q: %w", opts.Dir, err)
	}
	if need := geo.openNeed(backlog, tables); sp.Free < need {
		return nil, geometry{}, fmt.Errorf("store: open %q: disk full: %s free on its filesystem, opening needs %s "+
			"(%s to flush the write-ahead log, the rest for compactions); free some space and start again (%w)",
			opts.Dir, bytesText(sp.Free), bytesText(need), bytesText(backlog), ErrDiskFull)
	}
	return newGuard(opts.Dir, measure, geo, tables, log), geo, nil
}

// pollSpace measures the filesystem every second while writes are refused,
// so that the store reports the disk usable again as soon as space is
// freed, whether or not a write tries.
func (s *Store) pollSpace() {
	defer close(s.pollDone)
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-s.closing:
			return
		case <-t.C:
		}
		if _, full := s.disk.state(); full != nil {
			s.disk.poll()
		}
	}
}

// Writable reports why the store refuses writes now (an error wrapping
// ErrDiskFull, ErrFailed or ErrClosed), or nil, and a channel closed when
// the disk's state next changes (nil when it cannot change). Health checks
// use it.
func (s *Store) Writable() (changed <-chan struct{}, err error) {
	if err := s.usable(); err != nil {
		return nil, err
	}
	if s.disk == nil {
		return nil, nil
	}
	return s.disk.state()
}

// Close flushes pending Commits and closes the database. Call it once, after
// every other call has returned.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		close(s.closing)
		<-s.stopped
		<-s.gcDone
		if s.pollDone != nil {
			<-s.pollDone
		}
		if err := s.db.Close(); err != nil {
			s.closeErr = fmt.Errorf("store: close: %w", err)
		}
		if s.lock != nil {
			_ = s.lock.Close()
		}
	})
	return s.closeErr
}

// Stats returns the committer's counters.
func (s *Store) Stats() Stats {
	return Stats{Commits: s.commits.Load(), Entries: s.entries.Load(), Groups: s.groups.Load()}
}

// usable reports why the store cannot serve calls, if it cannot.
func (s *Store) usable() error {
	if p := s.failure.Load(); p != nil {
		return *p
	}
	select {
	case <-s.closing:
		return ErrClosed
	default:
		return nil
	}
}

// fail makes the store failed for good, keeping the first cause.
func (s *Store) fail(cause error) error {
	err := fmt.Errorf("%w: %w", ErrFailed, cause)
	if s.failure.CompareAndSwap(nil, &err) {
		s.log.Error("write failed; the store refuses further calls until reopened", "err", cause)
		return err
	}
	return *s.failure.Load()
}

// Load returns session id's head and its latest state snapshot, or an error
// wrapping ErrNotFound.
func (s *Store) Load(ctx context.Context, id string) (*storev1.Session, *storev1.StateSnapshot, error) {
	if err := ctx.Err(); err != nil {
		return nil, nil, err
	}
	if err := s.usable(); err != nil {
		return nil, nil, fmt.Errorf("store: session %.64q: %w", id, err)
	}
	if err := checkSessionID(id); err != nil {
		return nil, nil, fmt.Errorf("store: session: %w: %w", ErrNotFound, err)
	}
	head, state := &storev1.Session{}, &storev1.StateSnapshot{}
	err := s.db.View(func(txn *badger.Txn) error {
		if err := get(txn, sessionKey(id), head); err != nil {
			return err
		}
		return get(txn, stateKey(id), state)
	})
	if errors.Is(err, badger.ErrKeyNotFound) {
		return nil, nil, fmt.Errorf("store: session %.64q: %w", id, ErrNotFound)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("store: session %.64q: %w", id, err)
	}
	return head, state, nil
}

// Head returns session id's head, or an error wrapping ErrNotFound.
func (s *Store) Head(ctx context.Context, id string) (*storev1.Session, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := s.usable(); err != nil {
		return nil, fmt.Errorf("store: session %.64q: %w", id, err)
	}
	if err := checkSessionID(id); err != nil {
		return nil, fmt.Errorf("store: session: %w: %w", ErrNotFound, err)
	}
	head := &storev1.Session{}
	err := s.db.View(func(txn *badger.Txn) error { return get(txn, sessionKey(id), head) })
	if errors.Is(err, badger.ErrKeyNotFound) {
		return nil, fmt.Errorf("store: session %.64q: %w", id, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("store: session %.64q: %w", id, err)
	}
	return head, nil
}

// get reads the record under key into m.
func get(txn *badger.Txn, key []byte, m proto.Message) error {
	item, err := txn.Get(key)
	if err != nil {
		return err
	}
	return item.Value(func(v []byte) error { return proto.Unmarshal(v, m) })
}

// Heads calls fn with every session's head, in ascending byte order of
// session ids. fn may return ErrStop to end early.
func (s *Store) Heads(ctx context.Context, fn func(*storev1.Session) error) error {
	if err := s.usable(); err != nil {
		return fmt.Errorf("store: sessions: %w", err)
	}
	err := s.db.View(func(txn *badger.Txn) error {
		io := badger.DefaultIteratorOptions
		io.Prefix = []byte{kindSession}
		it := txn.NewIterator(io)
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			if err := ctx.Err(); err != nil {
				return err
			}
			item := it.Item()
			id, ok := sessionIDOf(item.Key())
			if !ok {
				return fmt.Errorf("malformed head key %q", item.Key())
			}
			head := &storev1.Session{}
			if err := item.Value(func(v []byte) error { return proto.Unmarshal(v, head) }); err != nil {
				return fmt.Errorf("head %.64q: %w", id, err)
			}
			if err := fn(head); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil && !errors.Is(err, ErrStop) {
		return fmt.Errorf("store: sessions: %w", err)
	}
	return nil
}

// Seen returns the sequence of session id's agent entry with messageID.
func (s *Store) Seen(ctx context.Context, id, messageID string) (uint64, bool, error) {
	if err := ctx.Err(); err != nil {
		return 0, false, err
	}
	if err := s.usable(); err != nil {
		return 0, false, fmt.Errorf("store: dedup index: %w", err)
	}
	if err := checkSessionID(id); err != nil {
		return 0, false, nil
	}
	var seq uint64
	err := s.db.View(func(txn *badger.Txn) error {
		item, err := txn.Get(seenKey(id, messageID))
		if err != nil {
			return err
		}
		return item.Value(func(v []byte) error {
			if len(v) != 8 {
				return fmt.Errorf("dedup record of %d bytes", len(v))
			}
			seq = binary.BigEndian.Uint64(v)
			return nil
		})
	})
	if errors.Is(err, badger.ErrKeyNotFound) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, fmt.Errorf("store: dedup index of %.64q: %w", id, err)
	}
	return seq, true, nil
}

// Entries calls fn, in sequence order, for each entry of the session with a
// sequence greater than after. fn may return ErrStop to end early.
func (s *Store) Entries(ctx context.Context, sessionID string, after uint64, fn func(*storev1.Entry) error) error {
	if err := s.usable(); err != nil {
		return fmt.Errorf("store: entries of %q: %w", sessionID, err)
	}
	if err := checkSessionID(sessionID); err != nil {
		return fmt.Errorf("store: entries: %w", err)
	}
	if after == ^uint64(0) {
		return nil
	}
	err := s.db.View(func(txn *badger.Txn) error {
		io := badger.DefaultIteratorOptions
		io.Prefix = entryPrefix(sessionID)
		it := txn.NewIterator(io)
		defer it.Close()
		for it.Seek(entryKey(sessionID, after+1)); it.Valid(); it.Next() {
			if err := ctx.Err(); err != nil {
				return err
			}
			item := it.Item()
			seq, ok := entrySeq(item.Key())
			if !ok {
				return fmt.Errorf("malformed entry key %q", item.Key())
			}
			e := &storev1.Entry{}
			if err := item.Value(func(v []byte) error { return proto.Unmarshal(v, e) }); err != nil {
				return fmt.Errorf("entry %d: %w", seq, err)
			}
			if e.GetSequence() != seq {
				return fmt.Errorf("entry under key sequence %d holds sequence %d", seq, e.GetSequence())
			}
			if err := fn(e); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil && !errors.Is(err, ErrStop) {
		return fmt.Errorf("store: entries of %q: %w", sessionID, err)
	}
	return nil
}

// collectGarbage runs Badger's value-log GC every interval until Close.
func (s *Store) collectGarbage(every time.Duration) {
	defer close(s.gcDone)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-s.closing:
			return
		case <-t.C:
		}
		for {
			// A rewrite needs up to a value log file of space before it
			// frees anything; never let it eat into the reserve.
			if s.disk != nil && !s.disk.roomFor(uint64(s.disk.geo.valueLogFile)) {
				break
			}
			err := s.db.RunValueLogGC(0.5)
			if err == nil {
				select {
				case <-s.closing:
					return
				default:
					continue // rewrote one file; there may be more
				}
			}
			if !errors.Is(err, badger.ErrNoRewrite) && !errors.Is(err, badger.ErrRejected) {
				s.log.Warn("value log GC", "err", err)
			}
			break
		}
	}
}

// Package memory is a storage.Store held in memory: the scratch store of a
// replay and of unit tests. It keeps the contract's rules — fenced appends,
// heads without mode state, the dedup index — and writes nothing anywhere,
// so every commit is "durable" as soon as it is queued.
package memory

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"

	"google.golang.org/protobuf/proto"

	"github.com/concord-macp/concord/host/storage"
	storev1 "github.com/concord-macp/concord/proto/concord/store/v1"
)

// Store is an in-memory storage.Store. The zero value is not usable; call
// New. It is safe for concurrent use.
type Store struct {
	mu       sync.RWMutex
	sessions map[string]*session
	records  map[storage.Kind]map[string][]byte
	blobs    map[storage.BlobKind]map[string][]byte
}

type session struct {
	head    []byte // encoded head
	state   []byte // encoded StateSnapshot
	entries [][]byte
	seen    map[string]uint64
}

var _ storage.Store = (*Store)(nil)

// New returns an empty store.
func New() *Store {
	return &Store{
		sessions: map[string]*session{},
		records:  map[storage.Kind]map[string][]byte{},
		blobs:    map[storage.BlobKind]map[string][]byte{},
	}
}

type done struct{}

func (done) Wait(context.Context) error { return nil }

// Enqueue applies c at once (storage.Log).
func (s *Store) Enqueue(ctx context.Context, c storage.Commit) (storage.Pending, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	sess, id := c.Session, c.Session.GetMetadata().GetSessionId()
	last := sess.GetLastSequence()
	invalid := func(format string, args ...any) error {
		return fmt.Errorf("memory: commit %.64q: %w: %s", id, storage.ErrInvalid, fmt.Sprintf(format, args...))
	}
	if id == "" {
		return nil, invalid("no session id")
	}
	for i, e := range c.Entries {
		if e.GetSequence() != last-uint64(len(c.Entries)-1-i) {
			return nil, invalid("entry %d has sequence %d; entries must be consecutive and end at %d", i, e.GetSequence(), last)
		}
	}
	prev := last - uint64(len(c.Entries))
	switch {
	case c.SaveState && sess.GetStateSequence() != last:
		return nil, invalid("a state snapshot must name itself as state_sequence")
	case sess.GetStateSequence() > last:
		return nil, invalid("state_sequence past last_sequence")
	case prev == 0 && !c.SaveState:
		return nil, invalid("a session's first commit must save its state")
	}
	head := proto.Clone(sess).(*storev1.Session)
	head.ModeState = nil
	hb, err := proto.Marshal(head)
	if err != nil {
		return nil, err
	}
	var eb [][]byte
	for _, e := range c.Entries {
		b, err := proto.Marshal(e)
		if err != nil {
			return nil, err
		}
		eb = append(eb, b)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	cur := s.sessions[id]
	if cur == nil {
		cur = &session{seen: map[string]uint64{}}
	}
	if uint64(len(cur.entries)) != prev {
		return nil, fmt.Errorf("memory: commit %.64q: %w: log ends at %d, entries start at %d", id, storage.ErrSequence, len(cur.entries), prev+1)
	}
	s.sessions[id] = cur
	cur.head = hb
	cur.entries = append(cur.entries, eb...)
	for _, e := range c.Entries {
		if e.GetOrigin() == storev1.Origin_ORIGIN_AGENT && e.GetEnvelope().GetMessageId() != "" {
			cur.seen[e.GetEnvelope().GetMessageId()] = e.GetSequence()
		}
	}
	if c.SaveState {
		cur.state, err = proto.Marshal(&storev1.StateSnapshot{Sequence: last, ModeState: sess.GetModeState()})
		if err != nil {
			return nil, err
		}
	}
	return done{}, nil
}

func (s *Store) get(id string) (*session, error) {
	cur := s.sessions[id]
	if cur == nil {
		return nil, fmt.Errorf("memory: session %.64q: %w", id, storage.ErrNotFound)
	}
	return cur, nil
}

func decodeHead(b []byte) (*storev1.Session, error) {
	h := &storev1.Session{}
	return h, proto.Unmarshal(b, h)
}

// Load implements storage.Log.
func (s *Store) Load(_ context.Context, id string) (*storev1.Session, *storev1.StateSnapshot, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	cur, err := s.get(id)
	if err != nil {
		return nil, nil, err
	}
	head, err := decodeHead(cur.head)
	if err != nil {
		return nil, nil, err
	}
	state := &storev1.StateSnapshot{}
	return head, state, proto.Unmarshal(cur.state, state)
}

// Head implements storage.Log.
func (s *Store) Head(_ context.Context, id string) (*storev1.Session, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	cur, err := s.get(id)
	if err != nil {
		return nil, err
	}
	return decodeHead(cur.head)
}

// Heads implements storage.Log.
func (s *Store) Heads(ctx context.Context, fn func(*storev1.Session) error) error {
	s.mu.RLock()
	ids := make([]string, 0, len(s.sessions))
	heads := map[string][]byte{}
	for id, cur := range s.sessions {
		ids = append(ids, id)
		heads[id] = cur.head
	}
	s.mu.RUnlock()
	sort.Strings(ids)
	for _, id := range ids {
		if err := ctx.Err(); err != nil {
			return err
		}
		h, err := decodeHead(heads[id])
		if err != nil {
			return err
		}
		if err := fn(h); err != nil {
			return stopped(err)
		}
	}
	return nil
}

// Entries implements storage.Log.
func (s *Store) Entries(ctx context.Context, id string, after uint64, fn func(*storev1.Entry) error) error {
	s.mu.RLock()
	var es [][]byte
	if cur := s.sessions[id]; cur != nil && after < uint64(len(cur.entries)) {
		es = slices.Clone(cur.entries[after:])
	}
	s.mu.RUnlock()
	for _, b := range es {
		if err := ctx.Err(); err != nil {
			return err
		}
		e := &storev1.Entry{}
		if err := proto.Unmarshal(b, e); err != nil {
			return err
		}
		if err := fn(e); err != nil {
			return stopped(err)
		}
	}
	return nil
}

// Seen implements storage.Log.
func (s *Store) Seen(_ context.Context, id, messageID string) (uint64, bool, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	cur := s.sessions[id]
	if cur == nil {
		return 0, false, nil
	}
	seq, ok := cur.seen[messageID]
	return seq, ok, nil
}

// Put implements storage.Records.
func (s *Store) Put(_ context.Context, kind storage.Kind, key string, value []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.records[kind] == nil {
		s.records[kind] = map[string][]byte{}
	}
	s.records[kind][key] = slices.Clone(value)
	return nil
}

// Delete implements storage.Records.
func (s *Store) Delete(_ context.Context, kind storage.Kind, key string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.records[kind], key)
	return nil
}

// EachPrefix implements storage.Records.
func (s *Store) EachPrefix(ctx context.Context, kind storage.Kind, prefix string, fn func(key string, value []byte) error) error {
	s.mu.RLock()
	var keys []string
	vals := map[string][]byte{}
	for k, v := range s.records[kind] {
		if strings.HasPrefix(k, prefix) {
			keys = append(keys, k)
			vals[k] = v
		}
	}
	s.mu.RUnlock()
	sort.Strings(keys)
	for _, k := range keys {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := fn(k, slices.Clone(vals[k])); err != nil {
			return stopped(err)
		}
	}
	return nil
}

// EachBefore implements storage.Records.
func (s *Store) EachBefore(ctx context.Context, kind storage.Kind, before string, fn func(key string, value []byte) error) error {
	s.mu.RLock()
	var keys []string
	vals := map[string][]byte{}
	for k, v := range s.records[kind] {
		if before == "" || k < before {
			keys = append(keys, k)
			vals[k] = v
		}
	}
	s.mu.RUnlock()
	sort.Sort(sort.Reverse(sort.StringSlice(keys)))
	for _, k := range keys {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := fn(k, slices.Clone(vals[k])); err != nil {
			return stopped(err)
		}
	}
	return nil
}

// PutBlob implements storage.Blobs.
func (s *Store) PutBlob(_ context.Context, kind storage.BlobKind, name string, data []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.blobs[kind] == nil {
		s.blobs[kind] = map[string][]byte{}
	}
	if _, ok := s.blobs[kind][name]; !ok {
		s.blobs[kind][name] = slices.Clone(data)
	}
	return nil
}

// Blob implements storage.Blobs.
func (s *Store) Blob(_ context.Context, kind storage.BlobKind, name string) ([]byte, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	b, ok := s.blobs[kind][name]
	if !ok {
		return nil, fmt.Errorf("memory: blob %s: %w", name, storage.ErrNotFound)
	}
	return slices.Clone(b), nil
}

// BlobNames implements storage.Blobs.
func (s *Store) BlobNames(_ context.Context, kind storage.BlobKind) ([]string, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	var names []string
	for n := range s.blobs[kind] {
		names = append(names, n)
	}
	sort.Strings(names)
	return names, nil
}

// stopped turns storage.ErrStop into the end of an iteration.
func stopped(err error) error {
	if errors.Is(err, storage.ErrStop) {
		return nil
	}
	return err
}

package store

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/dgraph-io/badger/v4"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/concord-macp/concord/host/storage"

	storev1 "github.com/concord-macp/concord/proto/concord/store/v1"
	macpv1 "github.com/concord-macp/concord/proto/macp/v1"
)

// request is one Commit on its way to the committer, already encoded.
type request struct {
	id       string
	prev     uint64 // last sequence the log must hold before this commit
	last     uint64 // last sequence after it
	terminal bool   // the snapshot puts the session in a terminal state
	keys     [][]byte
	vals     [][]byte
	entries  int        // how many log entries
	size     int        // rough encoded size, for MaxGroupBytes and the disk guard
	admitted bool       // its size counts against the disk guard until it ends
	done     chan error // buffered; receives the outcome once
	// observed, when set, is told the outcome (Hooks.Commit).
	observed func(error)
}

// finish hands r its outcome.
func (r *request) finish(err error) {
	if r.observed != nil {
		r.observed(err)
	}
	r.done <- err
}

// finish hands r its outcome and gives its bytes back to the disk guard.
func (s *Store) finish(r *request, err error) {
	if r.admitted {
		s.release(r.size)
	}
	r.finish(err)
}

// perKeyOverhead approximates what Badger adds to each key and value.
const perKeyOverhead = 64

// Commit writes c (see storage.Commit) and returns once it is durable:
// atomically, the entries, the dedup records of the agent entries, the
// session's head and, when c.SaveState is set, its state snapshot.
// Concurrent Commits share one transaction and one fsync. If ctx ends while
// Commit waits, it returns ctx.Err() and the write may still land. Commit
// does not keep c: it is encoded before the write is queued.
func (s *Store) Commit(ctx context.Context, c storage.Commit) error {
	p, err := s.Enqueue(ctx, c)
	if err != nil {
		return err
	}
	return p.Wait(ctx)
}

// Pending is a Commit that is queued and not yet known to be durable.
type Pending struct {
	s   *Store
	req *request
}

// Enqueue queues a Commit and returns without waiting for it to be
// durable (storage.Log). After a failed write the store refuses every later
// Commit, so nothing queued after a failure becomes durable.
func (s *Store) Enqueue(ctx context.Context, c storage.Commit) (storage.Pending, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	req, err := newRequest(c)
	if err != nil {
		return nil, err
	}
	if err := s.usable(); err != nil {
		return nil, fmt.Errorf("store: commit %.64q: %w", req.id, err)
	}
	if err := s.admit(req.size); err != nil {
		return nil, fmt.Errorf("store: commit %.64q: %w", req.id, err)
	}
	req.admitted = true
	if s.hooks.Commit != nil {
		req.observed = s.hooks.Commit(ctx)
	}
	select {
	case s.queue <- req:
	case <-s.closing:
		err = fmt.Errorf("store: commit %.64q: %w", req.id, ErrClosed)
	case <-ctx.Done():
		err = ctx.Err()
	}
	if err != nil {
		s.release(req.size)
		if req.observed != nil {
			req.observed(err)
		}
		return nil, err
	}
	return &Pending{s: s, req: req}, nil
}

// Wait returns once the commit is durable, with nil, or with why it is not.
// If ctx ends first it returns ctx.Err() and the write may still land.
func (p *Pending) Wait(ctx context.Context) error {
	select {
	case err := <-p.req.done:
		p.req.done <- err // keep the outcome for another Wait
		return err
	case <-ctx.Done():
		return ctx.Err()
	case <-p.s.stopped:
		// Queued after the committer's final drain (a Commit racing Close).
		select {
		case err := <-p.req.done:
			p.req.done <- err
			return err
		default:
			return fmt.Errorf("store: commit %.64q: %w", p.req.id, ErrClosed)
		}
	}
}

// newRequest checks what can be checked without the log and encodes the
// records.
func newRequest(c storage.Commit) (*request, error) {
	snap, entries := c.Session, c.Entries
	id := snap.GetMetadata().GetSessionId()
	invalid := func(format string, args ...any) error {
		return fmt.Errorf("store: commit %.64q: %w: %s", id, ErrInvalid, fmt.Sprintf(format, args...))
	}
	if snap == nil {
		return nil, invalid("nil session")
	}
	if err := checkSessionID(id); err != nil {
		return nil, invalid("session metadata: %v", err)
	}
	last := snap.GetLastSequence()
	if len(entries) > 0 {
		for i, e := range entries {
			if e == nil {
				return nil, invalid("entry %d is nil", i)
			}
			if i > 0 && (entries[i-1].GetSequence() == math.MaxUint64 || e.GetSequence() != entries[i-1].GetSequence()+1) {
				return nil, invalid("entry %d has sequence %d after %d; entries must be consecutive",
					i, e.GetSequence(), entries[i-1].GetSequence())
			}
		}
		if first := entries[0].GetSequence(); first == 0 {
			return nil, invalid("entry sequence 0; sequences start at 1")
		}
		if end := entries[len(entries)-1].GetSequence(); end != last {
			return nil, invalid("session last_sequence %d, last entry's sequence %d", last, end)
		}
	}
	switch {
	case c.SaveState && snap.GetStateSequence() != last:
		return nil, invalid("a state snapshot at sequence %d must name itself as state_sequence, not %d", last, snap.GetStateSequence())
	case snap.GetStateSequence() > last:
		return nil, invalid("state_sequence %d is past last_sequence %d", snap.GetStateSequence(), last)
	case last-uint64(len(entries)) == 0 && !c.SaveState:
		return nil, invalid("a session's first commit must save its state")
	}
	req := &request{
		id:       id,
		prev:     last - uint64(len(entries)),
		last:     last,
		terminal: terminal(snap.GetMetadata().GetState()),
		keys:     make([][]byte, 0, 2*len(entries)+2),
		vals:     make([][]byte, 0, 2*len(entries)+2),
		done:     make(chan error, 1),
		entries:  len(entries),
	}
	for _, e := range entries {
		if sid := e.GetEnvelope().GetSessionId(); sid != "" && sid != id {
			return nil, invalid("entry %d carries an envelope of session %q", e.GetSequence(), sid)
		}
		v, err := proto.Marshal(e)
		if err != nil {
			return nil, fmt.Errorf("store: commit %.64q: encode entry %d: %w", id, e.GetSequence(), err)
		}
		req.add(entryKey(id, e.GetSequence()), v)
		if e.GetOrigin() == storev1.Origin_ORIGIN_AGENT && e.GetEnvelope().GetMessageId() != "" {
			req.add(seenKey(id, e.GetEnvelope().GetMessageId()), binary.BigEndian.AppendUint64(nil, e.GetSequence()))
		}
	}
	v, err := proto.Marshal(headOf(snap))
	if err != nil {
		return nil, fmt.Errorf("store: commit %.64q: encode head: %w", id, err)
	}
	req.add(sessionKey(id), v)
	if c.SaveState {
		v, err := proto.Marshal(&storev1.StateSnapshot{Sequence: last, ModeState: snap.GetModeState()})
		if err != nil {
			return nil, fmt.Errorf("store: commit %.64q: encode state: %w", id, err)
		}
		req.add(stateKey(id), v)
	}
	return req, nil
}

// headOf is sess without its mode state: what a head stores. It shares
// sess's other fields.
func headOf(sess *storev1.Session) *storev1.Session {
	if len(sess.GetModeState()) == 0 {
		return sess
	}
	head := &storev1.Session{}
	src, dst := sess.ProtoReflect(), head.ProtoReflect()
	src.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		dst.Set(fd, v)
		return true
	})
	head.ModeState = nil
	return head
}

func sequenceError(r *request, logEnd uint64) error {
	if r.entries == 0 {
		return fmt.Errorf("store: commit %.64q: %w: log ends at %d, snapshot-only commit says %d",
			r.id, ErrSequence, logEnd, r.last)
	}
	return fmt.Errorf("store: commit %.64q: %w: log ends at %d, entries start at %d",
		r.id, ErrSequence, logEnd, r.prev+1)
}

func (r *request) add(k, v []byte) {
	r.keys = append(r.keys, k)
	r.vals = append(r.vals, v)
	r.size += len(k) + len(v) + perKeyOverhead
}

func terminal(st macpv1.SessionState) bool {
	switch st {
	case macpv1.SessionState_SESSION_STATE_RESOLVED,
		macpv1.SessionState_SESSION_STATE_EXPIRED,
		macpv1.SessionState_SESSION_STATE_CANCELLED:
		return true
	}
	return false
}

// run is the committer: it gathers whatever Commits are queued, writes them
// as one group, and repeats. On Close it writes what is still queued.
func (s *Store) run() {
	defer close(s.stopped)
	batch := make([]*request, 0, s.maxGroup)
	for {
		select {
		case r := <-s.queue:
			batch = append(batch, r)
		case <-s.closing:
			for {
				batch = s.gather(batch[:0])
				if len(batch) == 0 {
					return
				}
				s.writeGroup(batch)
			}
		}
		batch = s.gather(batch)
		s.writeGroup(batch)
		clear(batch)
		batch = batch[:0]
	}
}

// gather adds already queued requests to batch, up to the group limit,
// without waiting for more.
func (s *Store) gather(batch []*request) []*request {
	for len(batch) < s.maxGroup {
		select {
		case r := <-s.queue:
			batch = append(batch, r)
		default:
			return batch
		}
	}
	return batch
}

// group is one Badger transaction being filled.
type group struct {
	txn  *badger.Txn
	reqs []*request
	size int
	// last holds, per session, the last sequence this transaction will
	// leave in the log.
	last map[string]uint64
}

func (s *Store) newGroup() *group {
	return &group{txn: s.db.NewTransaction(true), last: make(map[string]uint64)}
}

// writeGroup writes batch in as few transactions as the size limit allows,
// normally one. Requests that do not continue their session's log fail
// alone; a failed transaction fails all of its requests and the store.
func (s *Store) writeGroup(batch []*request) {
	g := s.newGroup()
	for _, r := range batch {
		if err := s.usable(); err != nil && !errors.Is(err, ErrClosed) {
			s.finish(r, fmt.Errorf("store: commit %.64q: %w", r.id, err))
			continue
		}
		if len(g.reqs) > 0 && g.size+r.size > s.maxBytes {
			s.flush(g)
			g = s.newGroup()
		}
		prev, err := s.lastSequence(g, r.id)
		if err != nil {
			err = s.fail(fmt.Errorf("read log position: %w", err))
			s.finish(r, fmt.Errorf("store: commit %.64q: %w", r.id, err))
			continue
		}
		if prev != r.prev {
			s.finish(r, sequenceError(r, prev))
			continue
		}
		if err := g.add(r); err != nil {
			// Only a request alone in its transaction can exceed it, since
			// groups stay under half of Badger's limit; be safe regardless.
			g.txn.Discard()
			for _, q := range append(g.reqs, r) {
				s.finish(q, fmt.Errorf("store: commit %.64q: %w: %w", q.id, ErrTooLarge, err))
			}
			g = s.newGroup()
		}
	}
	s.flush(g)
}

// lastSequence returns where the session's log ends, as this transaction
// will leave it.
func (s *Store) lastSequence(g *group, id string) (uint64, error) {
	if seq, ok := g.last[id]; ok {
		return seq, nil
	}
	if seq, ok := s.cursor[id]; ok {
		return seq, nil
	}
	var seq uint64
	err := s.db.View(func(txn *badger.Txn) error {
		item, err := txn.Get(sessionKey(id))
		if errors.Is(err, badger.ErrKeyNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		snap := &storev1.Session{}
		if err := item.Value(func(v []byte) error { return proto.Unmarshal(v, snap) }); err != nil {
			return err
		}
		seq = snap.GetLastSequence()
		return nil
	})
	if err != nil {
		return 0, err
	}
	s.cursor[id] = seq
	return seq, nil
}

// stats describes the group's transaction, which took d and failed with err.
func (g *group) stats(d time.Duration, err error) GroupStats {
	st := GroupStats{Commits: len(g.reqs), Bytes: g.size, Duration: d, Err: err}
	for _, r := range g.reqs {
		st.Entries += r.entries
	}
	return st
}

func (g *group) add(r *request) error {
	for i, k := range r.keys {
		if err := g.txn.Set(k, r.vals[i]); err != nil {
			return err
		}
	}
	g.reqs = append(g.reqs, r)
	g.size += r.size
	g.last[r.id] = r.last
	return nil
}

// flush commits the transaction (Badger syncs it before returning) and
// wakes its requests.
func (s *Store) flush(g *group) {
	defer g.txn.Discard()
	if len(g.reqs) == 0 {
		return
	}
	err := s.usable()
	if errors.Is(err, ErrClosed) {
		err = nil // Close flushes what was queued
	}
	if err != nil {
		for _, r := range g.reqs {
			s.finish(r, fmt.Errorf("store: commit %.64q: %w", r.id, err))
		}
		return
	}
	began := time.Now()
	if s.beforeCommit != nil {
		err = s.beforeCommit()
	}
	if err == nil {
		err = g.txn.Commit()
	}
	if s.hooks.Group != nil {
		s.hooks.Group(g.stats(time.Since(began), err))
	}
	if err != nil {
		err = s.fail(fmt.Errorf("commit transaction of %d commits: %w", len(g.reqs), err))
		for _, r := range g.reqs {
			s.finish(r, fmt.Errorf("store: commit %.64q: %w", r.id, err))
		}
		return
	}
	s.groups.Add(1)
	for _, r := range g.reqs {
		if r.terminal {
			delete(s.cursor, r.id)
		} else {
			s.cursor[r.id] = r.last
		}
		s.commits.Add(1)
		s.entries.Add(uint64(r.entries))
		s.finish(r, nil)
	}
}

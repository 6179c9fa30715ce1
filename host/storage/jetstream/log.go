package jetstream

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sync"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/concord-macp/concord/host/storage"
	storev1 "github.com/concord-macp/concord/proto/concord/store/v1"
	macpv1 "github.com/concord-macp/concord/proto/macp/v1"
)

// request is one Commit, encoded, waiting for its message.
type request struct {
	id         string
	prev, last uint64
	entries    [][]byte // encoded Entry messages
	head       []byte   // encoded head, without mode state
	headState  macpv1.SessionState
	state      []byte // encoded StateSnapshot when the commit saves one
	agents     map[string]uint64
	before     macpv1.SessionState
	size       int
	done       chan error // buffered; receives the outcome once
}

// sessionLog is what a handle knows of one session's log, and the commits
// it has queued for it. Its fields are guarded by mu.
type sessionLog struct {
	id, token string
	mu        sync.Mutex
	// dropped marks an entry removed from Store.sessions; whoever holds
	// it looks the session up again.
	dropped bool
	// known says the fields below reflect the log (plus what is queued).
	known bool
	// tail is the stream sequence of the session's last durable message,
	// stateMsg that of the message holding its latest state snapshot.
	tail, stateMsg uint64
	// queued is the session's last sequence once every queued commit is
	// written; state its state then.
	queued uint64
	state  macpv1.SessionState
	// queue holds the commits waiting for the message in flight, inflight
	// the commits of that message.
	queue, inflight []*request
	flushing        bool
	// seen is the dedup index (message id -> sequence), nil until built.
	seen map[string]uint64
}

// maxSessionLogs bounds how many sessions a handle remembers; idle ones
// beyond it are forgotten and located again when next written.
const maxSessionLogs = 16384

// sessionLog returns the handle's entry for session id.
func (s *Store) sessionLog(id, token string) *sessionLog {
	s.mu.Lock()
	defer s.mu.Unlock()
	if sl, ok := s.sessions[id]; ok {
		return sl
	}
	if len(s.sessions) >= maxSessionLogs {
		for other, sl := range s.sessions {
			if len(s.sessions) < maxSessionLogs/2 {
				break
			}
			if sl.mu.TryLock() {
				if !sl.flushing && len(sl.queue) == 0 {
					sl.dropped = true
					delete(s.sessions, other)
				}
				sl.mu.Unlock()
			}
		}
	}
	sl := &sessionLog{id: id, token: token}
	s.sessions[id] = sl
	return sl
}

// lockedLog returns session id's entry locked; the caller unlocks.
func (s *Store) lockedLog(id, token string) *sessionLog {
	for {
		sl := s.sessionLog(id, token)
		sl.mu.Lock()
		if !sl.dropped {
			return sl
		}
		sl.mu.Unlock()
	}
}

// pending is a queued commit (storage.Pending).
type pending struct{ req *request }

// Wait implements storage.Pending.
func (p pending) Wait(ctx context.Context) error {
	select {
	case err := <-p.req.done:
		p.req.done <- err // keep the outcome for another Wait
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Enqueue implements storage.Log: it checks c, encodes it and queues it
// behind the session's message in flight, if there is one.
func (s *Store) Enqueue(ctx context.Context, c storage.Commit) (storage.Pending, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := s.usable(); err != nil {
		return nil, err
	}
	req, token, err := newRequest(c)
	if err != nil {
		return nil, err
	}
	if req.size > s.maxBytes {
		return nil, fmt.Errorf("jetstream: commit %.64q: %w: %d bytes, the server takes messages up to %d", req.id, storage.ErrTooLarge, req.size, s.maxBytes)
	}
	sl := s.lockedLog(req.id, token)
	defer sl.mu.Unlock()
	if !sl.known {
		if err := s.locate(ctx, sl); err != nil {
			return nil, err
		}
	}
	if req.prev != sl.queued {
		return nil, fmt.Errorf("jetstream: commit %.64q: %w: the log ends at %d, the commit continues %d", req.id, storage.ErrSequence, sl.queued, req.prev)
	}
	req.before = sl.state
	sl.queued, sl.state = req.last, req.headState
	if sl.seen != nil {
		for mid, seq := range req.agents {
			sl.seen[mid] = seq
		}
	}
	sl.queue = append(sl.queue, req)
	if !sl.flushing {
		sl.flushing = true
		go s.flush(sl)
	}
	return pending{req}, nil
}

// locate reads where session sl's log ends. The caller holds sl.mu.
func (s *Store) locate(ctx context.Context, sl *sessionLog) error {
	msg, rec, err := s.lastRecord(ctx, sl.id, sl.token)
	switch {
	case errors.Is(err, storage.ErrNotFound):
		sl.tail, sl.stateMsg, sl.queued, sl.state = 0, 0, 0, macpv1.SessionState_SESSION_STATE_UNSPECIFIED
	case err != nil:
		return err
	default:
		sl.tail, sl.queued, sl.state = msg.Sequence, rec.GetHead().GetLastSequence(), rec.GetHead().GetMetadata().GetState()
		sl.stateMsg = stateMessage(msg.Sequence, rec)
	}
	sl.known, sl.seen = true, nil
	return nil
}

// stateMessage is the stream sequence of the message that holds the
// session's latest state, as of message seq holding rec.
func stateMessage(seq uint64, rec *storev1.LogRecord) uint64 {
	if rec.GetState() != nil {
		return seq
	}
	return rec.GetStateMessage()
}

// flush writes session sl's queued commits, as many per message as fit,
// one message at a time, until the queue is empty.
func (s *Store) flush(sl *sessionLog) {
	for {
		sl.mu.Lock()
		if len(sl.queue) == 0 {
			sl.flushing = false
			ended := !isLive(sl.state)
			sl.mu.Unlock()
			if ended {
				s.forget(sl)
			}
			return
		}
		n, size := 0, 0
		for n < len(sl.queue) && (n == 0 || size+sl.queue[n].size <= s.maxBytes) {
			size += sl.queue[n].size
			n++
		}
		batch := sl.queue[:n:n]
		sl.queue = sl.queue[n:]
		sl.inflight = batch
		msg, saved := s.message(sl, batch)
		expected := sl.tail
		sl.mu.Unlock()

		ctx, cancel := context.WithTimeout(context.Background(), s.timeout)
		ack, err := s.js.PublishMsg(ctx, msg, natsjs.WithExpectLastSequencePerSubject(expected), natsjs.WithExpectStream(s.logName))
		cancel()

		sl.mu.Lock()
		sl.inflight = nil
		if err != nil {
			err = s.writeError(sl.id, err)
			for _, r := range batch {
				r.done <- err
			}
			later := fmt.Errorf("jetstream: commit %.64q: %w: an earlier commit of the session failed: %w", sl.id, storage.ErrSequence, err)
			for _, r := range sl.queue {
				r.done <- later
			}
			// Forget the log's position: the next writer reads it again.
			sl.queue, sl.known, sl.seen, sl.flushing = nil, false, nil, false
			sl.mu.Unlock()
			return
		}
		sl.tail = ack.Sequence
		if saved {
			sl.stateMsg = ack.Sequence
		}
		for _, r := range batch {
			r.done <- nil
		}
		sl.mu.Unlock()
	}
}

// forget drops an ended session's entry once nothing is queued for it.
func (s *Store) forget(sl *sessionLog) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !sl.mu.TryLock() {
		return
	}
	defer sl.mu.Unlock()
	if sl.flushing || len(sl.queue) > 0 || s.sessions[sl.id] != sl {
		return
	}
	sl.dropped = true
	delete(s.sessions, sl.id)
}

// writeError classifies a failed publish: a broken fence is ErrSequence.
func (s *Store) writeError(id string, err error) error {
	var apiErr *natsjs.APIError
	if errors.As(err, &apiErr) && (apiErr.ErrorCode == natsjs.JSErrCodeStreamWrongLastSequence || apiErr.ErrorCode == natsjs.JSErrCodeStreamWrongLastSequenceConstant) {
		return fmt.Errorf("jetstream: commit %.64q: %w: another writer extended the session (%v)", id, storage.ErrSequence, err)
	}
	s.logger.Warn("a write of the session log failed", "session_id", id, "err", err)
	return fmt.Errorf("jetstream: commit %.64q: %w", id, err)
}

// Field numbers of LogRecord, for building messages from encoded parts.
const (
	fieldEntries         protowire.Number = 1
	fieldHead            protowire.Number = 2
	fieldState           protowire.Number = 3
	fieldStateMessage    protowire.Number = 4
	fieldPreviousMessage protowire.Number = 5
	fieldStateBefore     protowire.Number = 6
	fieldWriter          protowire.Number = 7
)

// message builds the LogRecord of batch from the parts its commits
// encoded when they were queued (concatenated protobuf fields form one
// message). It reports whether the record holds a state snapshot. The
// caller holds sl.mu.
func (s *Store) message(sl *sessionLog, batch []*request) (*nats.Msg, bool) {
	size := 64 + len(s.writer)
	for _, r := range batch {
		size += r.size
	}
	b := make([]byte, 0, size)
	var state []byte
	for _, r := range batch {
		for _, e := range r.entries {
			b = protowire.AppendTag(b, fieldEntries, protowire.BytesType)
			b = protowire.AppendBytes(b, e)
		}
		if r.state != nil {
			state = r.state
		}
	}
	b = protowire.AppendTag(b, fieldHead, protowire.BytesType)
	b = protowire.AppendBytes(b, batch[len(batch)-1].head)
	if state != nil {
		b = protowire.AppendTag(b, fieldState, protowire.BytesType)
		b = protowire.AppendBytes(b, state)
	} else {
		b = protowire.AppendTag(b, fieldStateMessage, protowire.VarintType)
		b = protowire.AppendVarint(b, sl.stateMsg)
	}
	if sl.tail > 0 {
		b = protowire.AppendTag(b, fieldPreviousMessage, protowire.VarintType)
		b = protowire.AppendVarint(b, sl.tail)
	}
	if before := batch[0].before; before != 0 {
		b = protowire.AppendTag(b, fieldStateBefore, protowire.VarintType)
		b = protowire.AppendVarint(b, uint64(before))
	}
	if s.writer != "" {
		b = protowire.AppendTag(b, fieldWriter, protowire.BytesType)
		b = protowire.AppendString(b, s.writer)
	}
	return &nats.Msg{Subject: s.subject + sl.token, Data: b, Header: nats.Header{}}, state != nil
}

// newRequest checks what can be checked without the log and encodes c.
func newRequest(c storage.Commit) (*request, string, error) {
	sess, entries := c.Session, c.Entries
	id := sess.GetMetadata().GetSessionId()
	invalid := func(format string, args ...any) error {
		return fmt.Errorf("jetstream: commit %.64q: %w: %s", id, storage.ErrInvalid, fmt.Sprintf(format, args...))
	}
	if sess == nil {
		return nil, "", invalid("nil session")
	}
	token, ok := sessionToken(id)
	if !ok {
		return nil, "", invalid("session id must be 1 to %d bytes", maxIDLen)
	}
	last := sess.GetLastSequence()
	for i, e := range entries {
		if e == nil {
			return nil, "", invalid("entry %d is nil", i)
		}
		if e.GetSequence() == 0 {
			return nil, "", invalid("entry sequence 0; sequences start at 1")
		}
		if i > 0 && (entries[i-1].GetSequence() == math.MaxUint64 || e.GetSequence() != entries[i-1].GetSequence()+1) {
			return nil, "", invalid("entry %d has sequence %d after %d; entries must be consecutive", i, e.GetSequence(), entries[i-1].GetSequence())
		}
		if sid := e.GetEnvelope().GetSessionId(); sid != "" && sid != id {
			return nil, "", invalid("entry %d carries an envelope of session %.64q", e.GetSequence(), sid)
		}
	}
	if n := len(entries); n > 0 && entries[n-1].GetSequence() != last {
		return nil, "", invalid("last_sequence %d, last entry's sequence %d", last, entries[n-1].GetSequence())
	}
	if uint64(len(entries)) > last {
		return nil, "", invalid("more entries than last_sequence %d", last)
	}
	switch {
	case c.SaveState && sess.GetStateSequence() != last:
		return nil, "", invalid("a state snapshot at %d must name itself as state_sequence, not %d", last, sess.GetStateSequence())
	case sess.GetStateSequence() > last:
		return nil, "", invalid("state_sequence %d is past last_sequence %d", sess.GetStateSequence(), last)
	case last-uint64(len(entries)) == 0 && !c.SaveState:
		return nil, "", invalid("a session's first commit must save its state")
	}
	req := &request{
		id:        id,
		prev:      last - uint64(len(entries)),
		last:      last,
		headState: sess.GetMetadata().GetState(),
		done:      make(chan error, 1),
	}
	for _, e := range entries {
		b, err := proto.Marshal(e)
		if err != nil {
			return nil, "", fmt.Errorf("jetstream: commit %.64q: encode entry %d: %w", id, e.GetSequence(), err)
		}
		req.entries = append(req.entries, b)
		req.size += len(b) + 8
		if e.GetOrigin() == storev1.Origin_ORIGIN_AGENT && e.GetEnvelope().GetMessageId() != "" {
			if req.agents == nil {
				req.agents = map[string]uint64{}
			}
			req.agents[e.GetEnvelope().GetMessageId()] = e.GetSequence()
		}
	}
	var err error
	if req.head, err = proto.Marshal(headOf(sess)); err != nil {
		return nil, "", fmt.Errorf("jetstream: commit %.64q: encode head: %w", id, err)
	}
	req.size += len(req.head) + 8
	if c.SaveState {
		if req.state, err = proto.Marshal(&storev1.StateSnapshot{Sequence: last, ModeState: sess.GetModeState()}); err != nil {
			return nil, "", fmt.Errorf("jetstream: commit %.64q: encode state: %w", id, err)
		}
		req.size += len(req.state) + 8
	}
	return req, token, nil
}

// headOf is sess without its mode state; it shares sess's other fields.
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

// isLive reports whether a session in state st may still be written.
func isLive(st macpv1.SessionState) bool {
	switch st {
	case macpv1.SessionState_SESSION_STATE_RESOLVED, macpv1.SessionState_SESSION_STATE_EXPIRED, macpv1.SessionState_SESSION_STATE_CANCELLED:
		return false
	}
	return true
}

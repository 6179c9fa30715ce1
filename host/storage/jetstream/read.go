package jetstream

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"time"

	natsjs "github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"

	"github.com/concord-macp/concord/host/storage"
	storev1 "github.com/concord-macp/concord/proto/concord/store/v1"
)

// lastRecord reads session id's last message.
func (s *Store) lastRecord(ctx context.Context, id, token string) (*natsjs.RawStreamMsg, *storev1.LogRecord, error) {
	ctx, cancel := s.withTimeout(ctx)
	defer cancel()
	msg, err := s.log.GetLastMsgForSubject(ctx, s.subject+token)
	if errors.Is(err, natsjs.ErrMsgNotFound) {
		return nil, nil, fmt.Errorf("jetstream: session %.64q: %w", id, storage.ErrNotFound)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("jetstream: session %.64q: read its last message: %w", id, err)
	}
	rec, err := decode(msg.Data)
	if err != nil {
		return nil, nil, fmt.Errorf("jetstream: session %.64q: message %d: %w", id, msg.Sequence, err)
	}
	return msg, rec, nil
}

// record reads the message with stream sequence seq.
func (s *Store) record(ctx context.Context, id string, seq uint64) (*storev1.LogRecord, error) {
	ctx, cancel := s.withTimeout(ctx)
	defer cancel()
	msg, err := s.log.GetMsg(ctx, seq)
	if err != nil {
		return nil, fmt.Errorf("jetstream: session %.64q: read message %d: %w", id, seq, err)
	}
	rec, err := decode(msg.Data)
	if err != nil {
		return nil, fmt.Errorf("jetstream: session %.64q: message %d: %w", id, seq, err)
	}
	return rec, nil
}

func decode(b []byte) (*storev1.LogRecord, error) {
	rec := &storev1.LogRecord{}
	if err := proto.Unmarshal(b, rec); err != nil {
		return nil, fmt.Errorf("decode log record: %w", err)
	}
	if rec.GetHead() == nil {
		return nil, errors.New("log record without a head")
	}
	return rec, nil
}

// token returns session id's subject token, or ErrNotFound for an id the
// store could never have written.
func token(id string) (string, error) {
	t, ok := sessionToken(id)
	if !ok {
		return "", fmt.Errorf("jetstream: session %.64q: %w", id, storage.ErrNotFound)
	}
	return t, nil
}

// Load implements storage.Log.
func (s *Store) Load(ctx context.Context, id string) (*storev1.Session, *storev1.StateSnapshot, error) {
	if err := s.usable(); err != nil {
		return nil, nil, err
	}
	tok, err := token(id)
	if err != nil {
		return nil, nil, err
	}
	msg, rec, err := s.lastRecord(ctx, id, tok)
	if err != nil {
		return nil, nil, err
	}
	s.observe(id, msg.Sequence)
	state := rec.GetState()
	if state == nil {
		older, err := s.record(ctx, id, rec.GetStateMessage())
		if err != nil {
			return nil, nil, err
		}
		if state = older.GetState(); state == nil {
			return nil, nil, fmt.Errorf("jetstream: session %.64q: message %d holds no state snapshot", id, rec.GetStateMessage())
		}
	}
	return rec.GetHead(), state, nil
}

// observe notes that session id's last message is seq: a handle that
// believed otherwise, with nothing of its own in flight, forgets what it
// knew, so that its next write and dedup answer start from the log.
func (s *Store) observe(id string, seq uint64) {
	s.mu.Lock()
	sl := s.sessions[id]
	s.mu.Unlock()
	if sl == nil {
		return
	}
	sl.mu.Lock()
	defer sl.mu.Unlock()
	if sl.known && !sl.flushing && len(sl.queue) == 0 && sl.tail != seq {
		sl.known, sl.seen = false, nil
	}
}

// Head implements storage.Log.
func (s *Store) Head(ctx context.Context, id string) (*storev1.Session, error) {
	if err := s.usable(); err != nil {
		return nil, err
	}
	tok, err := token(id)
	if err != nil {
		return nil, err
	}
	_, rec, err := s.lastRecord(ctx, id, tok)
	if err != nil {
		return nil, err
	}
	return rec.GetHead(), nil
}

// Heads implements storage.Log: it reads the last message of every
// session's subject and calls fn in ascending order of session ids.
func (s *Store) Heads(ctx context.Context, fn func(*storev1.Session) error) error {
	if err := s.usable(); err != nil {
		return err
	}
	heads := map[string]*storev1.Session{}
	err := s.scan(ctx, natsjs.OrderedConsumerConfig{
		FilterSubjects: []string{s.subject + ">"},
		DeliverPolicy:  natsjs.DeliverLastPerSubjectPolicy,
	}, func(msg natsjs.Msg) error {
		rec, err := decode(msg.Data())
		if err != nil {
			return fmt.Errorf("jetstream: message on %s: %w", msg.Subject(), err)
		}
		heads[rec.GetHead().GetMetadata().GetSessionId()] = rec.GetHead()
		return nil
	})
	if err != nil {
		return fmt.Errorf("jetstream: sessions: %w", err)
	}
	ids := make([]string, 0, len(heads))
	for id := range heads {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := fn(heads[id]); err != nil {
			return stopped(err)
		}
	}
	return nil
}

// scan reads, with an ordered consumer, every message cfg selects that is
// in the stream when the scan starts, and calls fn for each. A consumer
// that fails before its first message (a stream leader just elected) is
// made again, a few times.
func (s *Store) scan(ctx context.Context, cfg natsjs.OrderedConsumerConfig, fn func(natsjs.Msg) error) error {
	return s.scanStream(ctx, s.log, cfg, fn)
}

// scanStream is scan on any stream.
func (s *Store) scanStream(ctx context.Context, stream natsjs.Stream, cfg natsjs.OrderedConsumerConfig, fn func(natsjs.Msg) error) error {
	for attempt := 0; ; attempt++ {
		delivered, err := s.scanOnce(ctx, stream, cfg, fn)
		if err == nil || delivered || attempt == 4 || ctx.Err() != nil {
			return err
		}
		s.logger.Debug("a log scan failed before its first message; again", "err", err)
		select {
		case <-ctx.Done():
			return err
		case <-time.After(time.Duration(100<<attempt) * time.Millisecond):
		}
	}
}

func (s *Store) scanOnce(ctx context.Context, stream natsjs.Stream, cfg natsjs.OrderedConsumerConfig, fn func(natsjs.Msg) error) (delivered bool, err error) {
	info, err := stream.Info(ctx)
	if err != nil {
		return false, fmt.Errorf("read stream info: %w", err)
	}
	end := info.State.LastSeq
	if info.State.Msgs == 0 {
		return false, nil
	}
	cons, err := stream.OrderedConsumer(ctx, cfg)
	if err != nil {
		return false, fmt.Errorf("create a consumer: %w", err)
	}
	ci, err := cons.Info(ctx)
	if err != nil {
		return false, fmt.Errorf("read consumer info: %w", err)
	}
	var last uint64 // the stream sequence of the last message delivered
	if ci.NumPending == 0 {
		if more, err := s.missed(ctx, stream, cfg, last, end); err != nil || !more {
			return false, err
		}
	}
	for {
		batch, err := cons.Fetch(256, natsjs.FetchMaxWait(s.timeout))
		if err != nil {
			return delivered, fmt.Errorf("fetch: %w", err)
		}
		n := 0
		for msg := range batch.Messages() {
			n++
			delivered = true
			if err := fn(msg); err != nil {
				return true, err
			}
			meta, err := msg.Metadata()
			if err != nil {
				return true, fmt.Errorf("message metadata: %w", err)
			}
			last = meta.Sequence.Stream
			if last >= end {
				return true, nil
			}
			if meta.NumPending == 0 {
				if more, err := s.missed(ctx, stream, cfg, last, end); err != nil || !more {
					return true, err
				}
			}
		}
		if err := batch.Error(); err != nil {
			return delivered, fmt.Errorf("fetch: %w", err)
		}
		if n == 0 {
			return delivered, fmt.Errorf("fetch: no message within %s while more were pending", s.timeout)
		}
	}
}

// missed reports whether the stream leader holds a message cfg selects
// after sequence last and no later than end, which the consumer has not
// delivered: an ordered consumer may run on a replica that has not yet
// applied the newest writes, and then reports nothing pending too early.
// The consumer delivers such a message once its replica catches up.
func (s *Store) missed(ctx context.Context, stream natsjs.Stream, cfg natsjs.OrderedConsumerConfig, last, end uint64) (bool, error) {
	if len(cfg.FilterSubjects) != 1 {
		return false, nil
	}
	req, err := json.Marshal(struct {
		Seq  uint64 `json:"seq"`
		Next string `json:"next_by_subj"`
	}{last + 1, cfg.FilterSubjects[0]})
	if err != nil {
		return false, err
	}
	// The JetStream API (not a direct get) is answered by the leader.
	msg, err := s.nc.RequestWithContext(ctx, "$JS.API.STREAM.MSG.GET."+stream.CachedInfo().Config.Name, req)
	if err != nil {
		return false, fmt.Errorf("ask the stream leader for a later message: %w", err)
	}
	var res struct {
		Message *struct {
			Seq uint64 `json:"seq"`
		} `json:"message"`
		Error *struct {
			Code    int    `json:"code"`
			ErrCode int    `json:"err_code"`
			Desc    string `json:"description"`
		} `json:"error"`
	}
	if err := json.Unmarshal(msg.Data, &res); err != nil {
		return false, fmt.Errorf("the stream leader's answer: %w", err)
	}
	switch {
	case res.Error != nil && res.Error.Code == 404:
		return false, nil
	case res.Error != nil:
		return false, fmt.Errorf("ask the stream leader for a later message: %s (%d)", res.Error.Desc, res.Error.ErrCode)
	case res.Message == nil:
		return false, errors.New("ask the stream leader for a later message: an empty answer")
	}
	return res.Message.Seq <= end, nil
}

// walkBack bounds how many messages Entries reads backwards from the end
// before it scans the session's subject from its start instead.
const walkBack = 16

// Entries implements storage.Log. A read of the log's tail walks back from
// the last message; a longer one scans the session's subject.
func (s *Store) Entries(ctx context.Context, id string, after uint64, fn func(*storev1.Entry) error) error {
	if err := s.usable(); err != nil {
		return err
	}
	tok, err := token(id)
	if err != nil {
		return nil
	}
	_, last, err := s.lastRecord(ctx, id, tok)
	if errors.Is(err, storage.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	end := last.GetHead().GetLastSequence()
	if after >= end {
		return nil
	}
	recs := []*storev1.LogRecord{last}
	for len(recs) < walkBack {
		first := recs[0]
		if startsBy(first, after+1) || first.GetPreviousMessage() == 0 {
			return stopped(emit(recs, after, end, fn))
		}
		prev, err := s.record(ctx, id, first.GetPreviousMessage())
		if err != nil {
			return err
		}
		recs = append([]*storev1.LogRecord{prev}, recs...)
	}
	if startsBy(recs[0], after+1) || recs[0].GetPreviousMessage() == 0 {
		return stopped(emit(recs, after, end, fn))
	}
	// A long read: scan the subject from its first message.
	err = s.scan(ctx, natsjs.OrderedConsumerConfig{
		FilterSubjects: []string{s.subject + tok},
		DeliverPolicy:  natsjs.DeliverAllPolicy,
	}, func(m natsjs.Msg) error {
		rec, err := decode(m.Data())
		if err != nil {
			return fmt.Errorf("jetstream: session %.64q: %w", id, err)
		}
		if err := emit([]*storev1.LogRecord{rec}, after, end, fn); err != nil {
			return err
		}
		if rec.GetHead().GetLastSequence() >= end {
			return errDone
		}
		return nil
	})
	if errors.Is(err, errDone) {
		return nil
	}
	return stopped(err)
}

var errDone = errors.New("done")

// startsBy reports whether rec's first entry is at or before seq (a
// record without entries starts after its head).
func startsBy(rec *storev1.LogRecord, seq uint64) bool {
	es := rec.GetEntries()
	if len(es) == 0 {
		return rec.GetHead().GetLastSequence() < seq
	}
	return es[0].GetSequence() <= seq
}

// emit calls fn for the entries of recs after after and up to end.
func emit(recs []*storev1.LogRecord, after, end uint64, fn func(*storev1.Entry) error) error {
	for _, rec := range recs {
		for _, e := range rec.GetEntries() {
			if e.GetSequence() <= after {
				continue
			}
			if e.GetSequence() > end {
				return nil
			}
			if err := fn(e); err != nil {
				if errors.Is(err, storage.ErrStop) {
					return errDone
				}
				return err
			}
		}
	}
	return nil
}

// Seen implements storage.Log from the handle's dedup index of the
// session, built from the log the first time it is asked.
func (s *Store) Seen(ctx context.Context, id, messageID string) (uint64, bool, error) {
	if err := s.usable(); err != nil {
		return 0, false, err
	}
	tok, ok := sessionToken(id)
	if !ok {
		return 0, false, nil
	}
	sl := s.lockedLog(id, tok)
	defer sl.mu.Unlock()
	if !sl.known {
		if err := s.locate(ctx, sl); err != nil {
			return 0, false, err
		}
	}
	if sl.seen == nil {
		seen := map[string]uint64{}
		if sl.tail > 0 {
			err := s.Entries(ctx, id, 0, func(e *storev1.Entry) error {
				if e.GetOrigin() == storev1.Origin_ORIGIN_AGENT && e.GetEnvelope().GetMessageId() != "" {
					seen[e.GetEnvelope().GetMessageId()] = e.GetSequence()
				}
				return nil
			})
			if err != nil {
				return 0, false, fmt.Errorf("jetstream: dedup index of %.64q: %w", id, err)
			}
		}
		for _, reqs := range [][]*request{sl.inflight, sl.queue} {
			for _, r := range reqs {
				for mid, seq := range r.agents {
					seen[mid] = seq
				}
			}
		}
		sl.seen = seen
	}
	seq, ok := sl.seen[messageID]
	return seq, ok, nil
}

// stopped turns storage.ErrStop (and the scan's own end) into nil.
func stopped(err error) error {
	if errors.Is(err, storage.ErrStop) || errors.Is(err, errDone) {
		return nil
	}
	return err
}

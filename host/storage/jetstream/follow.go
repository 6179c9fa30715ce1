package jetstream

import (
	"context"
	"errors"
	"fmt"

	natsjs "github.com/nats-io/nats.go/jetstream"

	storev1 "github.com/concord-macp/concord/proto/concord/store/v1"
)

// Message is one message of the session log as a follower reads it.
type Message struct {
	// Sequence is the message's stream sequence.
	Sequence uint64
	// Record is the message: entries, head, writer.
	Record *storev1.LogRecord
}

// LastSequence returns the stream sequence of the log's last message (0
// for an empty log): a follower started after it misses nothing written
// later.
func (s *Store) LastSequence(ctx context.Context) (uint64, error) {
	ctx, cancel := s.withTimeout(ctx)
	defer cancel()
	info, err := s.log.Info(ctx)
	if err != nil {
		return 0, fmt.Errorf("jetstream: read the log's position: %w", err)
	}
	return info.State.LastSeq, nil
}

// Follow calls fn, in stream order, with every message of the session log
// after stream sequence after, as it is written by any handle, until ctx
// ends (it returns nil then) or the stream cannot be read.
func (s *Store) Follow(ctx context.Context, after uint64, fn func(Message)) error {
	cfg := natsjs.OrderedConsumerConfig{
		FilterSubjects: []string{s.subject + ">"},
		DeliverPolicy:  natsjs.DeliverByStartSequencePolicy,
		OptStartSeq:    after + 1,
	}
	cons, err := s.log.OrderedConsumer(ctx, cfg)
	if err != nil {
		return fmt.Errorf("jetstream: follow the log: %w", err)
	}
	it, err := cons.Messages()
	if err != nil {
		return fmt.Errorf("jetstream: follow the log: %w", err)
	}
	stop := context.AfterFunc(ctx, it.Stop)
	defer stop()
	for {
		msg, err := it.Next()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, natsjs.ErrMsgIteratorClosed) {
				return nil
			}
			return fmt.Errorf("jetstream: follow the log: %w", err)
		}
		meta, err := msg.Metadata()
		if err != nil {
			return fmt.Errorf("jetstream: follow the log: %w", err)
		}
		rec, err := decode(msg.Data())
		if err != nil {
			s.logger.Error("a malformed message in the session log", "sequence", meta.Sequence.Stream, "err", err)
			continue
		}
		fn(Message{Sequence: meta.Sequence.Stream, Record: rec})
	}
}

// Conn-level helpers for the cluster: the session token of an id and the
// id of a token, as subjects and KV keys carry them.

// Token returns session id's subject token (also a valid KV key).
func Token(id string) (string, bool) { return sessionToken(id) }

// SessionID reverses Token.
func SessionID(token string) (string, error) { return sessionID(token) }

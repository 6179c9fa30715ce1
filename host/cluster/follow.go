package cluster

import (
	"context"
	"math/rand/v2"
	"time"

	"github.com/concord-macp/concord/host/kernel"
	"github.com/concord-macp/concord/host/storage/jetstream"
	storev1 "github.com/concord-macp/concord/proto/concord/store/v1"
	macpv1 "github.com/concord-macp/concord/proto/macp/v1"
)

func live(st macpv1.SessionState) bool {
	return st == macpv1.SessionState_SESSION_STATE_OPEN || st == macpv1.SessionState_SESSION_STATE_SUSPENDED
}

// learnSessions reads which sessions are live from the shared log.
func (n *Node) learnSessions(ctx context.Context) error {
	return n.store.Heads(ctx, func(head *storev1.Session) error {
		if live(head.GetMetadata().GetState()) {
			n.mu.Lock()
			n.live[head.GetMetadata().GetSessionId()] = true
			n.mu.Unlock()
		}
		return nil
	})
}

// follow reads every message of the shared log written after the node
// started: what other nodes wrote goes to the kernel (streams, watches,
// index), and every node keeps track of which sessions are live. A
// session this node owns that ended gives its lease up.
func (n *Node) follow(ctx context.Context) {
	after := n.startSeq
	for ctx.Err() == nil {
		err := n.store.Follow(ctx, after, func(m jetstream.Message) {
			after = m.Sequence
			n.observe(ctx, m.Record)
		})
		if err != nil && ctx.Err() == nil {
			n.log.Warn("following the shared log failed; resuming", "after", after, "err", err)
			select {
			case <-ctx.Done():
			case <-time.After(time.Second):
			}
		}
	}
}

func (n *Node) observe(ctx context.Context, rec *storev1.LogRecord) {
	head := rec.GetHead()
	id := head.GetMetadata().GetSessionId()
	alive := live(head.GetMetadata().GetState())
	n.mu.Lock()
	if alive {
		n.live[id] = true
	} else {
		delete(n.live, id)
	}
	n.mu.Unlock()
	if rec.GetWriter() != n.name {
		n.kernel.Replicated(kernel.Replica{Head: head, Entries: rec.GetEntries(), Before: rec.GetStateBefore()})
	}
	if !alive && n.Owns(id) {
		n.release(ctx, id)
	}
}

// adoptLoop takes over, every lease TTL, the live sessions that no node
// owns: those whose owner died while this node was not watching, and every
// live session after the whole cluster restarted.
func (n *Node) adoptLoop(ctx context.Context) {
	t := time.NewTicker(n.ttl)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		n.mu.Lock()
		var orphans []string
		for id := range n.live {
			if _, owned := n.owners[id]; !owned {
				orphans = append(orphans, id)
			}
		}
		n.mu.Unlock()
		for _, id := range orphans {
			n.takeOver(ctx, id)
		}
	}
}

// takeOver tries to become the owner of live session id, after a short
// random delay so that the nodes do not all race for every session, and
// loads it if it succeeds.
func (n *Node) takeOver(ctx context.Context, id string) {
	select {
	case <-ctx.Done():
		return
	case <-time.After(time.Duration(rand.IntN(200)) * time.Millisecond):
	}
	n.mu.Lock()
	_, owned := n.owners[id]
	alive := n.live[id]
	n.mu.Unlock()
	if owned || !alive {
		return
	}
	owner, err := n.acquire(ctx, id)
	if err != nil {
		n.log.Debug("take over a session", "session_id", id, "err", err)
		return
	}
	if owner != "" {
		return
	}
	if err := n.kernel.Adopt(ctx, id); err != nil {
		n.log.Warn("took over a session but could not load it", "session_id", id, "err", err)
		return
	}
	n.log.Info("took over a session", "session_id", id)
}

package cluster

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/concord-macp/concord/host/storage/jetstream"
)

// A session's lease is a key of the <PREFIX>_LEASES bucket, named by the
// session's token, whose value is the owner's name. It is created with a
// per-key TTL (Create fails if the key exists), renewed by writing it again
// with the TTL and the revision the owner holds (a compare-and-swap), and
// released by a delete at that revision. When the owner stops renewing,
// JetStream removes the key after the TTL and leaves a delete marker, which
// every node's watch sees; the first node to create the key again owns the
// session.
//
// The owner counts its lease from the moment it sent the write that took
// or renewed it, less a margin, so it stops writing before JetStream can
// let another node take over; the log's fence catches whatever a stalled
// owner still tries after that.

// lease is one lease this node holds.
type lease struct {
	rev   uint64
	until time.Time // this node may write until then
	since time.Time // when this node took it
}

func (l *lease) valid(now time.Time) bool { return now.Before(l.until) }

type counters struct {
	acquired, renewed, lost, released, forwarded, served atomic.Uint64
}

// margin is how much earlier than JetStream the owner gives its lease up.
func (n *Node) margin() time.Duration { return n.ttl / 5 }

func (n *Node) openLeases(ctx context.Context) error {
	bucket := strings.ToUpper(n.cfg.Prefix) + "_LEASES"
	var err error
	for wait := 50 * time.Millisecond; ; wait = min(2*wait, time.Second) {
		c, cancel := context.WithTimeout(ctx, 10*time.Second)
		n.leases, err = n.js.CreateOrUpdateKeyValue(c, natsjs.KeyValueConfig{
			Bucket:         bucket,
			Description:    "Concord session leases: which node owns which open session",
			History:        1,
			Storage:        natsjs.FileStorage,
			Replicas:       n.cfg.Replicas,
			LimitMarkerTTL: max(n.ttl, time.Second),
		})
		cancel()
		if err == nil {
			break
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("cluster: create the lease bucket: %w (last error: %w)", ctx.Err(), err)
		case <-time.After(wait):
		}
	}
	n.leaseSubject = "$KV." + bucket + "."
	return nil
}

// Owns implements kernel.Cluster.
func (n *Node) Owns(id string) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	l, ok := n.held[id]
	return ok && l.valid(time.Now())
}

// acquire tries to take session id's lease. It returns "" when this node
// holds it now, or the owner's name.
func (n *Node) acquire(ctx context.Context, id string) (string, error) {
	key, ok := jetstream.Token(id)
	if !ok {
		return "", fmt.Errorf("cluster: session id of %d bytes", len(id))
	}
	sent := time.Now()
	c, cancel := context.WithTimeout(ctx, n.ttl)
	rev, err := n.leases.Create(c, key, []byte(n.name), natsjs.KeyTTL(n.ttl))
	cancel()
	if err == nil {
		n.took(id, rev, sent)
		return "", nil
	}
	if !errors.Is(err, natsjs.ErrKeyExists) {
		return "", fmt.Errorf("cluster: take the lease of %.64q: %w", id, err)
	}
	c, cancel = context.WithTimeout(ctx, n.ttl)
	defer cancel()
	e, err := n.leases.Get(c, key)
	switch {
	case errors.Is(err, natsjs.ErrKeyNotFound) || errors.Is(err, natsjs.ErrKeyDeleted):
		return n.acquireAgain(ctx, id)
	case err != nil:
		return "", fmt.Errorf("cluster: read the lease of %.64q: %w", id, err)
	}
	owner := string(e.Value())
	if owner == n.name {
		// Ours, though this node had given it up (a renewal that timed
		// out but landed): take it back at its revision.
		if err := n.renewOne(ctx, id, key, e.Revision()); err != nil {
			return "", err
		}
		return "", nil
	}
	n.mu.Lock()
	n.owners[id] = owner
	n.mu.Unlock()
	return owner, nil
}

// acquireAgain retries a Create that raced an expiry, once.
func (n *Node) acquireAgain(ctx context.Context, id string) (string, error) {
	key, _ := jetstream.Token(id)
	sent := time.Now()
	c, cancel := context.WithTimeout(ctx, n.ttl)
	defer cancel()
	rev, err := n.leases.Create(c, key, []byte(n.name), natsjs.KeyTTL(n.ttl))
	if err != nil {
		return "", fmt.Errorf("cluster: take the lease of %.64q: %w", id, err)
	}
	n.took(id, rev, sent)
	return "", nil
}

func (n *Node) took(id string, rev uint64, sent time.Time) {
	n.mu.Lock()
	n.held[id] = &lease{rev: rev, until: sent.Add(n.ttl - n.margin()), since: sent}
	n.owners[id] = n.name
	n.mu.Unlock()
	n.stats.acquired.Add(1)
	n.log.Debug("took a lease", "session_id", id, "revision", rev)
}

// renewOne writes session id's lease again at revision rev.
func (n *Node) renewOne(ctx context.Context, id, key string, rev uint64) error {
	sent := time.Now()
	c, cancel := context.WithTimeout(ctx, n.ttl)
	defer cancel()
	ack, err := n.js.PublishMsg(c, &nats.Msg{Subject: n.leaseSubject + key, Data: []byte(n.name)},
		natsjs.WithExpectLastSequencePerSubject(rev), natsjs.WithMsgTTL(n.ttl))
	if err != nil {
		return fmt.Errorf("cluster: renew the lease of %.64q: %w", id, err)
	}
	n.took(id, ack.Sequence, sent)
	return nil
}

// renewLoop renews every held lease every third of the TTL, all at once
// (asynchronous publishes), and gives up those it can no longer hold.
func (n *Node) renewLoop(ctx context.Context) {
	t := time.NewTicker(n.ttl / 3)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		n.renewAll(ctx)
	}
}

func (n *Node) renewAll(ctx context.Context) {
	type renewal struct {
		id   string
		rev  uint64
		sent time.Time
		ack  natsjs.PubAckFuture
		err  error
	}
	n.mu.Lock()
	rs := make([]*renewal, 0, len(n.held))
	var unused []string
	for id, l := range n.held {
		// A lease taken for a SessionStart that failed: no live session
		// has appeared in the log within a TTL.
		if !n.live[id] && time.Since(l.since) > n.ttl {
			unused = append(unused, id)
			continue
		}
		rs = append(rs, &renewal{id: id, rev: l.rev})
	}
	n.mu.Unlock()
	for _, id := range unused {
		n.release(ctx, id)
	}
	for _, r := range rs {
		key, _ := jetstream.Token(r.id)
		r.sent = time.Now()
		r.ack, r.err = n.js.PublishMsgAsync(&nats.Msg{Subject: n.leaseSubject + key, Data: []byte(n.name)},
			natsjs.WithExpectLastSequencePerSubject(r.rev), natsjs.WithMsgTTL(n.ttl))
	}
	timeout := time.NewTimer(n.ttl / 3)
	defer timeout.Stop()
	for _, r := range rs {
		if r.err != nil {
			n.renewFailed(r.id, r.rev, r.err)
			continue
		}
		select {
		case ack := <-r.ack.Ok():
			n.renewed(r.id, r.rev, ack.Sequence, r.sent)
		case err := <-r.ack.Err():
			n.renewFailed(r.id, r.rev, err)
		case <-timeout.C:
			n.renewFailed(r.id, r.rev, errors.New("no answer in time"))
		case <-ctx.Done():
			return
		}
	}
}

func (n *Node) renewed(id string, prev, rev uint64, sent time.Time) {
	n.mu.Lock()
	defer n.mu.Unlock()
	l, ok := n.held[id]
	if !ok || l.rev != prev {
		return // released or replaced meanwhile
	}
	l.rev, l.until = rev, sent.Add(n.ttl-n.margin())
	n.stats.renewed.Add(1)
}

// renewFailed gives up a lease another node took; a lease that merely
// could not be renewed this time is kept until it runs out.
func (n *Node) renewFailed(id string, rev uint64, err error) {
	var apiErr *natsjs.APIError
	taken := errors.As(err, &apiErr) && (apiErr.ErrorCode == natsjs.JSErrCodeStreamWrongLastSequence || apiErr.ErrorCode == natsjs.JSErrCodeStreamWrongLastSequenceConstant)
	n.mu.Lock()
	l, ok := n.held[id]
	if !ok || l.rev != rev {
		n.mu.Unlock()
		return
	}
	expired := !l.valid(time.Now())
	if taken || expired {
		delete(n.held, id)
	}
	n.mu.Unlock()
	if taken || expired {
		n.stats.lost.Add(1)
		n.log.Warn("lost a session's lease", "session_id", id, "err", err)
		n.kernel.Forget(id)
		return
	}
	n.log.Debug("a lease renewal failed; retrying", "session_id", id, "err", err)
}

// release gives session id's lease up (the session ended, or the node is
// leaving): other nodes may take it at once.
func (n *Node) release(ctx context.Context, id string) {
	n.mu.Lock()
	l, ok := n.held[id]
	if ok {
		delete(n.held, id)
	}
	n.mu.Unlock()
	if !ok {
		return
	}
	key, _ := jetstream.Token(id)
	c, cancel := context.WithTimeout(ctx, n.ttl)
	defer cancel()
	if err := n.leases.Delete(c, key, natsjs.LastRevision(l.rev)); err != nil {
		n.log.Debug("release a lease", "session_id", id, "err", err)
		return
	}
	n.stats.released.Add(1)
}

// releaseAll releases every lease, in parallel.
func (n *Node) releaseAll() {
	n.mu.Lock()
	ids := make([]string, 0, len(n.held))
	for id := range n.held {
		ids = append(ids, id)
	}
	n.mu.Unlock()
	var wg sync.WaitGroup
	sem := make(chan struct{}, 32)
	for _, id := range ids {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			n.kernel.Forget(id)
			n.release(context.Background(), id)
		}()
	}
	wg.Wait()
}

// watchOwners follows the lease bucket: who owns what, and which leases
// ran out or were released, whose live sessions this node then tries to
// take over. ready receives nil once the current leases are known, or the
// first watch's error. A watch that ends (the client gave up re-creating
// its consumer after a NATS server left) is started again.
func (n *Node) watchOwners(ctx context.Context, ready chan<- error) {
	first := true
	for wait := 100 * time.Millisecond; ctx.Err() == nil; wait = min(2*wait, 5*time.Second) {
		err := n.watchOwnersOnce(ctx, func() {
			if first {
				first = false
				ready <- nil
			}
			wait = 100 * time.Millisecond
		})
		if first {
			ready <- err
			return
		}
		if ctx.Err() != nil {
			return
		}
		n.log.Warn("the lease watch ended; watching again", "err", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
	}
}

// watchOwnersOnce runs one watch of the lease bucket until it ends;
// caughtUp is called once the current leases are known. Owners that the
// watch's first pass did not name are forgotten: their leases went while
// no watch was running.
func (n *Node) watchOwnersOnce(ctx context.Context, caughtUp func()) error {
	w, err := n.leases.WatchAll(ctx)
	if err != nil {
		return fmt.Errorf("cluster: watch the leases: %w", err)
	}
	defer func() { _ = w.Stop() }()
	initial := true
	seen := map[string]bool{}
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case e, ok := <-w.Updates():
			if !ok {
				return errors.New("cluster: the lease watch ended")
			}
			if e == nil {
				if initial {
					initial = false
					n.mu.Lock()
					for id := range n.owners {
						if !seen[id] && n.owners[id] != n.name {
							delete(n.owners, id)
						}
					}
					n.mu.Unlock()
					seen = nil
					caughtUp()
				}
				continue
			}
			id, err := jetstream.SessionID(e.Key())
			if err != nil {
				continue
			}
			if e.Operation() == natsjs.KeyValuePut {
				n.mu.Lock()
				n.owners[id] = string(e.Value())
				n.mu.Unlock()
				if initial {
					seen[id] = true
				}
				continue
			}
			n.log.Debug("a lease ran out or was released", "session_id", id, "operation", e.Operation(), "revision", e.Revision())
			n.mu.Lock()
			delete(n.owners, id)
			live := n.live[id]
			n.mu.Unlock()
			if live && !initial {
				n.run(func(ctx context.Context) { n.takeOver(ctx, id) })
			}
		}
	}
}

package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"

	"github.com/concord-macp/concord/host/access"
	"github.com/concord-macp/concord/host/kernel"
	"github.com/concord-macp/concord/host/storage"
	"github.com/concord-macp/concord/host/storage/jetstream"
	macpv1 "github.com/concord-macp/concord/proto/macp/v1"
)

// Calls travel to a session's owner as NATS requests on
// "<prefix>.node.<owner>.call": the caller as the receiving node
// authenticated it, and the envelope or the lifecycle call. The owner
// answers with the Ack, or says it does not own the session (any more),
// and the sender looks the owner up again. Every node of the cluster
// trusts the callers the others name: the NATS account is the boundary.

type wireCall struct {
	Caller    access.Caller  `json:"caller"`
	Envelope  []byte         `json:"envelope,omitempty"`
	Control   kernel.Control `json:"control,omitempty"`
	SessionID string         `json:"session_id"`
	Reason    string         `json:"reason,omitempty"`
}

type wireReply struct {
	Ack      []byte `json:"ack,omitempty"`
	NotOwner bool   `json:"not_owner,omitempty"`
	Error    string `json:"error,omitempty"`
}

func (n *Node) callSubject(node string) string { return n.callPrefix + node + ".call" }

// Place implements kernel.Cluster.
func (n *Node) Place(ctx context.Context, id string, create bool) (local, acquired bool, err error) {
	if n.Owns(id) {
		return true, false, nil
	}
	n.mu.Lock()
	owner, known := n.owners[id]
	n.mu.Unlock()
	if known && owner != n.name {
		return false, false, nil
	}
	if !create {
		head, err := n.store.Head(ctx, id)
		n.mu.Lock()
		known := n.live[id]
		n.mu.Unlock()
		switch {
		case errors.Is(err, storage.ErrNotFound) && known:
			// The log showed this session live: the stream's leader,
			// elected a moment ago, has not applied its messages yet.
			return false, false, fmt.Errorf("cluster: the store does not find live session %.64q yet: %w", id, err)
		case errors.Is(err, storage.ErrNotFound):
			return true, false, nil // unknown: answered here
		case err != nil:
			return false, false, err
		case !live(head.GetMetadata().GetState()):
			return true, false, nil // ended: read only
		}
	}
	owner, err = n.acquire(ctx, id)
	if err != nil {
		return false, false, err
	}
	return owner == "", owner == "", nil
}

// forwardPatience bounds how long a call waits for a session's owner to
// answer or for its lease to run out, so that another node takes over.
func (n *Node) forwardPatience() time.Duration { return 3*n.ttl + 5*time.Second }

// Forward implements kernel.Cluster: it sends call to the session's owner.
// When the owner does not answer, it waits for the lease to run out and
// then takes the session over and serves the call here. An envelope is
// sent again after a timeout (its message id makes a retry a duplicate);
// a lifecycle call is not, since it might have been applied.
func (n *Node) Forward(ctx context.Context, call kernel.Call) (*macpv1.Ack, error) {
	id := call.SessionID
	create := call.Envelope != nil && call.Envelope.GetMessageType() == "SessionStart"
	wc := wireCall{Caller: call.Caller, Control: call.Control, SessionID: id, Reason: call.Reason}
	if call.Envelope != nil {
		id = call.Envelope.GetSessionId()
		wc.SessionID = id
		b, err := proto.Marshal(call.Envelope)
		if err != nil {
			return nil, fmt.Errorf("cluster: encode the envelope: %w", err)
		}
		wc.Envelope = b
	}
	body, err := json.Marshal(wc)
	if err != nil {
		return nil, fmt.Errorf("cluster: encode the call: %w", err)
	}
	deadline := time.Now().Add(n.forwardPatience())
	for attempt := 0; ; attempt++ {
		if attempt > 0 {
			if time.Now().After(deadline) {
				return nil, fmt.Errorf("cluster: no node served session %.64q within %s", id, n.forwardPatience())
			}
			select {
			case <-ctx.Done():
				return nil, ctx.Err()
			case <-time.After(time.Duration(50+rand.IntN(150)) * time.Millisecond):
			}
		}
		local, acquired, err := n.Place(ctx, id, create)
		if err != nil {
			n.log.Debug("forward: look up the owner", "session_id", id, "err", err)
			continue
		}
		if local {
			if acquired {
				if err := n.kernel.Adopt(ctx, id); err != nil {
					n.log.Warn("forward: adopt a session", "session_id", id, "err", err)
				}
			}
			return n.kernel.Serve(ctx, call), nil
		}
		owner, _ := n.Owner(id)
		if owner == "" || owner == n.name {
			continue
		}
		c, cancel := context.WithTimeout(ctx, n.ttl+2*time.Second)
		msg, err := n.nc.RequestWithContext(c, n.callSubject(owner), body)
		cancel()
		switch {
		case err != nil && ctx.Err() != nil:
			return nil, ctx.Err()
		case errors.Is(err, nats.ErrNoResponders):
			// The owner is gone; its lease will run out.
			n.recheckOwner(ctx, id, owner)
			continue
		case err != nil:
			n.recheckOwner(ctx, id, owner)
			if call.Envelope == nil {
				return nil, fmt.Errorf("cluster: node %s did not answer a lifecycle call on %.64q: %w", owner, id, err)
			}
			continue
		}
		var reply wireReply
		if err := json.Unmarshal(msg.Data, &reply); err != nil {
			return nil, fmt.Errorf("cluster: node %s answered with %w", owner, err)
		}
		if reply.NotOwner {
			n.forgetOwner(id, owner)
			continue
		}
		if reply.Error != "" {
			return nil, fmt.Errorf("cluster: node %s: %s", owner, reply.Error)
		}
		ack := &macpv1.Ack{}
		if err := proto.Unmarshal(reply.Ack, ack); err != nil {
			return nil, fmt.Errorf("cluster: node %s answered with a malformed Ack: %w", owner, err)
		}
		n.stats.forwarded.Add(1)
		return ack, nil
	}
}

// forgetOwner drops a stale owner entry, so that the next lookup reads
// the lease again.
func (n *Node) forgetOwner(id, owner string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.owners[id] == owner {
		delete(n.owners, id)
	}
}

// recheckOwner reads session id's lease from the bucket after its owner,
// as this node knew it, did not answer. The lease watch is not enough to
// notice that the lease ran out: it can miss the delete marker of an
// expiry (it is being re-created after a NATS server left, or the stream's
// new leader expired the key without writing one), and the owners map
// would name the silent node forever. A lease gone or taken by another
// node updates the map, so that the next Place takes the session or
// forwards to the new owner.
func (n *Node) recheckOwner(ctx context.Context, id, owner string) {
	key, ok := jetstream.Token(id)
	if !ok {
		return
	}
	c, cancel := context.WithTimeout(ctx, n.ttl)
	defer cancel()
	e, err := n.leases.Get(c, key)
	switch {
	case errors.Is(err, natsjs.ErrKeyNotFound) || errors.Is(err, natsjs.ErrKeyDeleted):
		n.log.Debug("forward: the silent owner's lease ran out", "session_id", id, "owner", owner)
		n.forgetOwner(id, owner)
	case err != nil:
		n.log.Debug("forward: read the lease of a silent owner", "session_id", id, "owner", owner, "err", err)
	case string(e.Value()) != owner:
		n.mu.Lock()
		if n.owners[id] == owner {
			n.owners[id] = string(e.Value())
		}
		n.mu.Unlock()
	}
}

// onCall serves a call another node forwarded.
func (n *Node) onCall(msg *nats.Msg) {
	go func() {
		reply := n.serve(msg.Data)
		b, err := json.Marshal(reply)
		if err != nil {
			n.log.Error("encode a forwarded call's answer", "err", err)
			return
		}
		if err := msg.Respond(b); err != nil {
			n.log.Debug("answer a forwarded call", "err", err)
		}
	}()
}

func (n *Node) serve(data []byte) wireReply {
	var wc wireCall
	if err := json.Unmarshal(data, &wc); err != nil {
		return wireReply{Error: "malformed call: " + err.Error()}
	}
	call := kernel.Call{Caller: wc.Caller, Control: wc.Control, SessionID: wc.SessionID, Reason: wc.Reason}
	if wc.Envelope != nil {
		call.Envelope = &macpv1.Envelope{}
		if err := proto.Unmarshal(wc.Envelope, call.Envelope); err != nil {
			return wireReply{Error: "malformed envelope: " + err.Error()}
		}
		if call.Envelope.GetSessionId() != wc.SessionID {
			return wireReply{Error: "the envelope names another session"}
		}
	}
	if !n.Owns(wc.SessionID) {
		return wireReply{NotOwner: true}
	}
	ctx, cancel := context.WithTimeout(n.ctx, 30*time.Second)
	defer cancel()
	ack := n.kernel.Serve(ctx, call)
	b, err := proto.Marshal(ack)
	if err != nil {
		return wireReply{Error: "encode the Ack: " + err.Error()}
	}
	n.stats.served.Add(1)
	return wireReply{Ack: b}
}

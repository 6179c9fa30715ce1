package kernel

import (
	"context"
	"errors"
	"fmt"

	"google.golang.org/protobuf/proto"

	"github.com/concord-macp/concord/host/access"
	"github.com/concord-macp/concord/host/storage"
	"github.com/concord-macp/concord/macperr"
	storev1 "github.com/concord-macp/concord/proto/concord/store/v1"
	macpv1 "github.com/concord-macp/concord/proto/macp/v1"
)

// A kernel may be one node of a cluster that shares one store (host/cluster
// on NATS JetStream). Each open session then has one owner node at a time,
// and only the owner writes it. The kernel knows nothing of how ownership
// is held or calls travel: it asks its Options.Cluster, through these
// hooks, and the cluster tells it what other nodes did.
//
//   - Before a Send or a lifecycle call on a session, the kernel asks Place
//     whether it runs here; if not, Forward runs it on the owner, whose
//     cluster layer hands it to that kernel's Serve.
//   - Every write checks Owns first; a node that does not own a session
//     reads it from the store as it is and leaves timers, expiry and the
//     sweeper's work to the owner.
//   - A write the store refused (another writer extended the log) drops the
//     in-memory copy, so that the next call loads the session again.
//   - The cluster calls Forget when the node lost a session's lease, Adopt
//     when it took one, and Replicated with every entry another node wrote,
//     which feeds this node's streams, watches and index.
//
// Without a Cluster the kernel owns every session and none of this runs.

// Cluster is what a kernel in a cluster asks about session ownership.
type Cluster interface {
	// Owns reports whether this node may write session id now.
	Owns(id string) bool
	// Place reports whether a call on session id runs on this node: yes
	// when it owns the session, or took it now because no node did
	// (acquired), or when no node needs to own it (an unknown or ended
	// session: the call only reads). create is set for a SessionStart.
	// Otherwise the call goes to Forward.
	Place(ctx context.Context, id string, create bool) (local, acquired bool, err error)
	// Forward runs call on the node that owns its session and returns
	// that node's answer.
	Forward(ctx context.Context, call Call) (*macpv1.Ack, error)
}

// Call is a Send or a lifecycle call travelling to a session's owner.
type Call struct {
	Caller access.Caller
	// Envelope is the Send's envelope (after the receiving node's checks,
	// sender filled in); nil for a lifecycle call.
	Envelope *macpv1.Envelope
	// Control, SessionID and Reason describe a lifecycle call.
	Control   Control
	SessionID string
	Reason    string
}

// ErrNotOwner is the cause of a write refused because this node does not
// own the session (any more).
var ErrNotOwner = errors.New("kernel: this node does not own the session")

// notOwner is what a client sees when a session's ownership moved under
// its call; a retry reaches the new owner.
func notOwner(id string) error {
	return macperr.Wrap(macperr.InternalError, ErrNotOwner, "session "+quote(id)+" moved to another node during the call; retry")
}

func quote(id string) string {
	if len(id) > 128 {
		id = id[:128]
	}
	return `"` + id + `"`
}

// owns reports whether this node may write session id.
func (k *Kernel) owns(id string) bool {
	return k.opts.Cluster == nil || k.opts.Cluster.Owns(id)
}

// route sends a session-scoped envelope to its owner when that is another
// node; done is false when it runs here.
func (k *Kernel) route(ctx context.Context, caller access.Caller, env *macpv1.Envelope) (ack *macpv1.Ack, done bool, err error) {
	create := env.MessageType == typeSessionStart
	if create && !ValidSessionID(env.SessionId) {
		return nil, false, nil // refused here (start)
	}
	return k.place(ctx, env.SessionId, create, Call{Caller: caller, Envelope: env})
}

// routeControl is route for a lifecycle call.
func (k *Kernel) routeControl(ctx context.Context, caller access.Caller, op Control, id, reason string) (ack *macpv1.Ack, done bool, err error) {
	return k.place(ctx, id, false, Call{Caller: caller, Control: op, SessionID: id, Reason: reason})
}

func (k *Kernel) place(ctx context.Context, id string, create bool, call Call) (*macpv1.Ack, bool, error) {
	c := k.opts.Cluster
	if c == nil {
		return nil, false, nil
	}
	local, acquired, err := c.Place(ctx, id, create)
	if err != nil {
		return nil, true, macperr.Wrap(macperr.InternalError, err, "could not find the node that owns session "+quote(id))
	}
	if local {
		if acquired {
			if err := k.adopted(ctx, id); err != nil {
				return nil, true, macperr.Wrap(macperr.InternalError, err, "could not read session "+quote(id)+" this node took over; retry")
			}
		}
		return nil, false, nil
	}
	ack, err := c.Forward(ctx, call)
	if err != nil {
		return nil, true, macperr.Wrap(macperr.InternalError, err, "the node that owns session "+quote(id)+" did not answer; retry")
	}
	if !ack.GetOk() && ack.GetError() != nil {
		e := ack.GetError()
		return nil, true, &macperr.Error{Code: macperr.Code(e.GetCode()), Message: e.GetMessage(), Details: e.GetDetails()}
	}
	return ack, true, nil
}

// Serve runs a call another node forwarded to this one, the owner of its
// session, and returns the Ack to send back. The receiving node already
// ran the checks that come before the session (envelope, authentication,
// authorisation, rate limit) and reports the outcome to its observer.
func (k *Kernel) Serve(ctx context.Context, call Call) *macpv1.Ack {
	if call.Envelope == nil {
		err := checkControl(call.Caller, call.Control)
		var ack *macpv1.Ack
		if err == nil {
			ack, err = k.control(ctx, call.Caller, call.Control, call.SessionID, call.Reason)
		}
		if err != nil {
			return k.ackOf(&macpv1.Envelope{SessionId: call.SessionID}, nil, err)
		}
		return ack
	}
	env := proto.Clone(call.Envelope).(*macpv1.Envelope)
	ack, err := k.serveSend(ctx, call.Caller, env)
	return k.ackOf(env, ack, err)
}

func (k *Kernel) serveSend(ctx context.Context, caller access.Caller, env *macpv1.Envelope) (*macpv1.Ack, error) {
	if err := k.checkEnvelope(env); err != nil {
		return nil, err
	}
	if err := authenticate(caller, nil, env); err != nil {
		return nil, err
	}
	if err := authorize(caller, env); err != nil {
		return nil, err
	}
	if env.SessionId == "" {
		return nil, macperr.New(macperr.InvalidEnvelope, "a forwarded envelope needs a session")
	}
	if !k.owns(env.SessionId) {
		return nil, notOwner(env.SessionId)
	}
	if env.MessageType == typeSessionStart {
		return k.start(ctx, caller, env)
	}
	return k.apply(ctx, env)
}

// Forget drops this node's in-memory copy of session id, because another
// node owns it now or may soon: the next call loads it from the store.
// Writes already queued finish (the store's fence decides their fate).
func (k *Kernel) Forget(id string) {
	if v, ok := k.sessions.Load(id); ok {
		k.sessions.CompareAndDelete(id, v)
	}
}

// Adopt makes this node, the new owner of session id, serve it: it is
// indexed if it was unknown here, loaded from the store (its snapshot and
// log tail), and scheduled, so that its timers and expiry run here.
func (k *Kernel) Adopt(ctx context.Context, id string) error {
	if err := k.adopted(ctx, id); err != nil {
		return err
	}
	s, err := k.locked(ctx, id)
	if err != nil {
		return err
	}
	defer s.mu.Unlock()
	_, err = k.catchUp(ctx, s)
	return err
}

// adopted prepares for this node's first call on a session whose lease it
// just took: a copy loaded while another node owned it is dropped, and a
// session this node has not heard of yet is indexed if the store has it.
// A store that could not answer is an error: the session may exist.
func (k *Kernel) adopted(ctx context.Context, id string) error {
	k.Forget(id)
	if k.index.has(id) {
		return nil
	}
	switch _, err := k.store.Head(ctx, id); {
	case err == nil:
		k.index.add(id)
	case !errors.Is(err, storage.ErrNotFound):
		return fmt.Errorf("kernel: read the head of session %.128q: %w", id, err)
	}
	return nil
}

// discover looks for a session this node has not heard of in the store,
// when the kernel is one node of a cluster: another node may have created
// it a moment ago. A session found is indexed. Only the store's
// storage.ErrNotFound means the session does not exist; any other error
// (JetStream electing a leader, a lost connection) is returned, so that
// the caller reports it as an error to retry rather than SESSION_NOT_FOUND.
func (k *Kernel) discover(ctx context.Context, id string) (bool, error) {
	if k.opts.Cluster == nil || !ValidSessionID(id) {
		return false, nil
	}
	_, err := k.store.Head(context.WithoutCancel(ctx), id)
	switch {
	case errors.Is(err, storage.ErrNotFound):
		return false, nil
	case err != nil:
		return false, fmt.Errorf("kernel: look session %.128q up in the store: %w", id, err)
	}
	k.index.add(id)
	return true, nil
}

// writeFailed drops session s's copy after the store refused or failed
// one of its writes, when the kernel is one node of a cluster: the copy
// may be ahead of the log, or another node may have extended the log.
// A single node keeps today's rule (a failed store refuses every later
// write until restarted).
func (k *Kernel) writeFailed(s *session) {
	if k.opts.Cluster != nil {
		k.sessions.CompareAndDelete(s.sid, s)
	}
}

// Replica is a commit another node wrote to a session, as the cluster
// read it from the shared log.
type Replica struct {
	// Head is the session after the entries (without mode state).
	Head *storev1.Session
	// Entries are the commit's entries, in sequence order.
	Entries []*storev1.Entry
	// Before is the session's state before the first entry
	// (UNSPECIFIED for a new session).
	Before macpv1.SessionState
}

// Replicated tells this node about entries another node wrote: the session
// is indexed, its entries go to this node's subscriptions in order (once
// each), its lifecycle changes to its watchers, its open-session slot is
// counted, and a copy this node holds in memory is dropped so that the
// next read loads the new state.
func (k *Kernel) Replicated(r Replica) {
	md := r.Head.GetMetadata()
	id := md.GetSessionId()
	if id == "" || len(r.Entries) == 0 && r.Before == md.GetState() {
		return
	}
	k.index.add(id)
	if v, ok := k.sessions.Load(id); ok {
		s := v.(*session)
		s.pubMu.Lock()
		for _, e := range r.Entries {
			if e.GetSequence() > s.published {
				s.published = e.GetSequence()
				k.feed.Publish(id, e)
			}
		}
		s.pubMu.Unlock()
		k.sessions.CompareAndDelete(id, s)
	} else {
		for _, e := range r.Entries {
			k.feed.Publish(id, e)
		}
	}
	prev := r.Before
	for _, e := range r.Entries {
		k.replicatedTransition(md, prev, e.GetStateAfter())
		prev = e.GetStateAfter()
	}
	if len(r.Entries) == 0 {
		k.replicatedTransition(md, prev, md.GetState())
	}
}

// replicatedTransition announces a remote state change and keeps the
// initiator's open-session count.
func (k *Kernel) replicatedTransition(md *macpv1.SessionMetadata, prev, next macpv1.SessionState) {
	switch {
	case prev == macpv1.SessionState_SESSION_STATE_UNSPECIFIED && isLive(next):
		k.limits.Restore(md.GetInitiator())
	case isLive(prev) && !isLive(next):
		k.limits.Close(md.GetInitiator())
	}
	ev := lifecycleEvent(prev, next)
	if ev == macpv1.SessionLifecycleEvent_EVENT_TYPE_UNSPECIFIED {
		return
	}
	snap := proto.Clone(md).(*macpv1.SessionMetadata)
	snap.State = next
	k.lifecycle.Publish("", &macpv1.SessionLifecycleEvent{EventType: ev, Session: snap, ObservedAtUnixMs: k.now().UnixMilli()})
}

// Sessions returns the ids of every session this node knows, in order.
func (k *Kernel) Sessions() []string { return k.index.all() }

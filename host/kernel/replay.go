package kernel

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/concord-macp/concord/abi"
	"github.com/concord-macp/concord/host/access"
	"github.com/concord-macp/concord/host/mode"
	"github.com/concord-macp/concord/host/storage"
	"github.com/concord-macp/concord/host/storage/memory"
	"github.com/concord-macp/concord/macperr"
	"github.com/concord-macp/concord/policy"
	abiv1 "github.com/concord-macp/concord/proto/concord/abi/v1"
	storev1 "github.com/concord-macp/concord/proto/concord/store/v1"
	macpv1 "github.com/concord-macp/concord/proto/macp/v1"
)

// ReplayResult is what replaying a session's log arrived at, and where it
// parted from what was recorded.
type ReplayResult struct {
	// Session is the snapshot the replay produced.
	Session *storev1.Session
	// ModeState is Session's mode state view, when View.Replay rendered it.
	ModeState []byte
	// Entries is how many log entries were replayed.
	Entries int
	// Divergences lists every difference from the recorded session; empty
	// when the replay is exact.
	Divergences []string
}

// Replay re-applies the log of a recorded session, entry by entry at the
// times they were accepted, through a private in-memory kernel that runs the
// module the session is pinned to and the policy descriptor it bound, and
// compares the outcome with the recording: every acceptance, the state bytes,
// lifecycle state, resolution, deadline and dedup memory.
func Replay(ctx context.Context, recorded *storev1.Session, entries []*storev1.Entry, catalog mode.Catalog, governor policy.Governor) (*ReplayResult, error) {
	r, err := newReplayer(ctx, recorded, catalog, governor)
	if err != nil {
		return nil, err
	}
	defer r.close()
	res := &ReplayResult{}
	diverge := func(format string, args ...any) {
		res.Divergences = append(res.Divergences, fmt.Sprintf(format, args...))
	}
	for _, e := range entries {
		res.Entries++
		if err := r.apply(ctx, e, diverge); err != nil {
			return nil, err
		}
	}
	s, err := r.k.lookup(ctx, recorded.GetMetadata().GetSessionId())
	if err != nil {
		diverge("the replay never created the session")
		return res, nil
	}
	res.Session = s.rec
	compareSnapshots(recorded, s.rec, diverge)
	for _, e := range entries {
		if e.GetOrigin() != storev1.Origin_ORIGIN_AGENT {
			continue
		}
		if seq, ok, _ := r.st.Seen(ctx, r.id, e.GetEnvelope().GetMessageId()); !ok || seq != e.GetSequence() {
			diverge("dedup memory differs: %s of entry %d is not remembered at that sequence", e.GetEnvelope().GetMessageId(), e.GetSequence())
		}
	}
	return res, nil
}

// replayThrough replays entries, a prefix of recorded's log, and returns
// the snapshot they lead to; it fails if the replay parts from the
// recording on the way.
func replayThrough(ctx context.Context, recorded *storev1.Session, entries []*storev1.Entry, catalog mode.Catalog, governor policy.Governor) (*storev1.Session, error) {
	r, err := newReplayer(ctx, recorded, catalog, governor)
	if err != nil {
		return nil, err
	}
	defer r.close()
	var divergence error
	for _, e := range entries {
		if err := r.apply(ctx, e, func(format string, args ...any) {
			if divergence == nil {
				divergence = fmt.Errorf("replay diverges: "+format, args...)
			}
		}); err != nil {
			return nil, err
		}
		if divergence != nil {
			return nil, divergence
		}
	}
	s, err := r.k.lookup(ctx, recorded.GetMetadata().GetSessionId())
	if err != nil {
		return nil, errors.New("the replay never created the session")
	}
	return s.rec, nil
}

// replayer is a private in-memory kernel that re-applies one recorded
// session's log at the recorded times.
type replayer struct {
	k   *Kernel
	st  *memory.Store
	id  string
	now int64
}

func newReplayer(ctx context.Context, recorded *storev1.Session, catalog mode.Catalog, governor policy.Governor) (*replayer, error) {
	md := recorded.GetMetadata()
	module, ok := catalog.Pinned(recorded.GetModuleDigest())
	if !ok {
		return nil, fmt.Errorf("replay %s: module %s is not available", md.GetSessionId(), recorded.GetModuleDigest())
	}
	_, strict, _ := catalog.Lookup(md.GetMode())
	discard := slog.New(slog.DiscardHandler)
	st := memory.New()
	r := &replayer{st: st, id: md.GetSessionId()}
	var err error
	r.k, err = New(ctx, Options{
		Store:         st,
		Catalog:       pinnedCatalog{mode: module, strict: strict || abi.IsStandard(md.GetMode())},
		Governor:      pinnedGovernor{Governor: governor, bound: recorded.GetPolicy()},
		Logger:        discard,
		Now:           func() time.Time { return time.UnixMilli(r.now) },
		SweepInterval: -1,
		IdleEviction:  -1,
		// The recording's caps are replay inputs.
		MaxPayloadBytes:     1 << 30,
		DefaultMaxSuspendMs: recorded.GetMaxSuspendMs(),
	})
	if err != nil {
		return nil, fmt.Errorf("replay: start scratch kernel: %w", err)
	}
	return r, nil
}

func (r *replayer) close() { r.k.Close() }

// apply re-applies one recorded entry at its recorded time and reports
// every way the outcome differs from the record.
func (r *replayer) apply(ctx context.Context, e *storev1.Entry, diverge func(string, ...any)) error {
	r.now = e.GetAcceptedAtUnixMs()
	operator := r.k.As(access.Operator(RuntimeSender))
	env := e.GetEnvelope()
	switch {
	case env == nil: // a runtime expiry record: an access at its time writes it again
		if _, err := operator.snapshot(ctx, r.id); err != nil {
			return fmt.Errorf("replay: entry %d: %w", e.GetSequence(), err)
		}
	case isTimerRecord(e):
		// A mode timer: the access at its recorded time fires it again.
		if _, err := operator.snapshot(ctx, r.id); err != nil {
			return fmt.Errorf("replay: entry %d: %w", e.GetSequence(), err)
		}
		if got := scratchEntry(ctx, r.st, r.id, e.GetSequence()); !proto.Equal(got.GetEnvelope(), env) {
			diverge("entry %d: the runtime wrote %s %s when recorded, the replay wrote %v", e.GetSequence(),
				env.GetMessageType(), env.GetMessageId(), got.GetEnvelope())
		}
	case e.GetOrigin() == storev1.Origin_ORIGIN_RUNTIME:
		op, by, reason, err := runtimeRecord(env)
		if err != nil {
			diverge("entry %d: %v", e.GetSequence(), err)
			return nil
		}
		ack, err := r.k.Control(ctx, access.Caller{ID: by}, op, r.id, reason)
		if err != nil || !ack.GetOk() {
			diverge("entry %d (%s): recorded, but the replay refuses it: %v%v", e.GetSequence(), env.GetMessageType(), err, ack.GetError())
		}
	default:
		// The recorded sender was authenticated and authorised when the
		// entry was accepted; the replay grants it what it needed.
		ack := r.k.Send(ctx, access.Caller{ID: env.GetSender(), CanStartSessions: true}, env)
		if !ack.GetOk() || ack.GetDuplicate() {
			diverge("entry %d (%s %s from %s): accepted when recorded, replay says %s %s", e.GetSequence(),
				env.GetMessageType(), env.GetMessageId(), env.GetSender(), ack.GetError().GetCode(), ack.GetError().GetMessage())
		}
	}
	if e.GetGovernance() != nil {
		got := scratchEntry(ctx, r.st, r.id, e.GetSequence())
		if !proto.Equal(got.GetGovernance(), e.GetGovernance()) {
			diverge("entry %d: the policy decided %v on replay, recorded %v", e.GetSequence(), got.GetGovernance(), e.GetGovernance())
		}
	}
	if s, err := r.k.lookup(ctx, r.id); err == nil {
		if s.rec.GetLastSequence() != e.GetSequence() {
			diverge("entry %d: the replay is at sequence %d", e.GetSequence(), s.rec.GetLastSequence())
		}
		if s.rec.GetMetadata().GetState() != e.GetStateAfter() {
			diverge("entry %d: state after is %v, recorded %v", e.GetSequence(), s.rec.GetMetadata().GetState(), e.GetStateAfter())
		}
	}
	return nil
}

// compareSnapshots reports every replay-relevant difference between the
// recorded and the replayed snapshot. Activity timestamps are compared too:
// they come from the recorded acceptance times.
func compareSnapshots(want, got *storev1.Session, diverge func(string, ...any)) {
	if !bytes.Equal(want.GetModeState(), got.GetModeState()) {
		diverge("mode state bytes differ (recorded %d bytes, replayed %d)", len(want.GetModeState()), len(got.GetModeState()))
	}
	if !proto.Equal(want.GetMetadata(), got.GetMetadata()) {
		diverge("session metadata differs:\n  recorded %v\n  replayed %v", want.GetMetadata(), got.GetMetadata())
	}
	if !proto.Equal(want.GetResolution(), got.GetResolution()) {
		diverge("resolution differs: recorded %v, replayed %v", want.GetResolution(), got.GetResolution())
	}
	if want.GetDeadlineUnixMs() != got.GetDeadlineUnixMs() {
		diverge("deadline differs: recorded %d, replayed %d", want.GetDeadlineUnixMs(), got.GetDeadlineUnixMs())
	}
	if want.GetLastSequence() != got.GetLastSequence() {
		diverge("log length differs: recorded %d, replayed %d", want.GetLastSequence(), got.GetLastSequence())
	}
	if !slices.EqualFunc(want.GetTimers(), got.GetTimers(), func(a, b *abiv1.Timer) bool { return proto.Equal(a, b) }) {
		diverge("pending timers differ: recorded %v, replayed %v", want.GetTimers(), got.GetTimers())
	}
}

// scratchEntry reads the entry with sequence seq of session id from the
// replay's store; nil when there is none.
func scratchEntry(ctx context.Context, st storage.Log, id string, seq uint64) *storev1.Entry {
	var got *storev1.Entry
	_ = st.Entries(ctx, id, seq-1, func(x *storev1.Entry) error {
		if x.GetSequence() == seq {
			got = x
		}
		return storage.ErrStop
	})
	return got
}

func runtimeRecord(env *macpv1.Envelope) (Control, string, string, error) {
	switch env.GetMessageType() {
	case typeSessionCancel:
		var p macpv1.SessionCancelPayload
		err := proto.Unmarshal(env.GetPayload(), &p)
		return Cancel, p.GetCancelledBy(), p.GetReason(), err
	case typeSessionSuspend:
		var p macpv1.SessionSuspendPayload
		err := proto.Unmarshal(env.GetPayload(), &p)
		return Suspend, p.GetSuspendedBy(), p.GetReason(), err
	case typeSessionResume:
		var p macpv1.SessionResumePayload
		err := proto.Unmarshal(env.GetPayload(), &p)
		return Resume, p.GetResumedBy(), p.GetReason(), err
	}
	return 0, "", "", fmt.Errorf("unknown runtime record %q", env.GetMessageType())
}

// pinnedCatalog serves one module, the one a replayed session is pinned to.
type pinnedCatalog struct {
	mode   mode.Module
	strict bool
}

func (c pinnedCatalog) Lookup(string) (mode.Module, bool, error) { return c.mode, c.strict, nil }

func (c pinnedCatalog) Pinned(digest string) (mode.Module, bool) {
	return c.mode, digest == c.mode.Digest()
}

// pinnedGovernor binds the descriptor the recorded session bound, whatever
// the registry holds today, and decides with the underlying governor.
type pinnedGovernor struct {
	policy.Governor
	bound *macpv1.PolicyDescriptor
}

func (g pinnedGovernor) Bind(context.Context, string, string) (*macpv1.PolicyDescriptor, error) {
	if g.bound == nil {
		return nil, macperr.New(macperr.UnknownPolicyVersion, "the recorded session bound no policy")
	}
	return proto.Clone(g.bound).(*macpv1.PolicyDescriptor), nil
}

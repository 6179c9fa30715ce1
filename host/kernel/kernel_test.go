package kernel

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/concord-macp/concord/host/access"
	"github.com/concord-macp/concord/host/limits"
	"github.com/concord-macp/concord/macperr"
	"github.com/concord-macp/concord/policy"
	storev1 "github.com/concord-macp/concord/proto/concord/store/v1"
	macpv1 "github.com/concord-macp/concord/proto/macp/v1"
)

// TestEnvelopeChecksInOrder: each check of RFC-MACP-0001 §3.2 answers its
// code, and the earlier check wins when an envelope fails several.
func TestEnvelopeChecksInOrder(t *testing.T) {
	f := newFixture(t, fixtureOptions{payload: 64, limits: limits.Options{MessagesPerMinute: 1000}})
	f.start()
	long := strings.Repeat("x", 300)
	cases := []struct {
		name   string
		caller access.Caller
		edit   func(*macpv1.Envelope)
		want   macperr.Code
	}{
		{"version beats everything", access.Caller{}, func(e *macpv1.Envelope) { e.MacpVersion = "2.0"; e.MessageId = "" }, macperr.UnsupportedProtocolVersion},
		{"missing id", agent("bob"), func(e *macpv1.Envelope) { e.MessageId = "" }, macperr.InvalidEnvelope},
		{"long message id", agent("bob"), func(e *macpv1.Envelope) { e.MessageId = long }, macperr.InvalidEnvelope},
		{"long session id on any type", agent("bob"), func(e *macpv1.Envelope) { e.SessionId = strings.Repeat("s", 10<<10) }, macperr.InvalidSessionID},
		{"reserved id", agent("bob"), func(e *macpv1.Envelope) { e.MessageId = "runtime:x" }, macperr.InvalidEnvelope},
		{"scope before size", agent("bob"), func(e *macpv1.Envelope) { e.Mode = ""; e.Payload = make([]byte, 65) }, macperr.InvalidEnvelope},
		{"size before authentication", access.Caller{}, func(e *macpv1.Envelope) { e.Payload = make([]byte, 65) }, macperr.PayloadTooLarge},
		{"anonymous", access.Caller{}, func(*macpv1.Envelope) {}, macperr.Unauthenticated},
		{"spoofed sender", agent("bob"), func(e *macpv1.Envelope) { e.Sender = "alice" }, macperr.Unauthenticated},
		{"observers never send", access.Caller{ID: "bob", Observer: true}, func(*macpv1.Envelope) {}, macperr.Forbidden},
		{"unknown session", agent("bob"), func(e *macpv1.Envelope) { e.SessionId = "t-0123456789abcdefghijkl" }, macperr.SessionNotFound},
		{"mode mismatch", agent("bob"), func(e *macpv1.Envelope) { e.Mode = "ext.other.v1" }, macperr.InvalidEnvelope},
		{"client lifecycle record", agent("bob"), func(e *macpv1.Envelope) { e.MessageType = "SessionCancel" }, macperr.Forbidden},
		{"mode authorisation", agent("mallory"), func(*macpv1.Envelope) {}, macperr.Forbidden},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e := env(c.caller.ID, "Note", fmt.Sprintf("n%d", i), nil)
			c.edit(e)
			ack := f.send(c.caller, e)
			wantCode(t, ack, c.want)
			if len(ack.GetError().GetMessage()) > 512 || len(ack.GetSessionId()) > maxSessionIDLen {
				t.Fatalf("the answer echoes unbounded input: %d bytes of message, session id %d", len(ack.GetError().GetMessage()), len(ack.GetSessionId()))
			}
		})
	}
	// None of the refusals left a trace.
	md, err := f.k.As(operator()).Session(context.Background(), sid)
	if err != nil {
		t.Fatal(err)
	}
	if len(md.GetParticipantActivity()) != 1 {
		t.Fatalf("refused envelopes were counted as activity: %v", md.GetParticipantActivity())
	}
}

// TestUnauthenticatedReason: a credential that was refused is answered
// UNAUTHENTICATED with the reason, after the checks that come first.
func TestUnauthenticatedReason(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	ack := f.k.SendUnauthenticated(context.Background(), errors.New("the token expired"), env("", "Note", "n1", nil))
	wantCode(t, ack, macperr.Unauthenticated)
	if !strings.Contains(ack.GetError().GetMessage(), "expired") {
		t.Fatalf("message %q does not say why", ack.GetError().GetMessage())
	}
	e := env("", "Note", "n2", nil)
	e.MacpVersion = "0.9"
	wantCode(t, f.k.SendUnauthenticated(context.Background(), errors.New("bad"), e), macperr.UnsupportedProtocolVersion)
}

// TestDeploymentAuthorisation: who may start sessions, in which modes, and
// how many at once (RFC-MACP-0001 checks 6 and 8).
func TestDeploymentAuthorisation(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	start := func(c access.Caller, session string) *macpv1.Ack {
		e := env(c.ID, "SessionStart", "start-"+session, startPayload())
		e.SessionId = session
		return f.send(c, e)
	}
	wantCode(t, start(access.Caller{ID: "alice"}, "a-0123456789abcdefghijkl"), macperr.Forbidden)
	wantCode(t, start(access.Caller{ID: "alice", CanStartSessions: true, AllowedModes: []string{"ext.other.v1"}}, "b-0123456789abcdefghijkl"), macperr.Forbidden)
	capped := access.Caller{ID: "carol", CanStartSessions: true, AllowedModes: []string{testMode}, MaxOpenSessions: 1}
	if ack := start(capped, "c-0123456789abcdefghijkl"); !ack.GetOk() {
		t.Fatalf("first start refused: %v", ack.GetError())
	}
	wantCode(t, start(capped, "d-0123456789abcdefghijkl"), macperr.RateLimited)
	// Ending the session gives the slot back.
	if _, err := f.k.Control(context.Background(), capped, Cancel, "c-0123456789abcdefghijkl", "done"); err != nil {
		t.Fatal(err)
	}
	if ack := start(capped, "d-0123456789abcdefghijkl"); !ack.GetOk() {
		t.Fatalf("start after the slot was freed refused: %v", ack.GetError())
	}
}

// TestStartChecksTheStateCap: SessionStart goes the same way as every other
// message, so the mode-state cap applies to it too.
func TestStartChecksTheStateCap(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	f.start()
	wantCode(t, f.send(agent("alice"), env("alice", "Big", "big", nil)), macperr.InternalError)
	if _, err := f.k.As(operator()).Session(context.Background(), sid); err != nil {
		t.Fatal(err)
	}
}

// TestModeRejectionCodes: a module's code outside the registry becomes
// INTERNAL_ERROR and its text is not sent; long texts are cut.
func TestModeRejectionCodes(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	f.start()
	ack := f.send(agent("bob"), env("bob", "Weird", "w1", nil))
	wantCode(t, ack, macperr.InternalError)
	if strings.Contains(ack.GetError().GetMessage(), "secret") {
		t.Fatalf("the module's text reached the client: %q", ack.GetError().GetMessage())
	}
	ack = f.send(agent("bob"), env("bob", "Chatty", "c1", nil))
	wantCode(t, ack, macperr.Forbidden)
	if n := len(ack.GetError().GetMessage()); n > maxModeMessage {
		t.Fatalf("a %d-byte rejection text was passed on", n)
	}
}

// TestDedupBeforeOpenCheck: a retry after the session resolved still gets
// a duplicate Ack, a new message SESSION_NOT_OPEN.
func TestDedupBeforeOpenCheck(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	f.start()
	f.mustSend(agent("bob"), env("bob", "Note", "n1", nil))
	if ack := f.mustSend(agent("alice"), env("alice", "Commitment", "c1", commitmentPayload())); ack.GetSessionState() != macpv1.SessionState_SESSION_STATE_RESOLVED {
		t.Fatalf("commitment left the session %v", ack.GetSessionState())
	}
	if ack := f.mustSend(agent("bob"), env("bob", "Note", "n1", nil)); !ack.GetDuplicate() {
		t.Fatal("retry after resolution was not a duplicate")
	}
	wantCode(t, f.send(agent("bob"), env("bob", "Note", "n2", nil)), macperr.SessionNotOpen)
}

// TestSessionStartRetry: the same SessionStart again is a duplicate,
// another one for the same id SESSION_ALREADY_EXISTS.
func TestSessionStartRetry(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	f.start()
	if ack := f.mustSend(agent("alice"), env("alice", "SessionStart", "m0", startPayload("alice", "bob"))); !ack.GetDuplicate() {
		t.Fatal("a retried SessionStart was not a duplicate")
	}
	wantCode(t, f.send(agent("alice"), env("alice", "SessionStart", "m9", startPayload())), macperr.SessionAlreadyExists)
	e := env("alice", "SessionStart", "x", startPayload())
	e.Mode = "ext.none.v1"
	e.SessionId = "u-0123456789abcdefghijkl"
	ack := f.send(agent("alice"), e)
	wantCode(t, ack, macperr.ModeNotSupported)
	if ack.GetError().GetMessage() != "no such mode here" {
		t.Fatalf("the catalog's reason was not passed on: %q", ack.GetError().GetMessage())
	}
}

// TestPolicyDenied: a Commitment the governor denies is POLICY_DENIED with
// its reasons, leaves the session open, and is in the governance trail.
func TestPolicyDenied(t *testing.T) {
	f := newFixture(t, fixtureOptions{governor: denyingGovernor{}})
	f.start()
	f.mustSend(agent("bob"), env("bob", "Note", "n1", nil))
	ack := f.send(agent("alice"), env("alice", "Commitment", "c1", commitmentPayload()))
	wantCode(t, ack, macperr.PolicyDenied)
	if !strings.Contains(string(ack.GetError().GetDetails()), "not on fridays") {
		t.Fatalf("details %q lack the reason", ack.GetError().GetDetails())
	}
	decisions, err := f.k.As(agent("alice")).Governance(context.Background(), sid)
	if err != nil {
		t.Fatal(err)
	}
	if len(decisions) != 1 || decisions[0].GetAllow() {
		t.Fatalf("governance trail = %v", decisions)
	}
	md, _ := f.k.As(agent("alice")).Session(context.Background(), sid)
	if md.GetState() != macpv1.SessionState_SESSION_STATE_OPEN {
		t.Fatalf("a denied commitment changed the state to %v", md.GetState())
	}
}

type denyingGovernor struct{ policy.Default }

func (denyingGovernor) Govern(context.Context, *policy.Input) (policy.Decision, error) {
	return policy.Decision{Allow: false, Reasons: []string{"not on fridays"}}, nil
}

// TestViewAccess: every read goes through the caller's view: outsiders are
// refused everywhere, participants and observers are not.
func TestViewAccess(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	f.start()
	f.mustSend(agent("bob"), env("bob", "Note", "n1", nil))
	ctx := context.Background()
	reads := map[string]func(View) error{
		"Session":    func(v View) error { _, err := v.Session(ctx, sid); return err },
		"Inspect":    func(v View) error { _, err := v.Inspect(ctx, sid); return err },
		"Log":        func(v View) error { return v.Log(ctx, sid, 0, func(*storev1.Entry) error { return nil }) },
		"Export":     func(v View) error { _, _, err := v.Export(ctx, sid); return err },
		"Governance": func(v View) error { _, err := v.Governance(ctx, sid); return err },
		"Replay":     func(v View) error { _, err := v.Replay(ctx, sid); return err },
		"StateAt":    func(v View) error { _, err := v.StateAt(ctx, sid, 1); return err },
		"Subscribe": func(v View) error {
			sub, err := v.Subscribe(ctx, sid, 0)
			if err == nil {
				sub.Close()
			}
			return err
		},
	}
	for name, read := range reads {
		if err := read(f.k.As(agent("mallory"))); macperr.CodeOf(err) != macperr.Forbidden {
			t.Errorf("%s by an outsider: %v, want FORBIDDEN", name, err)
		}
		if err := read(f.k.As(access.Caller{})); macperr.CodeOf(err) != macperr.Forbidden {
			t.Errorf("%s by an anonymous caller: %v, want FORBIDDEN", name, err)
		}
		for _, c := range []access.Caller{agent("alice"), agent("bob"), {ID: "auditor", Observer: true}} {
			if err := read(f.k.As(c)); err != nil {
				t.Errorf("%s by %s: %v", name, c.ID, err)
			}
		}
		if _, err := f.k.As(operator()).Session(ctx, "t-0123456789abcdefghijkl"); macperr.CodeOf(err) != macperr.SessionNotFound {
			t.Errorf("unknown session: %v", err)
		}
	}
}

// TestStateAtRecomputesHistory: the state after each entry is recomputed
// through the module, not read from storage.
func TestStateAtRecomputesHistory(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	f.start()
	for i := range 3 {
		f.mustSend(agent("bob"), env("bob", "Note", fmt.Sprint("n", i), nil))
	}
	for seq := uint64(1); seq <= 4; seq++ {
		in, err := f.k.As(agent("bob")).StateAt(context.Background(), sid, seq)
		if err != nil {
			t.Fatal(err)
		}
		var st counterState
		if err := json.Unmarshal(in.ModeState, &st); err != nil {
			t.Fatal(err)
		}
		if st.N != int(seq-1) || in.Session.GetLastSequence() != seq {
			t.Fatalf("after entry %d: n=%d at sequence %d", seq, st.N, in.Session.GetLastSequence())
		}
	}
	if _, err := f.k.As(agent("bob")).StateAt(context.Background(), sid, 5); macperr.CodeOf(err) != macperr.InvalidEnvelope {
		t.Fatalf("StateAt past the end: %v", err)
	}
}

// TestSubscribePastTheEnd: a resume point beyond the log replays nothing
// and delivers what is accepted afterwards.
func TestSubscribePastTheEnd(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	f.start()
	f.mustSend(agent("bob"), env("bob", "Note", "n1", nil))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	sub, err := f.k.As(agent("bob")).Subscribe(ctx, sid, 10_000_000)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	if e, err := sub.TryNext(ctx); e != nil || err != nil {
		t.Fatalf("history was replayed past the end: %v %v", e, err)
	}
	f.mustSend(agent("bob"), env("bob", "Note", "n2", nil))
	e, err := sub.Next(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if e.GetSequence() != 3 || e.GetEnvelope().GetMessageId() != "n2" {
		t.Fatalf("got entry %d %q, want 3 n2", e.GetSequence(), e.GetEnvelope().GetMessageId())
	}
}

// TestWatchSessions: a watch lists visible sessions once, filters live
// events by the caller and the filter, and never repeats a CREATED.
func TestWatchSessions(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	f.start()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	w := f.k.As(agent("bob")).WatchSessions(ctx, SessionFilter{})
	defer w.Close()
	ev, err := w.Next(ctx)
	if err != nil || ev.GetEventType() != macpv1.SessionLifecycleEvent_EVENT_TYPE_CREATED || ev.GetSession().GetSessionId() != sid {
		t.Fatalf("first event %v %v", ev, err)
	}
	// A session bob is not in, then one he is in, then a resolution.
	other := env("carol", "SessionStart", "s1", startPayload())
	other.SessionId = "v-0123456789abcdefghijkl"
	f.mustSend(agent("carol"), other)
	mine := env("carol", "SessionStart", "s2", startPayload("bob"))
	mine.SessionId = "w-0123456789abcdefghijkl"
	f.mustSend(agent("carol"), mine)
	f.mustSend(agent("alice"), env("alice", "Done", "d1", nil))
	want := []struct {
		typ macpv1.SessionLifecycleEvent_EventType
		id  string
	}{
		{macpv1.SessionLifecycleEvent_EVENT_TYPE_CREATED, mine.SessionId},
		{macpv1.SessionLifecycleEvent_EVENT_TYPE_RESOLVED, sid},
	}
	for _, w8 := range want {
		ev, err := w.Next(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if ev.GetEventType() != w8.typ || ev.GetSession().GetSessionId() != w8.id {
			t.Fatalf("event %v %s, want %v %s", ev.GetEventType(), ev.GetSession().GetSessionId(), w8.typ, w8.id)
		}
	}
	// Filters: only resolved sessions of a participant.
	page, _, err := f.k.As(operator()).ListSessions(ctx, SessionFilter{States: []macpv1.SessionState{macpv1.SessionState_SESSION_STATE_RESOLVED}}, 0, "")
	if err != nil || len(page) != 1 || page[0].GetSessionId() != sid {
		t.Fatalf("resolved sessions = %v %v", page, err)
	}
	page, _, _ = f.k.As(operator()).ListSessions(ctx, SessionFilter{Participant: "bob"}, 0, "")
	if len(page) != 2 {
		t.Fatalf("bob's sessions = %d, want 2", len(page))
	}
}

// TestControl: initiator-only lifecycle calls, banked suspension, expiry,
// and an exact replay of the whole history.
func TestControl(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	f.start()
	ctx := context.Background()
	if _, err := f.k.Control(ctx, agent("bob"), Suspend, sid, "no"); macperr.CodeOf(err) != macperr.Forbidden {
		t.Fatalf("a participant suspended the session: %v", err)
	}
	if _, err := f.k.Control(ctx, access.Caller{}, Cancel, sid, "no"); macperr.CodeOf(err) != macperr.Unauthenticated {
		t.Fatalf("anonymous cancel: %v", err)
	}
	if _, err := f.k.Control(ctx, access.Caller{ID: "ops", Admin: true}, Suspend, sid, "no"); macperr.CodeOf(err) != macperr.Forbidden {
		t.Fatalf("an administrator suspended someone else's session: %v", err)
	}
	ack, err := f.k.Control(ctx, agent("alice"), Suspend, sid, "lunch")
	if err != nil || !ack.GetOk() {
		t.Fatalf("suspend: %v %v", ack, err)
	}
	f.clock.Advance(50 * time.Second)
	wantCode(t, f.send(agent("bob"), env("bob", "Note", "n1", nil)), macperr.SessionNotOpen)
	if ack, _ := f.k.Control(ctx, agent("alice"), Suspend, sid, "again"); ack.GetOk() {
		t.Fatal("suspended twice")
	}
	if ack, err := f.k.Control(ctx, agent("alice"), Resume, sid, "back"); err != nil || !ack.GetOk() {
		t.Fatalf("resume: %v %v", ack, err)
	}
	f.clock.Advance(55 * time.Second) // 60 s TTL, 50 s of it banked
	f.mustSend(agent("bob"), env("bob", "Note", "n1", nil))
	f.clock.Advance(10 * time.Second)
	wantCode(t, f.send(agent("bob"), env("bob", "Note", "n2", nil)), macperr.SessionNotOpen)
	md, _ := f.k.As(agent("alice")).Session(ctx, sid)
	if md.GetState() != macpv1.SessionState_SESSION_STATE_EXPIRED {
		t.Fatalf("state %v, want EXPIRED", md.GetState())
	}
	res, err := f.k.As(agent("alice")).Replay(ctx, sid)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Divergences) > 0 || res.Entries != 5 {
		t.Fatalf("replay of %d entries diverges: %v", res.Entries, res.Divergences)
	}
}

// TestTimers: a due timer fires on the next access, before it, at the
// moment it came due, and replays exactly.
func TestTimers(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	f.start()
	ctx := context.Background()
	f.mustSend(agent("alice"), env("alice", "Arm", "a1", []byte("1000")))
	armedAt := f.clock.Now()
	wantCode(t, f.send(agent("alice"), env("alice", "Fire", "f1", nil)), macperr.Forbidden)
	f.clock.Advance(5 * time.Second)
	f.mustSend(agent("bob"), env("bob", "Note", "n1", nil))
	var entries []*storev1.Entry
	if err := f.k.As(agent("bob")).Log(ctx, sid, 0, func(e *storev1.Entry) error { entries = append(entries, e); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(entries) != 4 {
		t.Fatalf("log has %d entries, want 4", len(entries))
	}
	fired := entries[2]
	if fired.GetOrigin() != storev1.Origin_ORIGIN_RUNTIME || fired.GetEnvelope().GetMessageType() != "Fire" ||
		fired.GetAcceptedAtUnixMs() != armedAt.Add(time.Second).UnixMilli() {
		t.Fatalf("timer record = %v", fired)
	}
	in, _ := f.k.As(agent("bob")).Inspect(ctx, sid)
	if !strings.Contains(string(in.ModeState), `"n":101`) {
		t.Fatalf("state %s, want n=101", in.ModeState)
	}
	res, err := f.k.As(agent("bob")).Replay(ctx, sid)
	if err != nil || len(res.Divergences) > 0 {
		t.Fatalf("replay: %v %v", err, res.Divergences)
	}
}

// TestManySendersOneSession: concurrent senders to one session keep their
// own order, every message lands once, and a subscriber sees the log's
// order. Run under the race detector by make test-race.
func TestManySendersOneSession(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	participants := []string{"alice"}
	for i := range 8 {
		participants = append(participants, fmt.Sprint("p", i))
	}
	f.mustSend(agent("alice"), env("alice", "SessionStart", "m0", startPayload(participants...)))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	sub, err := f.k.As(agent("alice")).Subscribe(ctx, sid, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	const each = 40
	total := 1 + each*(len(participants)-1)
	// The subscriber reads while the senders write.
	read := make(chan error, 1)
	go func() {
		last := map[string]int{}
		for seq := 1; seq <= total; seq++ {
			e, err := sub.Next(ctx)
			if err != nil {
				read <- err
				return
			}
			if int(e.GetSequence()) != seq {
				read <- fmt.Errorf("entry %d arrived as %d", seq, e.GetSequence())
				return
			}
			var p string
			var n int
			if _, err := fmt.Sscanf(e.GetEnvelope().GetMessageId(), "%2s-%d", &p, &n); err == nil {
				if prev, ok := last[p]; ok && n != prev+1 {
					read <- fmt.Errorf("%s's messages out of order: %d after %d", p, n, prev)
					return
				}
				last[p] = n
			}
		}
		read <- nil
	}()
	var wg sync.WaitGroup
	for _, p := range participants[1:] {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				id := fmt.Sprintf("%s-%03d", p, i)
				if ack := f.send(agent(p), env(p, "Note", id, nil)); !ack.GetOk() {
					t.Errorf("%s refused: %v", id, ack.GetError())
				}
				if i%7 == 0 { // a retry is a duplicate
					if ack := f.send(agent(p), env(p, "Note", id, nil)); !ack.GetDuplicate() {
						t.Errorf("retry of %s not a duplicate", id)
					}
				}
			}
		}()
	}
	wg.Wait()
	if err := <-read; err != nil {
		t.Fatal(err)
	}
	in, _ := f.k.As(agent("alice")).Inspect(ctx, sid)
	if !strings.Contains(string(in.ModeState), fmt.Sprintf(`"n":%d`, total-1)) {
		t.Fatalf("state %s, want n=%d", in.ModeState, total-1)
	}
}

// TestObserve: every answer is reported, accepted or not.
func TestObserve(t *testing.T) {
	var mu sync.Mutex
	var seen []Outcome
	f := newFixture(t, fixtureOptions{})
	f.k.opts.Observe = func(o Outcome) { mu.Lock(); seen = append(seen, o); mu.Unlock() }
	f.start()
	f.mustSend(agent("bob"), env("bob", "Note", "n1", nil))
	f.mustSend(agent("bob"), env("bob", "Note", "n1", nil))
	f.send(agent("mallory"), env("mallory", "Note", "n2", nil))
	want := []Outcome{
		{Mode: testMode, MessageType: "SessionStart", State: macpv1.SessionState_SESSION_STATE_OPEN},
		{Mode: testMode, MessageType: "Note", State: macpv1.SessionState_SESSION_STATE_OPEN},
		{Mode: testMode, MessageType: "Note", Duplicate: true, State: macpv1.SessionState_SESSION_STATE_OPEN},
		{Mode: testMode, MessageType: "Note", Code: macperr.Forbidden},
	}
	if fmt.Sprint(seen) != fmt.Sprint(want) {
		t.Fatalf("observed %v, want %v", seen, want)
	}
}

// TestAdministratorsMayCancel: an operator (admin and observer) may cancel
// any session, and the record names who did; an admin alone may not.
func TestAdministratorsMayCancel(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	f.start()
	ctx := context.Background()
	if _, err := f.k.Control(ctx, access.Caller{ID: "dev", Admin: true}, Cancel, sid, "no"); macperr.CodeOf(err) != macperr.Forbidden {
		t.Fatalf("an administrator who cannot see every session cancelled one: %v", err)
	}
	ack, err := f.k.Control(ctx, access.Caller{ID: "ops", Admin: true, Observer: true}, Cancel, sid, "runaway")
	if err != nil || !ack.GetOk() || ack.GetSessionState() != macpv1.SessionState_SESSION_STATE_CANCELLED {
		t.Fatalf("admin cancel: %v %v", ack, err)
	}
	var last *storev1.Entry
	_ = f.k.As(agent("alice")).Log(ctx, sid, 0, func(e *storev1.Entry) error { last = e; return nil })
	var p macpv1.SessionCancelPayload
	if err := proto.Unmarshal(last.GetEnvelope().GetPayload(), &p); err != nil || p.GetCancelledBy() != "ops" {
		t.Fatalf("cancel record %v (%v)", &p, err)
	}
}

package mpac

import (
	"reflect"
	"strings"
	"testing"

	"github.com/concord-macp/concord/abi/guest"
	kt "github.com/concord-macp/concord/abi/guest/guesttest"
	"github.com/concord-macp/concord/macperr"
)

const (
	MsgSessionStart     = "SessionStart"
	MsgAnnounceIntent   = "AnnounceIntent"
	MsgCommitOperation  = "CommitOperation"
	MsgWithdraw         = "Withdraw"
	MsgClaim            = "Claim"
	MsgResolveConflict  = "ResolveConflict"
	MsgEscalateConflict = "EscalateConflict"
	MsgDeclareCrashed   = "DeclareCrashed"
	MsgCommitment       = "Commitment"
)

const (
	FB = macperr.Forbidden
	IE = macperr.InvalidEnvelope
)

var roster = []string{kt.Alice, kt.Bob, kt.Carol, kt.Dave}

func announce(sender, id string, scope ...string) kt.Msg {
	return kt.Msg{Sender: sender, Type: MsgAnnounceIntent, Payload: map[string]any{"intent_id": id, "scope": scope, "description": "work on " + id}}
}

func op(sender, id string, watermark uint64) kt.Msg {
	return kt.Msg{Sender: sender, Type: MsgCommitOperation, Payload: map[string]any{"intent_id": id, "watermark": watermark, "summary": "edit"}}
}

func withdraw(sender, id string) kt.Msg {
	return kt.Msg{Sender: sender, Type: MsgWithdraw, Payload: map[string]any{"intent_id": id, "reason": "done"}}
}

func claim(sender, id string) kt.Msg {
	return kt.Msg{Sender: sender, Type: MsgClaim, Payload: map[string]any{"intent_id": id}}
}

func resolve(sender string, conflict uint64, keep ...string) kt.Msg {
	if keep == nil {
		keep = []string{}
	}
	return kt.Msg{Sender: sender, Type: MsgResolveConflict, Payload: map[string]any{"conflict_id": conflict, "keep": keep}}
}

func escalate(sender string, conflict uint64) kt.Msg {
	return kt.Msg{Sender: sender, Type: MsgEscalateConflict, Payload: map[string]any{"conflict_id": conflict, "reason": "needs a human"}}
}

func crash(sender, participant string) kt.Msg {
	return kt.Msg{Sender: sender, Type: MsgDeclareCrashed, Payload: map[string]any{"participant": participant, "reason": "no heartbeat"}}
}

func raw(sender, typ, payload string, code macperr.Code) kt.Msg {
	return kt.Msg{Sender: sender, Type: typ, Payload: payload, Code: code}
}

func with(m kt.Msg, code macperr.Code) kt.Msg { m.Code = code; return m }

func commit(positive bool, code macperr.Code) kt.Msg { return kt.Commitment(kt.Coord, positive, code) }

func TestDescribe(t *testing.T) {
	d := Mode.Describe()
	if d.Mode != ModeName || d.ModeVersion != "1.0.0" || !reflect.DeepEqual(d.TerminalMessageTypes, []string{"Commitment"}) || d.MessageTypes[0] != "SessionStart" {
		t.Fatalf("descriptor %+v", d)
	}
}

func TestSessionStart(t *testing.T) {
	for _, tc := range []struct {
		name    string
		rules   string
		code    macperr.Code
		arbiter string
	}{
		{"initiator by default", "", "", kt.Coord},
		{"other keys ignored", `{"commitment":{"authority":"any_participant"}}`, "", kt.Coord},
		{"participant named", `{"mpac":{"arbiter":"agent://bob"}}`, "", kt.Bob},
		{"initiator named", `{"mpac":{"arbiter":"agent://coordinator"}}`, "", kt.Coord},
		{"null object", `{"mpac":null}`, "", kt.Coord},
		{"outsider named", `{"mpac":{"arbiter":"agent://outsider"}}`, IE, ""},
		{"blank arbiter", `{"mpac":{"arbiter":""}}`, IE, ""},
		{"unknown key", `{"mpac":{"judge":"agent://bob"}}`, IE, ""},
		{"not an object", `{"mpac":"agent://bob"}`, IE, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res := kt.StartResult(Mode, kt.Session(ModeName, tc.rules, roster...))
			if tc.code != "" {
				if res.Accepted || res.Code != tc.code {
					t.Fatalf("accepted=%v %s (%s), want %s", res.Accepted, res.Code, res.Message, tc.code)
				}
				return
			}
			if !res.Accepted {
				t.Fatalf("rejected %s %s", res.Code, res.Message)
			}
			if s, _, err := Mode.Decode(res.State); err != nil || s.Arbiter != tc.arbiter {
				t.Fatalf("state %+v %v, want arbiter %s", s, err, tc.arbiter)
			}
		})
	}
	sess := kt.Session(ModeName, "", roster...)
	kt.Play(t, Mode, sess, kt.Start(t, Mode, sess), []kt.Msg{{Sender: kt.Coord, Type: MsgSessionStart, Code: IE}})
}

func TestScope(t *testing.T) {
	long := strings.Repeat("a", MaxPathBytes)
	many := make([]string, MaxScopePaths+1)
	for i := range many {
		many[i] = "p" + strings.Repeat("x", i)
	}
	for _, tc := range []struct {
		scope []string
		ok    bool
	}{
		{[]string{"src/main.go"}, true},
		{[]string{"b", "a", "c/d"}, true},
		{[]string{long}, true},
		{many[:MaxScopePaths], true},
		{nil, false},
		{[]string{}, false},
		{many, false},
		{[]string{long + "a"}, false},
		{[]string{""}, false},
		{[]string{"/src"}, false},
		{[]string{"src/"}, false},
		{[]string{"src//a"}, false},
		{[]string{"src/./a"}, false},
		{[]string{"src/../a"}, false},
		{[]string{".."}, false},
		{[]string{"a", "b", "a"}, false},
	} {
		got, err := CleanScope(tc.scope)
		if (err == nil) != tc.ok {
			t.Errorf("CleanScope(%q) error %v, want ok=%v", tc.scope, err, tc.ok)
		}
		if err == nil && !sortedStrings(got) {
			t.Errorf("CleanScope(%q) = %q, not sorted", tc.scope, got)
		}
	}
	for _, tc := range []struct {
		a, b string
		want bool
	}{
		{"src", "src", true},
		{"src", "src/main.go", true},
		{"src/main.go", "src", true},
		{"src", "srcs", false},
		{"src/a", "src/b", false},
		{"src/a", "src/ab", false},
		{"a/b/c", "a/b", true},
	} {
		if got := PathsOverlap(tc.a, tc.b); got != tc.want {
			t.Errorf("PathsOverlap(%q, %q) = %v", tc.a, tc.b, got)
		}
	}
}

func sortedStrings(ss []string) bool {
	for i := 1; i < len(ss); i++ {
		if ss[i-1] > ss[i] {
			return false
		}
	}
	return true
}

func TestRules(t *testing.T) {
	aliceArbiter := `{"mpac":{"arbiter":"agent://alice"}}`
	for _, tc := range []struct {
		name   string
		rules  string
		script []kt.Msg
	}{
		// The cycle.
		{"announce, operate, withdraw, commit", "", []kt.Msg{
			announce(kt.Alice, "i1", "src/a"), op(kt.Alice, "i1", 0), op(kt.Alice, "i1", 1), withdraw(kt.Alice, "i1"), commit(true, ""),
		}},

		// Authorization of intent messages.
		{"outsider announce", "", []kt.Msg{with(announce(kt.Outsider, "i", "a"), FB)}},
		{"outsider malformed", "", []kt.Msg{raw(kt.Outsider, MsgAnnounceIntent, "junk", FB)}},
		{"initiator outside the roster may not announce", "", []kt.Msg{with(announce(kt.Coord, "i", "a"), FB)}},
		{"outsider operation", "", []kt.Msg{announce(kt.Alice, "i1", "a"), with(op(kt.Outsider, "i1", 0), FB)}},
		{"outsider withdraw", "", []kt.Msg{announce(kt.Alice, "i1", "a"), with(withdraw(kt.Outsider, "i1"), FB)}},
		{"outsider claim", "", []kt.Msg{announce(kt.Alice, "i1", "a"), crash(kt.Coord, kt.Alice), with(claim(kt.Outsider, "i1"), FB)}},

		// AnnounceIntent.
		{"announce malformed", "", []kt.Msg{raw(kt.Alice, MsgAnnounceIntent, "junk", IE)}},
		{"announce empty payload", "", []kt.Msg{raw(kt.Alice, MsgAnnounceIntent, "", IE)}},
		{"announce unknown key", "", []kt.Msg{raw(kt.Alice, MsgAnnounceIntent, `{"intent_id":"i","scope":["a"],"ttl":5}`, IE)}},
		{"announce scope not a list", "", []kt.Msg{raw(kt.Alice, MsgAnnounceIntent, `{"intent_id":"i","scope":"a"}`, IE)}},
		{"announce blank id", "", []kt.Msg{with(announce(kt.Alice, " ", "a"), IE)}},
		{"announce without scope", "", []kt.Msg{raw(kt.Alice, MsgAnnounceIntent, `{"intent_id":"i"}`, IE)}},
		{"announce bad path", "", []kt.Msg{with(announce(kt.Alice, "i", "a", "../etc"), IE)}},
		{"announce a live id", "", []kt.Msg{announce(kt.Alice, "i1", "a"), with(announce(kt.Bob, "i1", "b"), IE)}},
		{"reuse an id after withdrawal", "", []kt.Msg{announce(kt.Alice, "i1", "a"), withdraw(kt.Alice, "i1"), announce(kt.Bob, "i1", "b")}},

		// Conflicts.
		{"overlap with another owner blocks both", "", []kt.Msg{
			announce(kt.Alice, "i1", "src"), announce(kt.Bob, "i2", "docs", "src/main.go"),
			with(op(kt.Alice, "i1", 0), IE), with(op(kt.Bob, "i2", 0), IE),
		}},
		{"same owner never conflicts", "", []kt.Msg{
			announce(kt.Alice, "i1", "src"), announce(kt.Alice, "i2", "src/a"), op(kt.Alice, "i2", 0), op(kt.Alice, "i1", 1),
		}},
		{"sibling paths do not conflict", "", []kt.Msg{
			announce(kt.Alice, "i1", "src"), announce(kt.Bob, "i2", "srcs", "src2/x"), op(kt.Alice, "i1", 0), op(kt.Bob, "i2", 0),
		}},
		{"withdrawing dissolves the conflict", "", []kt.Msg{
			announce(kt.Alice, "i1", "src"), announce(kt.Bob, "i2", "src/a"), withdraw(kt.Bob, "i2"), op(kt.Alice, "i1", 0),
		}},
		{"an intent in two conflicts waits for both", "", []kt.Msg{
			announce(kt.Alice, "i1", "src/a"), announce(kt.Bob, "i2", "src/b"), announce(kt.Carol, "i3", "src"),
			resolve(kt.Coord, 1, "i1", "i3"), with(op(kt.Carol, "i3", 0), IE), op(kt.Alice, "i1", 0),
			resolve(kt.Coord, 2, "i3"), op(kt.Carol, "i3", 1), with(op(kt.Bob, "i2", 0), IE),
		}},

		// CommitOperation.
		{"operation on an unknown intent", "", []kt.Msg{with(op(kt.Alice, "i9", 0), IE)}},
		{"operation on another's intent", "", []kt.Msg{announce(kt.Alice, "i1", "a"), with(op(kt.Bob, "i1", 0), FB)}},
		{"operation malformed", "", []kt.Msg{announce(kt.Alice, "i1", "a"), raw(kt.Alice, MsgCommitOperation, `{"intent_id":"i1","watermark":-1}`, IE)}},
		{"operation without watermark", "", []kt.Msg{announce(kt.Alice, "i1", "a"), raw(kt.Alice, MsgCommitOperation, `{"intent_id":"i1"}`, IE)}},
		{"watermark from the future", "", []kt.Msg{announce(kt.Alice, "i1", "a"), with(op(kt.Alice, "i1", 1), IE)}},
		{"own operations raise the watermark", "", []kt.Msg{
			announce(kt.Alice, "i1", "a"), op(kt.Alice, "i1", 0), with(op(kt.Alice, "i1", 0), IE), op(kt.Alice, "i1", 1),
		}},
		{"operations elsewhere do not make a watermark stale", "", []kt.Msg{
			announce(kt.Alice, "i1", "src/a"), announce(kt.Bob, "i2", "docs"), op(kt.Bob, "i2", 0), op(kt.Alice, "i1", 0),
			with(op(kt.Alice, "i1", 1), IE), op(kt.Alice, "i1", 2),
		}},
		{"a new intent must have seen earlier operations", "", []kt.Msg{
			announce(kt.Alice, "i1", "x"), op(kt.Alice, "i1", 0), withdraw(kt.Alice, "i1"),
			announce(kt.Bob, "i2", "y"), with(op(kt.Bob, "i2", 0), IE), op(kt.Bob, "i2", 1),
		}},
		{"kept overlapping intents see each other's operations", "", []kt.Msg{
			announce(kt.Alice, "i1", "src"), announce(kt.Bob, "i2", "src/b"), resolve(kt.Coord, 1, "i1", "i2"),
			op(kt.Alice, "i1", 0), with(op(kt.Bob, "i2", 0), IE), op(kt.Bob, "i2", 1), with(op(kt.Alice, "i1", 1), IE), op(kt.Alice, "i1", 2),
		}},

		// Withdraw.
		{"withdraw another's intent", "", []kt.Msg{announce(kt.Alice, "i1", "a"), with(withdraw(kt.Bob, "i1"), FB)}},
		{"withdraw an unknown intent", "", []kt.Msg{with(withdraw(kt.Alice, "i1"), IE)}},
		{"withdraw twice", "", []kt.Msg{announce(kt.Alice, "i1", "a"), withdraw(kt.Alice, "i1"), with(withdraw(kt.Alice, "i1"), IE)}},
		{"withdraw malformed", "", []kt.Msg{raw(kt.Alice, MsgWithdraw, `{"intent_id":"i1","why":"x"}`, IE)}},

		// ResolveConflict.
		{"resolve keeping one revokes the other", "", []kt.Msg{
			announce(kt.Alice, "i1", "src"), announce(kt.Bob, "i2", "src/b"), resolve(kt.Coord, 1, "i2"),
			with(op(kt.Alice, "i1", 0), IE), op(kt.Bob, "i2", 0), with(withdraw(kt.Alice, "i1"), IE),
		}},
		{"resolve keeping none", "", []kt.Msg{
			announce(kt.Alice, "i1", "src"), announce(kt.Bob, "i2", "src"), resolve(kt.Coord, 1),
			with(op(kt.Alice, "i1", 0), IE), with(op(kt.Bob, "i2", 0), IE), commit(false, ""),
		}},
		{"revoking dissolves the revoked intent's other conflicts", "", []kt.Msg{
			announce(kt.Alice, "i1", "src"), announce(kt.Bob, "i2", "src/x"), announce(kt.Carol, "i3", "src/y"),
			resolve(kt.Coord, 1, "i2"), op(kt.Carol, "i3", 0), with(resolve(kt.Coord, 2, "i3"), IE),
		}},
		{"resolve by a participant", "", []kt.Msg{
			announce(kt.Alice, "i1", "src"), announce(kt.Bob, "i2", "src"), with(resolve(kt.Alice, 1, "i1"), FB),
		}},
		{"resolve by an outsider, malformed", "", []kt.Msg{raw(kt.Outsider, MsgResolveConflict, "junk", FB)}},
		{"resolve malformed", "", []kt.Msg{raw(kt.Coord, MsgResolveConflict, "junk", IE)}},
		{"resolve without conflict_id", "", []kt.Msg{raw(kt.Coord, MsgResolveConflict, `{"keep":[]}`, IE)}},
		{"resolve without keep", "", []kt.Msg{
			announce(kt.Alice, "i1", "src"), announce(kt.Bob, "i2", "src"), raw(kt.Coord, MsgResolveConflict, `{"conflict_id":1}`, IE),
		}},
		{"resolve an unknown conflict", "", []kt.Msg{with(resolve(kt.Coord, 1), IE)}},
		{"resolve twice", "", []kt.Msg{
			announce(kt.Alice, "i1", "src"), announce(kt.Bob, "i2", "src"), resolve(kt.Coord, 1, "i1", "i2"), with(resolve(kt.Coord, 1, "i1"), IE),
		}},
		{"keep outside the conflict", "", []kt.Msg{
			announce(kt.Alice, "i1", "src"), announce(kt.Bob, "i2", "src"), announce(kt.Carol, "i3", "lib"), with(resolve(kt.Coord, 1, "i3"), IE),
		}},
		{"keep twice", "", []kt.Msg{
			announce(kt.Alice, "i1", "src"), announce(kt.Bob, "i2", "src"), with(resolve(kt.Coord, 1, "i1", "i1"), IE),
		}},
		{"arbiter named by the policy", aliceArbiter, []kt.Msg{
			announce(kt.Bob, "i1", "src"), announce(kt.Carol, "i2", "src"), with(resolve(kt.Coord, 1, "i1"), FB), resolve(kt.Alice, 1, "i1"),
		}},

		// EscalateConflict.
		{"escalation makes a negative commitment eligible", "", []kt.Msg{
			announce(kt.Alice, "i1", "src"), announce(kt.Bob, "i2", "src"), commit(false, IE), escalate(kt.Coord, 1),
			commit(true, IE), commit(false, ""),
		}},
		{"an escalated conflict can still be resolved", "", []kt.Msg{
			announce(kt.Alice, "i1", "src"), announce(kt.Bob, "i2", "src"), escalate(kt.Coord, 1), resolve(kt.Coord, 1, "i1"),
			commit(false, IE), op(kt.Alice, "i1", 0),
		}},
		{"escalate by a participant", "", []kt.Msg{announce(kt.Alice, "i1", "src"), announce(kt.Bob, "i2", "src"), with(escalate(kt.Alice, 1), FB)}},
		{"escalate twice", "", []kt.Msg{
			announce(kt.Alice, "i1", "src"), announce(kt.Bob, "i2", "src"), escalate(kt.Coord, 1), with(escalate(kt.Coord, 1), IE),
		}},
		{"escalate an unknown conflict", "", []kt.Msg{with(escalate(kt.Coord, 3), IE)}},
		{"escalate without a reason", "", []kt.Msg{
			announce(kt.Alice, "i1", "src"), announce(kt.Bob, "i2", "src"), raw(kt.Coord, MsgEscalateConflict, `{"conflict_id":1,"reason":" "}`, IE),
		}},
		{"escalate without conflict_id", "", []kt.Msg{raw(kt.Coord, MsgEscalateConflict, `{"reason":"r"}`, IE)}},

		// DeclareCrashed and Claim.
		{"claim a crashed owner's intent", "", []kt.Msg{
			announce(kt.Alice, "i1", "src"), op(kt.Alice, "i1", 0), with(claim(kt.Bob, "i1"), IE), crash(kt.Coord, kt.Alice),
			claim(kt.Bob, "i1"), with(op(kt.Alice, "i1", 1), FB), op(kt.Bob, "i1", 1), withdraw(kt.Bob, "i1"), commit(true, ""),
		}},
		{"a claimant must have seen every operation", "", []kt.Msg{
			announce(kt.Alice, "i1", "src"), announce(kt.Carol, "i2", "docs"), op(kt.Carol, "i2", 0),
			crash(kt.Coord, kt.Alice), claim(kt.Bob, "i1"), with(op(kt.Bob, "i1", 0), IE), op(kt.Bob, "i1", 1),
		}},
		{"a claimed intent keeps its conflicts", "", []kt.Msg{
			announce(kt.Alice, "i1", "src"), announce(kt.Bob, "i2", "src"), crash(kt.Coord, kt.Alice), claim(kt.Carol, "i1"),
			with(op(kt.Carol, "i1", 0), IE), resolve(kt.Coord, 1, "i1"), op(kt.Carol, "i1", 0),
		}},
		{"a crashed participant may send nothing", "", []kt.Msg{
			announce(kt.Alice, "i1", "src"), crash(kt.Coord, kt.Alice), with(announce(kt.Alice, "i2", "x"), FB),
			with(withdraw(kt.Alice, "i1"), FB), with(claim(kt.Alice, "i1"), FB), raw(kt.Alice, MsgWithdraw, "junk", FB),
		}},
		{"claim a live owner's intent", "", []kt.Msg{announce(kt.Alice, "i1", "src"), with(claim(kt.Bob, "i1"), IE)}},
		{"claim an unknown intent", "", []kt.Msg{with(claim(kt.Bob, "i1"), IE)}},
		{"claim malformed", "", []kt.Msg{raw(kt.Bob, MsgClaim, `{"intent":"i1"}`, IE)}},
		{"crash by a participant", "", []kt.Msg{with(crash(kt.Bob, kt.Alice), FB)}},
		{"crash a non-participant", "", []kt.Msg{with(crash(kt.Coord, kt.Outsider), IE), with(crash(kt.Coord, kt.Coord), IE)}},
		{"crash twice", "", []kt.Msg{crash(kt.Coord, kt.Alice), with(crash(kt.Coord, kt.Alice), IE)}},
		{"the arbiter cannot crash itself", aliceArbiter, []kt.Msg{with(crash(kt.Alice, kt.Alice), IE), crash(kt.Alice, kt.Bob)}},
		{"crash malformed", "", []kt.Msg{raw(kt.Coord, MsgDeclareCrashed, `["agent://alice"]`, IE)}},

		// Commitment.
		{"negative commitment with nothing done", "", []kt.Msg{commit(true, IE), commit(false, "")}},
		{"no commitment while intents are live", "", []kt.Msg{
			announce(kt.Alice, "i1", "a"), op(kt.Alice, "i1", 0), commit(true, IE), commit(false, IE),
		}},
		{"nothing after the commitment", "", []kt.Msg{
			commit(false, ""), with(announce(kt.Alice, "i1", "a"), IE), with(crash(kt.Coord, kt.Bob), IE), commit(false, IE),
		}},

		// Unknown message types.
		{"unknown type", "", []kt.Msg{
			raw(kt.Alice, "Lock", "{}", IE), raw(kt.Coord, "Lock", "{}", IE), raw(kt.Outsider, "Lock", "{}", FB),
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sess := kt.Session(ModeName, tc.rules, roster...)
			kt.Play(t, Mode, sess, kt.Start(t, Mode, sess), tc.script)
		})
	}
}

func TestView(t *testing.T) {
	sess := kt.Session(ModeName, "", roster...)
	state := kt.Start(t, Mode, sess)
	kt.Subset(t, kt.View(t, Mode, sess, state), `{"phase":"Idle","arbiter":"agent://coordinator","operations":0,
		"intents":[],"conflicts":[],"crashed":[],
		"counters":{"intents_announced":0,"intents_withdrawn":0,"intents_revoked":0,"intents_claimed":0,
		"conflicts_opened":0,"conflicts_resolved":0,"conflicts_dissolved":0,"conflicts_escalated":0},
		"eligible":{"positive":false,"negative":true},"commitment":null}`)

	state = kt.Play(t, Mode, sess, state, []kt.Msg{
		announce(kt.Alice, "i1", "src/b", "src/a"), op(kt.Alice, "i1", 0), announce(kt.Bob, "i2", "src"),
	})
	kt.Subset(t, kt.View(t, Mode, sess, state), `{"phase":"Conflicted","operations":1,"intents":[
		{"intent_id":"i1","serial":1,"owner":"agent://alice","scope":["src/a","src/b"],"description":"work on i1",
		 "required_watermark":1,"operations":1,"conflicts":[1],"claimable":false,"claimed_from":""},
		{"intent_id":"i2","serial":2,"owner":"agent://bob","scope":["src"],"required_watermark":1,"operations":0,"conflicts":[1]}],
		"conflicts":[{"conflict_id":1,"intents":["i1","i2"],"escalated":false,"escalation_reason":""}],
		"eligible":{"positive":false,"negative":false}}`)

	state = kt.Play(t, Mode, sess, state, []kt.Msg{escalate(kt.Coord, 1), crash(kt.Coord, kt.Alice)})
	kt.Subset(t, kt.View(t, Mode, sess, state), `{"phase":"Escalated","crashed":["agent://alice"],
		"intents":[{"intent_id":"i1","claimable":true},{"intent_id":"i2","claimable":false}],
		"conflicts":[{"conflict_id":1,"escalated":true,"escalation_reason":"needs a human"}],
		"eligible":{"positive":false,"negative":true}}`)

	state = kt.Play(t, Mode, sess, state, []kt.Msg{claim(kt.Carol, "i1"), resolve(kt.Coord, 1, "i1"), op(kt.Carol, "i1", 1)})
	kt.Subset(t, kt.View(t, Mode, sess, state), `{"phase":"Active","operations":2,"conflicts":[],
		"intents":[{"intent_id":"i1","owner":"agent://carol","claimed_from":"agent://alice","claimable":false,
		 "required_watermark":2,"operations":2,"conflicts":[]}],
		"counters":{"intents_announced":2,"intents_revoked":1,"intents_claimed":1,"conflicts_opened":1,
		 "conflicts_resolved":1,"conflicts_escalated":1}}`)

	state = kt.Play(t, Mode, sess, state, []kt.Msg{withdraw(kt.Carol, "i1")})
	kt.Subset(t, kt.View(t, Mode, sess, state), `{"phase":"Idle","intents":[],"counters":{"intents_withdrawn":1},
		"eligible":{"positive":true,"negative":true}}`)
	state = kt.Play(t, Mode, sess, state, []kt.Msg{commit(true, "")})
	kt.Subset(t, kt.View(t, Mode, sess, state), `{"phase":"Committed","commitment":{"outcome_positive":true}}`)
}

func TestStateRoundTrip(t *testing.T) {
	for name, tc := range map[string]struct {
		s *State
		c *guest.CommitmentRecord
	}{
		"initial": {s: &State{Arbiter: kt.Coord}},
		"busy": {s: &State{
			Arbiter: kt.Alice, Ops: 300,
			Counters: Counters{Announced: 9, Withdrawn: 4, Revoked: 2, Claimed: 1, ConflictsOpened: 5, ConflictsResolved: 2, ConflictsDissolved: 1, Escalated: 1},
			Crashed:  []string{kt.Dave, kt.Bob},
			Intents: []Intent{
				{ID: "i1", Serial: 3, Owner: kt.Carol, Scope: []string{"a", "b/c"}, Description: "✓", Required: 290, Ops: 7, ClaimedFrom: kt.Bob},
				{ID: "i2", Serial: 9, Owner: kt.Alice, Scope: []string{"b"}},
			},
			Conflicts: []Conflict{{ID: 5, Intents: []string{"i1", "i2"}, Escalated: true, Reason: "r"}, {ID: 4, Intents: []string{"i2", "i1"}}},
		}},
		"committed": {s: &State{Arbiter: kt.Coord, Ops: 1}, c: &guest.CommitmentRecord{CommitmentID: "c", OutcomePositive: true}},
	} {
		t.Run(name, func(t *testing.T) {
			b := Mode.Encode(tc.s, tc.c)
			got, c, err := Mode.Decode(b)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.s) || !reflect.DeepEqual(c, tc.c) {
				t.Fatalf("round trip:\n got %+v %+v\nwant %+v %+v", got, c, tc.s, tc.c)
			}
			if string(Mode.Encode(got, c)) != string(b) {
				t.Fatal("re-encoding differs")
			}
		})
	}
	// A conflict record with other than two intents is corrupt.
	bad := Mode.Encode(&State{Arbiter: kt.Coord}, nil)
	bad = guest.AppendRecord(bad, 7, guest.AppendStrings(guest.AppendVarint(nil, 1, 1), 2, []string{"i1"}))
	if _, _, err := Mode.Decode(bad); err == nil {
		t.Fatal("a conflict with one intent decoded")
	}
	kt.CorruptState(t, Mode, kt.Session(ModeName, "", roster...), MsgAnnounceIntent)
}

func TestDeterminism(t *testing.T) {
	sess := kt.Session(ModeName, "", roster...)
	kt.Deterministic(t, Mode, sess, []kt.Msg{
		announce(kt.Alice, "i1", "src"), announce(kt.Bob, "i2", "src/x", "docs"), announce(kt.Carol, "i3", "src/y"),
		escalate(kt.Coord, 2), resolve(kt.Coord, 1, "i2"), with(op(kt.Dave, "i3", 0), FB), op(kt.Carol, "i3", 0),
		crash(kt.Coord, kt.Bob), claim(kt.Dave, "i2"), op(kt.Dave, "i2", 1), withdraw(kt.Dave, "i2"), withdraw(kt.Carol, "i3"),
		commit(true, ""),
	}, kt.Reencode(Mode))
}

package orchestrated

import (
	"reflect"
	"testing"

	"github.com/concord-macp/concord/abi/guest"
	kt "github.com/concord-macp/concord/abi/guest/guesttest"
	"github.com/concord-macp/concord/macperr"
)

const (
	MsgSessionStart = "SessionStart"
	MsgAssign       = "Assign"
	MsgReport       = "Report"
	MsgRevoke       = "Revoke"
	MsgCommitment   = "Commitment"
)

const (
	FB = macperr.Forbidden
	IE = macperr.InvalidEnvelope
)

func assign(id, assignee string) kt.Msg {
	return kt.Msg{Sender: kt.Coord, Type: MsgAssign, Payload: map[string]any{"item_id": id, "assignee": assignee, "description": "do " + id}}
}

func report(sender, id, status string) kt.Msg {
	return kt.Msg{Sender: sender, Type: MsgReport, Payload: map[string]any{"item_id": id, "status": status, "detail": status + " " + id}}
}

func revoke(sender, id string) kt.Msg {
	return kt.Msg{Sender: sender, Type: MsgRevoke, Payload: map[string]any{"item_id": id, "reason": "not needed"}}
}

func with(m kt.Msg, code macperr.Code) kt.Msg { m.Code = code; return m }

func commit(positive bool, code macperr.Code) kt.Msg { return kt.Commitment(kt.Coord, positive, code) }

func TestDescribe(t *testing.T) {
	d := Mode.Describe()
	if d.Mode != ModeName || d.ModeVersion != "1.0.0" || d.ParticipantModel != "orchestrated" ||
		!reflect.DeepEqual(d.TerminalMessageTypes, []string{"Commitment"}) || d.MessageTypes[0] != "SessionStart" {
		t.Fatalf("descriptor %+v", d)
	}
}

func TestSessionStart(t *testing.T) {
	if res := kt.StartResult(Mode, kt.Session(ModeName, "")); res.Accepted || res.Code != IE {
		t.Fatalf("no participants: %+v", res)
	}
	sess := kt.Session(ModeName, `{"anything":"goes"}`, kt.Alice)
	state := kt.Start(t, Mode, sess)
	kt.Play(t, Mode, sess, state, []kt.Msg{{Sender: kt.Coord, Type: MsgSessionStart, Code: IE}})
}

func TestRules(t *testing.T) {
	for _, tc := range []struct {
		name   string
		script []kt.Msg
	}{
		{"assign, progress, done", []kt.Msg{
			assign("i1", kt.Alice), report(kt.Alice, "i1", "progress"), report(kt.Alice, "i1", "progress"), report(kt.Alice, "i1", "done"),
		}},
		{"assign from a participant is forbidden", []kt.Msg{
			{Sender: kt.Alice, Type: MsgAssign, Payload: map[string]any{"item_id": "i", "assignee": kt.Bob, "description": "d"}, Code: FB},
		}},
		{"assign from an outsider is forbidden even malformed", []kt.Msg{{Sender: kt.Outsider, Type: MsgAssign, Payload: "x", Code: FB}}},
		{"assign malformed", []kt.Msg{{Sender: kt.Coord, Type: MsgAssign, Payload: "x", Code: IE}}},
		{"assign empty payload", []kt.Msg{{Sender: kt.Coord, Type: MsgAssign, Code: IE}}},
		{"assign unknown key", []kt.Msg{{Sender: kt.Coord, Type: MsgAssign, Payload: `{"item_id":"i","assignee":"agent://alice","description":"d","due":1}`, Code: IE}}},
		{"assign blank id", []kt.Msg{with(assign(" ", kt.Alice), IE)}},
		{"assign blank description", []kt.Msg{{Sender: kt.Coord, Type: MsgAssign, Payload: map[string]any{"item_id": "i", "assignee": kt.Alice, "description": ""}, Code: IE}}},
		{"assign to a non-participant", []kt.Msg{with(assign("i1", kt.Outsider), IE)}},
		{"assign to the initiator outside the roster", []kt.Msg{with(assign("i1", kt.Coord), IE)}},
		{"assign a reused id", []kt.Msg{assign("i1", kt.Alice), with(assign("i1", kt.Bob), IE)}},
		{"reused id after close", []kt.Msg{assign("i1", kt.Alice), report(kt.Alice, "i1", "done"), with(assign("i1", kt.Bob), IE)}},
		{"report by another participant is forbidden", []kt.Msg{assign("i1", kt.Alice), with(report(kt.Bob, "i1", "done"), FB)}},
		{"report by an outsider is forbidden", []kt.Msg{assign("i1", kt.Alice), with(report(kt.Outsider, "i1", "done"), FB)}},
		{"report by the orchestrator outside the roster is forbidden", []kt.Msg{assign("i1", kt.Alice), with(report(kt.Coord, "i1", "done"), FB)}},
		{"report malformed", []kt.Msg{assign("i1", kt.Alice), {Sender: kt.Alice, Type: MsgReport, Payload: "[]", Code: IE}}},
		{"report unknown status", []kt.Msg{assign("i1", kt.Alice), with(report(kt.Alice, "i1", "DONE"), IE)}},
		{"report unknown item", []kt.Msg{assign("i1", kt.Alice), with(report(kt.Alice, "i2", "done"), IE)}},
		{"report on a closed item", []kt.Msg{
			assign("i1", kt.Alice), report(kt.Alice, "i1", "failed"), with(report(kt.Alice, "i1", "progress"), IE),
		}},
		{"report on a revoked item", []kt.Msg{
			assign("i1", kt.Alice), revoke(kt.Coord, "i1"), with(report(kt.Alice, "i1", "done"), IE),
		}},
		{"revoke by a participant is forbidden", []kt.Msg{assign("i1", kt.Alice), with(revoke(kt.Alice, "i1"), FB)}},
		{"revoke unknown", []kt.Msg{with(revoke(kt.Coord, "i1"), IE)}},
		{"revoke closed", []kt.Msg{assign("i1", kt.Alice), report(kt.Alice, "i1", "done"), with(revoke(kt.Coord, "i1"), IE)}},
		{"revoke malformed", []kt.Msg{{Sender: kt.Coord, Type: MsgRevoke, Payload: `{"item_id":1}`, Code: IE}}},
		{"commitment before any work", []kt.Msg{commit(false, IE)}},
		{"commitment with open items", []kt.Msg{
			assign("i1", kt.Alice), assign("i2", kt.Bob), report(kt.Alice, "i1", "done"), commit(true, IE), commit(false, IE),
		}},
		{"complete with a done item: either outcome", []kt.Msg{
			assign("i1", kt.Alice), assign("i2", kt.Bob), report(kt.Alice, "i1", "done"), report(kt.Bob, "i2", "failed"), commit(true, ""),
		}},
		{"complete negative", []kt.Msg{assign("i1", kt.Alice), report(kt.Alice, "i1", "done"), commit(false, "")}},
		{"nothing done: only negative", []kt.Msg{
			assign("i1", kt.Alice), report(kt.Alice, "i1", "failed"), assign("i2", kt.Bob), revoke(kt.Coord, "i2"),
			commit(true, IE), commit(false, ""),
		}},
		{"assigning reopens a complete session", []kt.Msg{
			assign("i1", kt.Alice), report(kt.Alice, "i1", "done"), assign("i2", kt.Alice), commit(true, IE),
			report(kt.Alice, "i2", "done"), commit(true, ""),
		}},
		{"nothing after the commitment", []kt.Msg{
			assign("i1", kt.Alice), report(kt.Alice, "i1", "done"), commit(true, ""), with(assign("i2", kt.Alice), IE), commit(true, IE),
		}},
		{"unknown type", []kt.Msg{
			{Sender: kt.Alice, Type: "Complete", Payload: "{}", Code: IE},
			{Sender: kt.Coord, Type: "Complete", Payload: "{}", Code: IE},
			{Sender: kt.Outsider, Type: "Complete", Payload: "{}", Code: FB},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sess := kt.Session(ModeName, "", kt.Alice, kt.Bob)
			kt.Play(t, Mode, sess, kt.Start(t, Mode, sess), tc.script)
		})
	}
}

func TestOrchestratorInTheRosterMayTakeWork(t *testing.T) {
	sess := kt.Session(ModeName, "", kt.Alice, kt.Coord)
	kt.Play(t, Mode, sess, kt.Start(t, Mode, sess), []kt.Msg{
		assign("i", kt.Coord), report(kt.Coord, "i", "done"), commit(true, ""),
	})
}

func TestView(t *testing.T) {
	sess := kt.Session(ModeName, "", kt.Alice, kt.Bob)
	state := kt.Start(t, Mode, sess)
	kt.Subset(t, kt.View(t, Mode, sess, state), `{"phase":"Idle","orchestrator":"agent://coordinator","items":[],
		"counts":{"open":0,"done":0,"failed":0,"revoked":0},"eligible":{"positive":false,"negative":false},"commitment":null}`)
	state = kt.Play(t, Mode, sess, state, []kt.Msg{assign("i1", kt.Alice), assign("i2", kt.Bob), report(kt.Alice, "i1", "progress")})
	kt.Subset(t, kt.View(t, Mode, sess, state), `{"phase":"Working","items":[
		{"item_id":"i1","assignee":"agent://alice","description":"do i1","status":"open","reports":1,"detail":"progress i1"},
		{"item_id":"i2","assignee":"agent://bob","description":"do i2","status":"open","reports":0,"detail":""}],
		"counts":{"open":2}}`)
	state = kt.Play(t, Mode, sess, state, []kt.Msg{report(kt.Alice, "i1", "done"), revoke(kt.Coord, "i2")})
	kt.Subset(t, kt.View(t, Mode, sess, state), `{"phase":"Complete","counts":{"open":0,"done":1,"revoked":1},
		"items":[{"status":"done"},{"status":"revoked","detail":"not needed"}],"eligible":{"positive":true,"negative":true}}`)
	state = kt.Play(t, Mode, sess, state, []kt.Msg{commit(true, "")})
	kt.Subset(t, kt.View(t, Mode, sess, state), `{"phase":"Committed","commitment":{"commitment_id":"c-1","outcome_positive":true}}`)
}

func TestStateRoundTrip(t *testing.T) {
	for name, tc := range map[string]struct {
		s *State
		c *guest.CommitmentRecord
	}{
		"initial": {s: &State{}},
		"items": {s: &State{Items: []Item{
			{ID: "i1", Assignee: kt.Alice, Description: "d ✓", Status: ItemDone, Reports: 3, Detail: "ok"},
			{ID: "i2", Assignee: kt.Bob, Description: "x", Status: ItemOpen},
		}}},
		"committed": {s: &State{Items: []Item{{ID: "i", Status: ItemRevoked}}}, c: &guest.CommitmentRecord{CommitmentID: "c", OutcomePositive: true}},
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
	kt.CorruptState(t, Mode, kt.Session(ModeName, "", kt.Alice), MsgReport)
}

func TestDeterminism(t *testing.T) {
	sess := kt.Session(ModeName, "", kt.Alice, kt.Bob)
	kt.Deterministic(t, Mode, sess, []kt.Msg{
		assign("i1", kt.Alice), assign("i2", kt.Bob), with(report(kt.Bob, "i1", "done"), FB),
		report(kt.Alice, "i1", "progress"), report(kt.Alice, "i1", "done"), revoke(kt.Coord, "i2"), commit(true, ""),
	}, kt.Reencode(Mode))
}

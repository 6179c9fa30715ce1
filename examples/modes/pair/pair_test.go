package pair

import (
	"reflect"
	"testing"

	"github.com/concord-macp/concord/abi/guest"
	kt "github.com/concord-macp/concord/abi/guest/guesttest"
	"github.com/concord-macp/concord/macperr"
)

const (
	MsgSessionStart = "SessionStart"
	MsgDrive        = "Drive"
	MsgReview       = "Review"
	MsgCommitment   = "Commitment"
)

const (
	FB = macperr.Forbidden
	IE = macperr.InvalidEnvelope
)

func drive(sender, id string) kt.Msg {
	return kt.Msg{Sender: sender, Type: MsgDrive, Payload: map[string]any{"change_id": id, "content": "diff " + id}}
}

func review(sender, id string, approved bool) kt.Msg {
	return kt.Msg{Sender: sender, Type: MsgReview, Payload: map[string]any{"change_id": id, "approved": approved, "comment": "seen"}}
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
		participants []string
		code         macperr.Code
	}{
		{nil, IE},
		{[]string{kt.Alice}, IE},
		{[]string{kt.Alice, kt.Bob}, ""},
		{[]string{kt.Alice, kt.Bob, kt.Carol}, IE},
	} {
		res := kt.StartResult(Mode, kt.Session(ModeName, "", tc.participants...))
		if res.Accepted != (tc.code == "") || res.Code != tc.code {
			t.Errorf("%v: accepted=%v %s, want %q", tc.participants, res.Accepted, res.Code, tc.code)
		}
	}
	sess := kt.Session(ModeName, "", kt.Alice, kt.Bob)
	kt.Play(t, Mode, sess, kt.Start(t, Mode, sess), []kt.Msg{{Sender: kt.Coord, Type: MsgSessionStart, Code: IE}})
}

func TestRules(t *testing.T) {
	for _, tc := range []struct {
		name   string
		script []kt.Msg
	}{
		{"drive, review, swap, drive", []kt.Msg{
			drive(kt.Alice, "c1"), review(kt.Bob, "c1", true), drive(kt.Bob, "c2"), review(kt.Alice, "c2", false), drive(kt.Alice, "c3"),
		}},
		{"navigator may not drive", []kt.Msg{with(drive(kt.Bob, "c1"), FB)}},
		{"driver may not review", []kt.Msg{drive(kt.Alice, "c1"), with(review(kt.Alice, "c1", true), FB)}},
		{"roles swap after the review", []kt.Msg{
			drive(kt.Alice, "c1"), review(kt.Bob, "c1", false), with(drive(kt.Alice, "c2"), FB), with(review(kt.Bob, "c1", true), FB),
		}},
		{"outsider", []kt.Msg{with(drive(kt.Outsider, "c"), FB), {Sender: kt.Outsider, Type: MsgReview, Payload: "junk", Code: FB}}},
		{"initiator outside the pair", []kt.Msg{with(drive(kt.Coord, "c"), FB)}},
		{"navigator malformed is still forbidden", []kt.Msg{{Sender: kt.Bob, Type: MsgDrive, Payload: "junk", Code: FB}}},
		{"drive malformed", []kt.Msg{{Sender: kt.Alice, Type: MsgDrive, Payload: "junk", Code: IE}}},
		{"drive empty payload", []kt.Msg{{Sender: kt.Alice, Type: MsgDrive, Code: IE}}},
		{"drive unknown key", []kt.Msg{{Sender: kt.Alice, Type: MsgDrive, Payload: `{"change_id":"c","content":"x","approved":true}`, Code: IE}}},
		{"drive blank id", []kt.Msg{with(drive(kt.Alice, ""), IE)}},
		{"drive blank content", []kt.Msg{{Sender: kt.Alice, Type: MsgDrive, Payload: `{"change_id":"c","content":" "}`, Code: IE}}},
		{"drive while a change awaits review", []kt.Msg{drive(kt.Alice, "c1"), with(drive(kt.Alice, "c2"), IE)}},
		{"drive reuses an id", []kt.Msg{drive(kt.Alice, "c1"), review(kt.Bob, "c1", true), with(drive(kt.Bob, "c1"), IE)}},
		{"review with nothing pending", []kt.Msg{with(review(kt.Bob, "c1", true), IE)}},
		{"review of another change", []kt.Msg{drive(kt.Alice, "c1"), with(review(kt.Bob, "c9", true), IE)}},
		{"review without approved", []kt.Msg{drive(kt.Alice, "c1"), {Sender: kt.Bob, Type: MsgReview, Payload: `{"change_id":"c1"}`, Code: IE}}},
		{"review approved not a bool", []kt.Msg{drive(kt.Alice, "c1"), {Sender: kt.Bob, Type: MsgReview, Payload: `{"change_id":"c1","approved":"yes"}`, Code: IE}}},
		{"commitment before any review", []kt.Msg{commit(true, IE), commit(false, IE)}},
		{"commitment while a change awaits review", []kt.Msg{
			drive(kt.Alice, "c1"), review(kt.Bob, "c1", true), drive(kt.Bob, "c2"), commit(true, IE), commit(false, IE),
		}},
		{"approved: positive only", []kt.Msg{drive(kt.Alice, "c1"), review(kt.Bob, "c1", true), commit(false, IE), commit(true, "")}},
		{"rejected: negative only", []kt.Msg{drive(kt.Alice, "c1"), review(kt.Bob, "c1", false), commit(true, IE), commit(false, "")}},
		{"the last review decides", []kt.Msg{
			drive(kt.Alice, "c1"), review(kt.Bob, "c1", false), drive(kt.Bob, "c2"), review(kt.Alice, "c2", true), commit(true, ""),
		}},
		{"nothing after the commitment", []kt.Msg{
			drive(kt.Alice, "c1"), review(kt.Bob, "c1", true), commit(true, ""), with(drive(kt.Bob, "c2"), IE),
		}},
		{"unknown type", []kt.Msg{
			{Sender: kt.Alice, Type: "Swap", Payload: "{}", Code: IE},
			{Sender: kt.Outsider, Type: "Swap", Payload: "{}", Code: FB},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sess := kt.Session(ModeName, "", kt.Alice, kt.Bob)
			kt.Play(t, Mode, sess, kt.Start(t, Mode, sess), tc.script)
		})
	}
}

func TestView(t *testing.T) {
	sess := kt.Session(ModeName, "", kt.Alice, kt.Bob)
	state := kt.Start(t, Mode, sess)
	kt.Subset(t, kt.View(t, Mode, sess, state), `{"phase":"Driving","driver":"agent://alice","navigator":"agent://bob",
		"pending_change":null,"swaps":0,"changes":[],"eligible":{"positive":false,"negative":false},"commitment":null}`)
	state = kt.Play(t, Mode, sess, state, []kt.Msg{drive(kt.Alice, "c1")})
	kt.Subset(t, kt.View(t, Mode, sess, state), `{"phase":"Reviewing","driver":"agent://alice","pending_change":"c1",
		"changes":[{"change_id":"c1","driver":"agent://alice","content":"diff c1","status":"pending","comment":""}]}`)
	state = kt.Play(t, Mode, sess, state, []kt.Msg{review(kt.Bob, "c1", false)})
	kt.Subset(t, kt.View(t, Mode, sess, state), `{"phase":"Driving","driver":"agent://bob","navigator":"agent://alice",
		"pending_change":null,"swaps":1,"changes":[{"status":"rejected","comment":"seen"}],"eligible":{"positive":false,"negative":true}}`)
	state = kt.Play(t, Mode, sess, state, []kt.Msg{commit(false, "")})
	kt.Subset(t, kt.View(t, Mode, sess, state), `{"phase":"Committed","commitment":{"outcome_positive":false,"action":"ext.failed"}}`)
}

func TestStateRoundTrip(t *testing.T) {
	for name, tc := range map[string]struct {
		s *State
		c *guest.CommitmentRecord
	}{
		"initial": {s: &State{}},
		"changes": {s: &State{Changes: []Change{
			{ID: "c1", Driver: kt.Alice, Content: "x ✓", Reviewed: true, Approved: true, Comment: "ok"},
			{ID: "c2", Driver: kt.Bob, Content: "y"},
		}}},
		"committed": {s: &State{Changes: []Change{{ID: "c", Reviewed: true}}}, c: &guest.CommitmentRecord{CommitmentID: "c"}},
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
	kt.CorruptState(t, Mode, kt.Session(ModeName, "", kt.Alice, kt.Bob), MsgDrive)
}

func TestDeterminism(t *testing.T) {
	sess := kt.Session(ModeName, "", kt.Alice, kt.Bob)
	kt.Deterministic(t, Mode, sess, []kt.Msg{
		drive(kt.Alice, "c1"), with(drive(kt.Bob, "x"), FB), review(kt.Bob, "c1", false),
		drive(kt.Bob, "c2"), review(kt.Alice, "c2", true), commit(true, ""),
	}, kt.Reencode(Mode))
}

package broadcast

import (
	"reflect"
	"testing"

	"github.com/concord-macp/concord/abi/guest"
	kt "github.com/concord-macp/concord/abi/guest/guesttest"
	"github.com/concord-macp/concord/macperr"
)

const (
	MsgSessionStart = "SessionStart"
	MsgAnnounce     = "Announce"
	MsgAcknowledge  = "Acknowledge"
	MsgCommitment   = "Commitment"
)

const (
	FB = macperr.Forbidden
	IE = macperr.InvalidEnvelope
)

func announce(sender string) kt.Msg {
	return kt.Msg{Sender: sender, Type: MsgAnnounce, Payload: map[string]any{"announcement_id": "a1", "content": "deploy at noon"}}
}

func ack(sender string) kt.Msg {
	return kt.Msg{Sender: sender, Type: MsgAcknowledge, Payload: map[string]any{"announcement_id": "a1", "note": "ok " + sender}}
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
		{[]string{kt.Coord}, IE},
		{[]string{kt.Alice}, ""},
		{[]string{kt.Coord, kt.Alice}, ""},
	} {
		res := kt.StartResult(Mode, kt.Session(ModeName, "", tc.participants...))
		if res.Accepted != (tc.code == "") || res.Code != tc.code {
			t.Errorf("%v: accepted=%v %s, want %q", tc.participants, res.Accepted, res.Code, tc.code)
		}
	}
	sess := kt.Session(ModeName, "", kt.Alice)
	kt.Play(t, Mode, sess, kt.Start(t, Mode, sess), []kt.Msg{{Sender: kt.Coord, Type: MsgSessionStart, Code: IE}})
}

func TestRules(t *testing.T) {
	for _, tc := range []struct {
		name   string
		script []kt.Msg
	}{
		{"announce and all acknowledge", []kt.Msg{announce(kt.Coord), ack(kt.Bob), ack(kt.Alice), ack(kt.Carol), commit(true, "")}},
		{"announce by a participant is forbidden", []kt.Msg{with(announce(kt.Alice), FB)}},
		{"announce by an outsider is forbidden even malformed", []kt.Msg{{Sender: kt.Outsider, Type: MsgAnnounce, Payload: "x", Code: FB}}},
		{"announce malformed", []kt.Msg{{Sender: kt.Coord, Type: MsgAnnounce, Payload: "x", Code: IE}}},
		{"announce empty payload", []kt.Msg{{Sender: kt.Coord, Type: MsgAnnounce, Code: IE}}},
		{"announce unknown key", []kt.Msg{{Sender: kt.Coord, Type: MsgAnnounce, Payload: `{"announcement_id":"a","content":"c","to":[]}`, Code: IE}}},
		{"announce blank id", []kt.Msg{{Sender: kt.Coord, Type: MsgAnnounce, Payload: `{"announcement_id":" ","content":"c"}`, Code: IE}}},
		{"announce blank content", []kt.Msg{{Sender: kt.Coord, Type: MsgAnnounce, Payload: `{"announcement_id":"a"}`, Code: IE}}},
		{"second announce", []kt.Msg{announce(kt.Coord), with(announce(kt.Coord), IE)}},
		{"ack before the announcement", []kt.Msg{with(ack(kt.Alice), IE)}},
		{"ack by an outsider", []kt.Msg{announce(kt.Coord), with(ack(kt.Outsider), FB)}},
		{"ack by the announcer outside the roster", []kt.Msg{announce(kt.Coord), with(ack(kt.Coord), FB)}},
		{"ack of another announcement", []kt.Msg{announce(kt.Coord), {Sender: kt.Alice, Type: MsgAcknowledge, Payload: `{"announcement_id":"a2"}`, Code: IE}}},
		{"ack malformed", []kt.Msg{announce(kt.Coord), {Sender: kt.Alice, Type: MsgAcknowledge, Payload: `{"announcement_id":1}`, Code: IE}}},
		{"ack without note", []kt.Msg{announce(kt.Coord), {Sender: kt.Alice, Type: MsgAcknowledge, Payload: `{"announcement_id":"a1"}`}}},
		{"duplicate ack", []kt.Msg{announce(kt.Coord), ack(kt.Alice), with(ack(kt.Alice), IE)}},
		{"commitment before the announcement", []kt.Msg{commit(true, IE)}},
		{"commitment with pending recipients", []kt.Msg{announce(kt.Coord), ack(kt.Alice), ack(kt.Bob), commit(true, IE), commit(false, IE)}},
		{"negative once complete", []kt.Msg{announce(kt.Coord), ack(kt.Alice), ack(kt.Bob), ack(kt.Carol), commit(false, "")}},
		{"nothing after complete but the commitment", []kt.Msg{
			announce(kt.Coord), ack(kt.Alice), ack(kt.Bob), ack(kt.Carol), with(ack(kt.Carol), IE), with(announce(kt.Coord), IE), commit(true, ""),
			with(ack(kt.Alice), IE),
		}},
		{"unknown type", []kt.Msg{
			{Sender: kt.Alice, Type: "Nack", Payload: "{}", Code: IE},
			{Sender: kt.Outsider, Type: "Nack", Payload: "{}", Code: FB},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sess := kt.Session(ModeName, "", kt.Alice, kt.Bob, kt.Carol)
			kt.Play(t, Mode, sess, kt.Start(t, Mode, sess), tc.script)
		})
	}
}

func TestAnnouncerInTheRosterIsNotARecipient(t *testing.T) {
	sess := kt.Session(ModeName, "", kt.Alice, kt.Coord)
	state := kt.Play(t, Mode, sess, kt.Start(t, Mode, sess), []kt.Msg{
		announce(kt.Coord), with(ack(kt.Coord), FB), ack(kt.Alice), commit(true, ""),
	})
	kt.Subset(t, kt.View(t, Mode, sess, state), `{"recipients":["agent://alice"],"phase":"Committed"}`)
}

func TestView(t *testing.T) {
	sess := kt.Session(ModeName, "", kt.Alice, kt.Bob)
	state := kt.Start(t, Mode, sess)
	kt.Subset(t, kt.View(t, Mode, sess, state), `{"phase":"Pending","announcer":"agent://coordinator","announcement":null,
		"recipients":["agent://alice","agent://bob"],"acknowledged":{},"ack_order":[],"pending":["agent://alice","agent://bob"],
		"eligible":{"positive":false,"negative":false},"commitment":null}`)
	state = kt.Play(t, Mode, sess, state, []kt.Msg{announce(kt.Coord), ack(kt.Bob)})
	kt.Subset(t, kt.View(t, Mode, sess, state), `{"phase":"Announced","announcement":{"announcement_id":"a1","content":"deploy at noon"},
		"acknowledged":{"agent://bob":"ok agent://bob"},"ack_order":["agent://bob"],"pending":["agent://alice"]}`)
	state = kt.Play(t, Mode, sess, state, []kt.Msg{ack(kt.Alice)})
	kt.Subset(t, kt.View(t, Mode, sess, state), `{"phase":"Acknowledged","pending":[],"eligible":{"positive":true,"negative":true}}`)
}

func TestStateRoundTrip(t *testing.T) {
	for name, tc := range map[string]struct {
		s *State
		c *guest.CommitmentRecord
	}{
		"initial":   {s: &State{}},
		"announced": {s: &State{Announcement: &Announcement{ID: "a", Content: "c ✓"}, Acks: []Ack{{Recipient: kt.Bob, Note: "n"}, {Recipient: kt.Alice}}}},
		"committed": {s: &State{Announcement: &Announcement{ID: "a"}}, c: &guest.CommitmentRecord{CommitmentID: "c", OutcomePositive: true}},
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
	kt.CorruptState(t, Mode, kt.Session(ModeName, "", kt.Alice), MsgAcknowledge)
}

func TestDeterminism(t *testing.T) {
	sess := kt.Session(ModeName, "", kt.Alice, kt.Bob)
	kt.Deterministic(t, Mode, sess, []kt.Msg{
		announce(kt.Coord), ack(kt.Bob), with(ack(kt.Bob), IE), ack(kt.Alice), commit(false, ""),
	}, kt.Reencode(Mode))
}

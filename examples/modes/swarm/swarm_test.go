package swarm

import (
	"reflect"
	"testing"

	"github.com/concord-macp/concord/abi/guest"
	kt "github.com/concord-macp/concord/abi/guest/guesttest"
	"github.com/concord-macp/concord/macperr"
)

const (
	MsgSessionStart = "SessionStart"
	MsgContribute   = "Contribute"
	MsgEndorse      = "Endorse"
	MsgCommitment   = "Commitment"
)

const (
	FB = macperr.Forbidden
	IE = macperr.InvalidEnvelope
)

func contribute(sender, id string) kt.Msg {
	return kt.Msg{Sender: sender, Type: MsgContribute, Payload: map[string]any{"contribution_id": id, "content": "idea " + id}}
}

func endorse(sender, id string) kt.Msg {
	return kt.Msg{Sender: sender, Type: MsgEndorse, Payload: map[string]any{"contribution_id": id}}
}

func with(m kt.Msg, code macperr.Code) kt.Msg { m.Code = code; return m }

func commit(positive bool, code macperr.Code) kt.Msg { return kt.Commitment(kt.Coord, positive, code) }

var four = []string{kt.Alice, kt.Bob, kt.Carol, kt.Dave}

func TestDescribe(t *testing.T) {
	d := Mode.Describe()
	if d.Mode != ModeName || d.ModeVersion != "1.0.0" || d.ParticipantModel != "quorum" ||
		!reflect.DeepEqual(d.TerminalMessageTypes, []string{"Commitment"}) || d.MessageTypes[0] != "SessionStart" {
		t.Fatalf("descriptor %+v", d)
	}
}

func TestSessionStart(t *testing.T) {
	for _, tc := range []struct {
		name         string
		rules        string
		participants []string
		code         macperr.Code
		quorum       uint64
	}{
		{"majority of 4", "", four, "", 3},
		{"majority of 3", "", four[:3], "", 2},
		{"majority of 1", "", four[:1], "", 1},
		{"quorum", `{"swarm":{"quorum":4}}`, four, "", 4},
		{"quorum 1", `{"swarm":{"quorum":1}}`, four, "", 1},
		{"percent rounds up", `{"swarm":{"quorum_percent":60}}`, four, "", 3},
		{"percent 100", `{"swarm":{"quorum_percent":100}}`, four, "", 4},
		{"percent 1", `{"swarm":{"quorum_percent":1}}`, four, "", 1},
		{"other keys ignored", `{"commitment":{"authority":"any_participant"},"voting":{}}`, four, "", 3},
		{"no participants", "", nil, IE, 0},
		{"quorum 0", `{"swarm":{"quorum":0}}`, four, IE, 0},
		{"quorum above N", `{"swarm":{"quorum":5}}`, four, IE, 0},
		{"percent 0", `{"swarm":{"quorum_percent":0}}`, four, IE, 0},
		{"percent above 100", `{"swarm":{"quorum_percent":101}}`, four, IE, 0},
		{"both", `{"swarm":{"quorum":2,"quorum_percent":50}}`, four, IE, 0},
		{"unknown key", `{"swarm":{"threshold":2}}`, four, IE, 0},
		{"wrong type", `{"swarm":{"quorum":"2"}}`, four, IE, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res := kt.StartResult(Mode, kt.Session(ModeName, tc.rules, tc.participants...))
			if tc.code != "" {
				if res.Accepted || res.Code != tc.code {
					t.Fatalf("accepted=%v %s (%s), want %s", res.Accepted, res.Code, res.Message, tc.code)
				}
				return
			}
			if !res.Accepted {
				t.Fatalf("rejected %s %s", res.Code, res.Message)
			}
			if s, _, err := Mode.Decode(res.State); err != nil || s.Quorum != tc.quorum {
				t.Fatalf("state %+v %v, want quorum %d", s, err, tc.quorum)
			}
		})
	}
	sess := kt.Session(ModeName, "", kt.Alice)
	kt.Play(t, Mode, sess, kt.Start(t, Mode, sess), []kt.Msg{{Sender: kt.Coord, Type: MsgSessionStart, Code: IE}})
}

func TestRules(t *testing.T) {
	for _, tc := range []struct {
		name   string
		rules  string
		script []kt.Msg
	}{
		{"converge on a majority", "", []kt.Msg{
			contribute(kt.Alice, "x"), contribute(kt.Bob, "y"), endorse(kt.Alice, "y"), endorse(kt.Bob, "y"),
			commit(true, IE), endorse(kt.Carol, "y"), commit(false, IE), commit(true, ""),
		}},
		{"anyone contributes, several times", "", []kt.Msg{
			contribute(kt.Alice, "x"), contribute(kt.Alice, "x2"), contribute(kt.Dave, "z"),
		}},
		{"outsider contribute", "", []kt.Msg{with(contribute(kt.Outsider, "x"), FB)}},
		{"outsider endorse even malformed", "", []kt.Msg{{Sender: kt.Outsider, Type: MsgEndorse, Payload: "?", Code: FB}}},
		{"initiator outside the roster", "", []kt.Msg{with(contribute(kt.Coord, "x"), FB), contribute(kt.Alice, "x"), with(endorse(kt.Coord, "x"), FB)}},
		{"contribute malformed", "", []kt.Msg{{Sender: kt.Alice, Type: MsgContribute, Payload: "?", Code: IE}}},
		{"contribute empty", "", []kt.Msg{{Sender: kt.Alice, Type: MsgContribute, Code: IE}}},
		{"contribute unknown key", "", []kt.Msg{{Sender: kt.Alice, Type: MsgContribute, Payload: `{"contribution_id":"x","content":"c","score":1}`, Code: IE}}},
		{"contribute blank id", "", []kt.Msg{with(contribute(kt.Alice, " "), IE)}},
		{"contribute blank content", "", []kt.Msg{{Sender: kt.Alice, Type: MsgContribute, Payload: `{"contribution_id":"x","content":""}`, Code: IE}}},
		{"contribute reused id", "", []kt.Msg{contribute(kt.Alice, "x"), with(contribute(kt.Bob, "x"), IE)}},
		{"endorse unknown", "", []kt.Msg{with(endorse(kt.Alice, "x"), IE)}},
		{"endorse malformed", "", []kt.Msg{contribute(kt.Alice, "x"), {Sender: kt.Alice, Type: MsgEndorse, Payload: `{"contribution_id":["x"]}`, Code: IE}}},
		{"endorse own contribution", "", []kt.Msg{contribute(kt.Alice, "x"), endorse(kt.Alice, "x")}},
		{"endorsements are final", "", []kt.Msg{
			contribute(kt.Alice, "x"), contribute(kt.Bob, "y"), endorse(kt.Alice, "x"), with(endorse(kt.Alice, "y"), IE), with(endorse(kt.Alice, "x"), IE),
		}},
		{"nothing after convergence", `{"swarm":{"quorum":2}}`, []kt.Msg{
			contribute(kt.Alice, "x"), endorse(kt.Alice, "x"), endorse(kt.Bob, "x"),
			with(contribute(kt.Carol, "z"), IE), with(endorse(kt.Carol, "x"), IE), with(contribute(kt.Outsider, "o"), FB),
		}},
		{"deadlock: only negative", "", []kt.Msg{
			// quorum 3 of 4: x and y have two each, nobody left.
			contribute(kt.Alice, "x"), contribute(kt.Bob, "y"), endorse(kt.Alice, "x"), endorse(kt.Bob, "y"),
			endorse(kt.Carol, "x"), commit(false, IE), endorse(kt.Dave, "y"),
			with(contribute(kt.Alice, "z"), IE), with(endorse(kt.Dave, "x"), IE), commit(true, IE), commit(false, ""),
		}},
		{"deadlock before everyone endorsed", `{"swarm":{"quorum":4}}`, []kt.Msg{
			contribute(kt.Alice, "x"), contribute(kt.Bob, "y"), endorse(kt.Alice, "x"), endorse(kt.Bob, "y"), commit(false, ""),
		}},
		{"commitment at the start", "", []kt.Msg{commit(true, IE), commit(false, IE)}},
		{"nothing after the commitment", `{"swarm":{"quorum":1}}`, []kt.Msg{
			contribute(kt.Alice, "x"), endorse(kt.Bob, "x"), commit(true, ""), with(contribute(kt.Alice, "y"), IE), commit(true, IE),
		}},
		{"unknown type", "", []kt.Msg{
			{Sender: kt.Alice, Type: "Vote", Payload: "{}", Code: IE},
			{Sender: kt.Outsider, Type: "Vote", Payload: "{}", Code: FB},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sess := kt.Session(ModeName, tc.rules, four...)
			kt.Play(t, Mode, sess, kt.Start(t, Mode, sess), tc.script)
		})
	}
}

func TestView(t *testing.T) {
	sess := kt.Session(ModeName, "", kt.Alice, kt.Bob, kt.Carol)
	state := kt.Start(t, Mode, sess)
	kt.Subset(t, kt.View(t, Mode, sess, state), `{"phase":"Open","quorum":2,"electorate":3,"contributions":[],
		"endorsements":{},"not_endorsed":["agent://alice","agent://bob","agent://carol"],"converged_on":null,
		"eligible":{"positive":false,"negative":false},"commitment":null}`)
	state = kt.Play(t, Mode, sess, state, []kt.Msg{contribute(kt.Bob, "x"), endorse(kt.Carol, "x")})
	kt.Subset(t, kt.View(t, Mode, sess, state), `{"phase":"Open","contributions":[
		{"contribution_id":"x","sender":"agent://bob","content":"idea x","endorsers":["agent://carol"]}],
		"endorsements":{"agent://carol":"x"},"not_endorsed":["agent://alice","agent://bob"]}`)
	state = kt.Play(t, Mode, sess, state, []kt.Msg{endorse(kt.Alice, "x")})
	kt.Subset(t, kt.View(t, Mode, sess, state), `{"phase":"Converged","converged_on":"x","eligible":{"positive":true,"negative":false}}`)
	state = kt.Play(t, Mode, sess, state, []kt.Msg{commit(true, "")})
	kt.Subset(t, kt.View(t, Mode, sess, state), `{"phase":"Committed","eligible":{"positive":false,"negative":false}}`)
}

func TestStateRoundTrip(t *testing.T) {
	for name, tc := range map[string]struct {
		s *State
		c *guest.CommitmentRecord
	}{
		"initial": {s: &State{Quorum: 2}},
		"busy": {s: &State{Quorum: 3,
			Contributions: []Contribution{{ID: "x", Sender: kt.Alice, Content: "c ✓"}, {ID: "y", Sender: kt.Bob, Content: "d"}},
			Endorsements:  []Endorsement{{Endorser: kt.Carol, ContributionID: "y", Comment: "+1"}, {Endorser: kt.Alice, ContributionID: "x"}},
		}},
		"committed": {s: &State{Quorum: 1}, c: &guest.CommitmentRecord{CommitmentID: "c", Sender: kt.Coord}},
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
	kt.CorruptState(t, Mode, kt.Session(ModeName, "", kt.Alice), MsgEndorse)
}

func TestDeterminism(t *testing.T) {
	sess := kt.Session(ModeName, "", four...)
	kt.Deterministic(t, Mode, sess, []kt.Msg{
		contribute(kt.Alice, "x"), contribute(kt.Bob, "y"), endorse(kt.Dave, "y"), with(endorse(kt.Dave, "x"), IE),
		endorse(kt.Alice, "y"), endorse(kt.Carol, "y"), commit(true, ""),
	}, kt.Reencode(Mode))
}

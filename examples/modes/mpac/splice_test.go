package mpac

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/concord-macp/concord/abi/guest"
	kt "github.com/concord-macp/concord/examples/modes/internal/kittest"
	"github.com/concord-macp/concord/macperr"
)

// walker plays random sessions, deciding every envelope both by splicing
// and by the full decode and encode, which must agree.
type walker struct {
	t     *testing.T
	rng   *rand.Rand
	sess  guest.Session
	state []byte
}

var (
	walkSenders = []string{kt.Alice, kt.Bob, kt.Carol, kt.Dave, kt.Coord, kt.Outsider}
	walkIntents = []string{"i0", "i1", "i2", "i3", "i4", "i5", "i6", "i7", "i8", "i9", "", " ", strings.Repeat("long", 40)}
	walkPaths   = []string{"a", "a/b", "a/b/c", "ab", "d", "d/e", "f", "g/h", "i", "j/k", "l", "m", "a//b", "..", strings.Repeat("p", 200)}
)

func (w *walker) pick(list []string) string { return list[w.rng.IntN(len(list))] }

func (w *walker) quote(s string) string { return fmt.Sprintf("%q", s) }

// walkType picks a message type, mostly of the intent cycle.
func (w *walker) walkType() string {
	switch n := w.rng.IntN(100); {
	case n < 35:
		return MsgAnnounceIntent
	case n < 60:
		return MsgCommitOperation
	case n < 72:
		return MsgWithdraw
	case n < 77:
		return MsgClaim
	case n < 87:
		return MsgResolveConflict
	case n < 93:
		return MsgEscalateConflict
	case n < 95:
		return MsgDeclareCrashed
	case n < 98:
		return "Bogus"
	}
	return MsgCommitment
}

// payload returns a random payload for typ on s, and the sender: mostly
// well formed and about a live intent or an open conflict, sometimes not.
func (w *walker) payload(typ string, s *State) (sender, payload string) {
	sender = w.pick(walkSenders)
	switch w.rng.IntN(20) {
	case 0:
		return sender, `{"bogus":1}`
	case 1:
		return sender, `not json`
	case 2:
		return sender, `{}`
	}
	id := w.pick(walkIntents)
	var live *Intent
	if len(s.Intents) > 0 && w.rng.IntN(4) != 0 {
		live = &s.Intents[w.rng.IntN(len(s.Intents))]
		id = live.ID
		if typ != MsgClaim {
			sender = live.Owner
		}
	}
	conflict := w.rng.Uint64N(s.Counters.ConflictsOpened + 2)
	if len(s.Conflicts) > 0 && w.rng.IntN(4) != 0 {
		c := &s.Conflicts[w.rng.IntN(len(s.Conflicts))]
		conflict = c.ID
		if w.rng.IntN(2) == 0 {
			id = c.Intents[w.rng.IntN(2)]
		}
	}
	switch typ {
	case MsgAnnounceIntent:
		var paths []string
		for range 1 + w.rng.IntN(3) {
			paths = append(paths, w.quote(w.pick(walkPaths)))
		}
		desc := ""
		if w.rng.IntN(3) == 0 {
			desc = fmt.Sprintf(`,"description":%q`, strings.Repeat("d", w.rng.IntN(200)))
		}
		return sender, fmt.Sprintf(`{"intent_id":%q,"scope":[%s]%s}`, id, strings.Join(paths, ","), desc)
	case MsgCommitOperation:
		if w.rng.IntN(10) == 0 {
			return sender, fmt.Sprintf(`{"intent_id":%q}`, id)
		}
		wm := w.rng.Uint64N(s.Ops + 2)
		if live != nil && w.rng.IntN(4) != 0 && s.Ops >= live.Required {
			wm = live.Required + w.rng.Uint64N(s.Ops-live.Required+1)
		}
		return sender, fmt.Sprintf(`{"intent_id":%q,"watermark":%d,"summary":"s"}`, id, wm)
	case MsgWithdraw, MsgClaim:
		return sender, fmt.Sprintf(`{"intent_id":%q,"reason":"r"}`, id)
	case MsgResolveConflict:
		keep := []string{}
		for range w.rng.IntN(3) {
			keep = append(keep, w.quote(w.pick(walkIntents)))
		}
		return kt.Coord, fmt.Sprintf(`{"conflict_id":%d,"keep":[%s]}`, conflict, strings.Join(keep, ","))
	case MsgEscalateConflict:
		return kt.Coord, fmt.Sprintf(`{"conflict_id":%d,"reason":"why"}`, conflict)
	case MsgDeclareCrashed:
		return w.pick([]string{kt.Coord, sender}), fmt.Sprintf(`{"participant":%q}`, w.pick(walkSenders))
	}
	return sender, `{}`
}

// compare decides env on state both ways and fails unless they agree. On a
// corrupt state, which only a broken host passes, splicing may also decide
// where the full decode finds an error (INTERNAL_ERROR) in a record the
// step does not read.
func (w *walker) compare(state []byte, env guest.Envelope, corrupt bool) guest.Result {
	w.t.Helper()
	req := guest.StepRequest{State: state, Envelope: env, Session: w.sess}
	full := step(&req, false)
	spliced := step(&req, true)
	if corrupt && !full.Accepted && full.Code == macperr.InternalError {
		return full
	}
	if full.Accepted != spliced.Accepted || full.Code != spliced.Code || full.Message != spliced.Message || !bytes.Equal(full.State, spliced.State) {
		w.t.Fatalf("%s from %s %s on state %x:\nspliced accepted=%v %s %q %x\nfull    accepted=%v %s %q %x",
			env.MessageType, env.Sender, env.Payload, state,
			spliced.Accepted, spliced.Code, spliced.Message, spliced.State, full.Accepted, full.Code, full.Message, full.State)
	}
	return full
}

// TestSpliceMatchesFullPath plays seeded random walks through both paths of
// step: the same verdicts, codes, messages and state bytes. Every state of
// an open session must be one splicing takes. Corrupted states on the way
// must give the same results too, but where the full path finds the
// corruption (see compare).
func TestSpliceMatchesFullPath(t *testing.T) {
	walks, steps := 200, 150
	if testing.Short() {
		walks = 20
	}
	accepted := map[string]int{}
	maxIntents, maxConflicts := 0, 0
	for seed := range uint64(walks) {
		w := &walker{t: t, rng: rand.New(rand.NewPCG(seed, 7)), sess: kt.Session(ModeName, "", roster...)}
		w.state = kt.Start(t, Mode{}, w.sess)
		for i := range steps {
			s, err := Unmarshal(w.state)
			if err != nil {
				t.Fatal(err)
			}
			var ws wireState
			if scanned := ws.scan(view(w.state), &buffers{}); scanned != (s.Commitment == nil) {
				t.Fatalf("seed %d step %d: scan took the state %v, committed %v: %x", seed, i, scanned, s.Commitment != nil, w.state)
			}
			for k := range ws.intents {
				if in := &ws.intents[k]; !in.parse(ws.src, false) || !in.parse(ws.src, true) || in.id != s.Intents[k].ID || in.required != s.Intents[k].Required {
					t.Fatalf("seed %d step %d: intent %d does not parse as %+v: %+v", seed, i, k, s.Intents[k], *in)
				}
			}
			typ := w.walkType()
			env := guest.Envelope{MACPVersion: "1.0", Mode: ModeName, MessageType: typ, MessageID: fmt.Sprintf("m%d", i),
				SessionID: w.sess.SessionID}
			if typ == MsgCommitment {
				m := kt.Commitment(kt.Coord, w.rng.IntN(2) == 0, "")
				env.Sender, env.Payload = m.Sender, kt.Encode(t, m.Payload)
			} else {
				sender, payload := w.payload(typ, s)
				env.Sender, env.Payload = sender, []byte(payload)
			}
			if w.rng.IntN(8) == 0 {
				// A corrupted state: both paths must still agree.
				bad := bytes.Clone(w.state)
				switch w.rng.IntN(3) {
				case 0:
					bad[w.rng.IntN(len(bad))] ^= byte(1 + w.rng.IntN(255))
				case 1:
					bad = bad[:w.rng.IntN(len(bad))]
				default:
					bad = append(bad, byte(w.rng.IntN(256)), byte(w.rng.IntN(256)))
				}
				w.compare(bad, env, true)
			}
			if res := w.compare(w.state, env, false); res.Accepted {
				w.state = res.State
				accepted[typ]++
			}
			maxIntents, maxConflicts = max(maxIntents, len(s.Intents)), max(maxConflicts, len(s.Conflicts))
		}
	}
	// The walks must reach what splicing handles.
	t.Logf("accepted %v; up to %d intents and %d conflicts live", accepted, maxIntents, maxConflicts)
	tame := accepted[MsgAnnounceIntent] < walks || accepted[MsgCommitOperation] < walks || accepted[MsgWithdraw] < walks ||
		accepted[MsgResolveConflict] == 0 || maxIntents < 5 || maxConflicts < 4
	if tame && !testing.Short() {
		t.Fatalf("the walks are too tame: accepted %v, up to %d intents and %d conflicts", accepted, maxIntents, maxConflicts)
	}
}

// TestSpliceTakesTheCycle checks that the crowded benchmark's cycle goes
// through splicing, and gives Marshal's bytes.
func TestSpliceTakesTheCycle(t *testing.T) {
	c := newCrowdCycler()
	state := c.history(t, 3)
	var w wireState
	if !w.scan(view(state), &buffers{}) || len(w.intents) != 30 {
		t.Fatalf("scan refused the state or found %d intents", len(w.intents))
	}
	s, err := Unmarshal(state)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(s.Marshal(), state) {
		t.Fatal("the spliced state is not Marshal's")
	}
}

package mpac

import (
	"fmt"
	"testing"

	"github.com/concord-macp/concord/abi/guest"
	kt "github.com/concord-macp/concord/abi/guest/guesttest"
)

// cycler runs announce → commit operation → withdraw cycles natively, the
// way the host would, with prebuilt payloads so that only the mode is
// measured. Intents of other participants stay live throughout, so the
// state is not trivially small: two of them by default, or, in a cycler
// from newCrowdCycler, one for each of 30 of 32 participants.
type cycler struct {
	sess     guest.Session
	actor    string
	announce []byte
	withdraw []byte
	// crowd is set by newCrowdCycler.
	crowd bool
}

func newCycler() *cycler {
	return &cycler{
		sess:     kt.Session(ModeName, "", roster...),
		actor:    kt.Alice,
		announce: []byte(`{"intent_id":"cycle","scope":["src/core","src/util/strings.go"],"description":"refactor"}`),
		withdraw: []byte(`{"intent_id":"cycle","reason":"done"}`),
	}
}

// newCrowdCycler returns a cycler on the state the one shared session of
// the server benchmark (BenchmarkMPACCycleServer, 32 agents) reaches: 32
// participants, and 30 intents of others live, each of one path.
func newCrowdCycler() *cycler {
	agents := make([]string, 32)
	for i := range agents {
		agents[i] = fmt.Sprintf("agent-%d", i)
	}
	c := newCycler()
	c.sess = kt.Session(ModeName, "", agents...)
	c.actor = agents[0]
	c.announce = []byte(`{"intent_id":"agent-0-1","scope":["agent-0/1"]}`)
	c.withdraw = []byte(`{"intent_id":"agent-0-1"}`)
	c.crowd = true
	return c
}

func (c *cycler) step(tb testing.TB, state []byte, sender, typ string, payload []byte) []byte {
	res := Mode.Step(&guest.StepRequest{
		State:    state,
		Envelope: guest.Envelope{MACPVersion: "1.0", Mode: ModeName, MessageType: typ, SessionID: c.sess.SessionID, Sender: sender, Payload: payload},
		Session:  c.sess,
	})
	if !res.Accepted {
		tb.Fatalf("%s rejected: %s %s", typ, res.Code, res.Message)
	}
	return res.State
}

// setup returns the state after SessionStart and the background intents.
func (c *cycler) setup(tb testing.TB) []byte {
	state := kt.Start(tb, Mode, c.sess)
	if c.crowd {
		for i, owner := range c.sess.Participants[1:31] {
			state = c.step(tb, state, owner, MsgAnnounceIntent, fmt.Appendf(nil, `{"intent_id":"%s-%d","scope":["%s/%d"]}`, owner, 100+i, owner, 100+i))
		}
		return state
	}
	state = c.step(tb, state, kt.Bob, MsgAnnounceIntent, []byte(`{"intent_id":"docs","scope":["docs"]}`))
	return c.step(tb, state, kt.Carol, MsgAnnounceIntent, []byte(`{"intent_id":"web","scope":["web/app","web/static"]}`))
}

// cycle runs one cycle on state, whose operation count is ops, and returns
// the new state.
func (c *cycler) cycle(tb testing.TB, state []byte, ops uint64) []byte {
	state = c.step(tb, state, c.actor, MsgAnnounceIntent, c.announce)
	state = c.step(tb, state, c.actor, MsgCommitOperation, c.operation(ops))
	return c.step(tb, state, c.actor, MsgWithdraw, c.withdraw)
}

// operation returns the payload of the cycle's CommitOperation.
func (c *cycler) operation(watermark uint64) []byte {
	id := "cycle"
	if c.crowd {
		id = "agent-0-1"
	}
	return fmt.Appendf(nil, `{"intent_id":%q,"watermark":%d}`, id, watermark)
}

// history returns the state after n past cycles.
func (c *cycler) history(tb testing.TB, n int) []byte {
	state := c.setup(tb)
	for i := range n {
		state = c.cycle(tb, state, uint64(i))
	}
	return state
}

// BenchmarkCycle measures one announce → commit operation → withdraw cycle
// on a session with 10 and with 10,000 past cycles. Each iteration starts
// from the same state, so the figure is the cost at exactly that history.
// The state keeps only live intents and counters, so both figures match.
// The last case is the crowded session of newCrowdCycler (32 participants,
// 30 other live intents) after 10 cycles.
//
//	go test -run '^$' -bench Cycle ./examples/modes/mpac/
func BenchmarkCycle(b *testing.B) {
	for _, bc := range []struct {
		name string
		c    *cycler
		past int
	}{
		{"past=10", newCycler(), 10},
		{"past=10000", newCycler(), 10_000},
		{"agents=32/others=30", newCrowdCycler(), 10},
	} {
		past := bc.past
		b.Run(bc.name, func(b *testing.B) {
			c := bc.c
			state := c.history(b, past)
			b.ReportAllocs()
			for b.Loop() {
				c.cycle(b, state, uint64(past))
			}
			// After the loop: b.Loop's first call drops metrics reported before it.
			b.ReportMetric(float64(len(state)), "state-bytes")
		})
	}
}

// TestStateStaysCompact checks what the benchmark relies on: the state after
// 10,000 cycles is as large as after 10, but for the varint counters.
func TestStateStaysCompact(t *testing.T) {
	c := newCycler()
	small, large := c.history(t, 10), c.history(t, 10_000)
	if grew := len(large) - len(small); grew < 0 || grew > 8 {
		t.Fatalf("state grew from %d to %d bytes over 9,990 cycles", len(small), len(large))
	}
	s, _, err := Mode.Decode(large)
	if err != nil {
		t.Fatal(err)
	}
	if s.Ops != 10_000 || s.Counters.Announced != 10_002 || s.Counters.Withdrawn != 10_000 || len(s.Intents) != 2 {
		t.Fatalf("after 10,000 cycles: ops %d, counters %+v, %d live intents", s.Ops, s.Counters, len(s.Intents))
	}
}

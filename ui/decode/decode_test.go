package decode

import (
	"testing"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	decisionv1 "github.com/concord-macp/concord/proto/macp/modes/decision/v1"
	multiroundv1 "github.com/concord-macp/concord/proto/macp/modes/multi_round/v1"
	macpv1 "github.com/concord-macp/concord/proto/macp/v1"
)

func fields(p Payload) map[string]string {
	m := map[string]string{}
	for _, f := range p.Fields {
		m[f.Name] = f.Value
	}
	return m
}

func mustMarshal(t *testing.T, m proto.Message) []byte {
	t.Helper()
	b, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestBuiltInModeAndCoreTypes(t *testing.T) {
	vote := Decode("macp.mode.decision.v1", "Vote", mustMarshal(t, &decisionv1.VotePayload{ProposalId: "p1", Vote: "APPROVE", Reason: "fine"}))
	if vote.Kind != "macp.modes.decision.v1.VotePayload" || fields(vote)["vote"] != "APPROVE" || fields(vote)["proposal_id"] != "p1" {
		t.Fatalf("vote: %+v", vote)
	}
	start := Decode("macp.mode.decision.v1", "SessionStart", mustMarshal(t, &macpv1.SessionStartPayload{Intent: "pick", Participants: []string{"a", "b"}, TtlMs: 60000}))
	if f := fields(start); start.Kind != "macp.v1.SessionStartPayload" || f["participants[1]"] != "b" || f["ttl_ms"] != "60000" || f["intent"] != "pick" {
		t.Fatalf("start: %+v", start)
	}
	mr := Decode("ext.multi_round.v1", "Contribute", mustMarshal(t, &multiroundv1.ContributePayload{Value: "42"}))
	if mr.Kind != "macp.modes.multi_round.v1.ContributePayload" || fields(mr)["value"] != "42" {
		t.Fatalf("multi_round: %+v", mr)
	}
}

func TestUploadedModesGetAGenericDecoding(t *testing.T) {
	j := Decode("ext.swarm.v1", "Bid", []byte(`{"amount":3,"items":["x"],"who":{"name":"ann"}}`))
	if f := fields(j); j.Kind != "json" || f["amount"] != "3" || f["items[0]"] != "x" || f["who.name"] != "ann" {
		t.Fatalf("json: %+v", j)
	}
	var b []byte
	b = protowire.AppendTag(b, 1, protowire.BytesType)
	b = protowire.AppendString(b, "hello")
	b = protowire.AppendTag(b, 2, protowire.VarintType)
	b = protowire.AppendVarint(b, 7)
	var inner []byte
	inner = protowire.AppendTag(inner, 1, protowire.BytesType)
	inner = protowire.AppendString(inner, "nested")
	b = protowire.AppendTag(b, 3, protowire.BytesType)
	b = protowire.AppendBytes(b, inner)
	w := Decode("ext.swarm.v1", "Bid", b)
	if f := fields(w); w.Kind != "protobuf wire format" || f["1"] != "hello" || f["2"] != "7" || f["3.1"] != "nested" {
		t.Fatalf("wire: %+v", w)
	}
	bin := Decode("ext.swarm.v1", "Bid", []byte{0xff, 0xfe, 0x00})
	if bin.Kind != "binary" || len(bin.Fields) != 1 || bin.Fields[0].Value != "3 bytes of binary data (hex fffe00)" {
		t.Fatalf("binary: %+v", bin)
	}
	if e := Decode("ext.swarm.v1", "Ping", nil); e.Kind != "empty" || len(e.Fields) != 0 {
		t.Fatalf("empty: %+v", e)
	}
}

func TestMalformedBuiltInPayloadFallsBack(t *testing.T) {
	// A Vote whose bytes are not a VotePayload still shows something
	// readable and nothing raw.
	p := Decode("macp.mode.decision.v1", "Vote", []byte{0xff, 0xff})
	if p.Kind != "binary" {
		t.Fatalf("got %+v", p)
	}
}

package cmthash_test

import (
	"errors"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/concord-macp/concord/host/cmthash"
	macpv1 "github.com/concord-macp/concord/proto/macp/v1"
)

// FuzzHashFromWire hashes CommitmentPayloads decoded from arbitrary wire
// bytes, as the kernel does with an agent's Commitment. Properties: Hash
// never panics and never modifies the payload; it is deterministic; it
// refuses exactly the payloads with fields outside the hashed ones
// (ErrCannotVerify); a hash is well formed, Verify accepts it, and the
// payload re-encoded and decoded again hashes the same.
//
//	go test -run '^$' -fuzz FuzzHashFromWire ./host/cmthash/
func FuzzHashFromWire(f *testing.F) {
	full, _ := proto.Marshal(&macpv1.CommitmentPayload{CommitmentId: "c1", Action: "decision.selected", AuthorityScope: "s",
		Reason: "r", ModeVersion: "1.0.0", PolicyVersion: "policy.default", ConfigurationVersion: "cfg-1", OutcomePositive: true,
		Supersedes: &macpv1.CommitmentRef{SessionId: "s0", CommitmentHash: "sha256:00"}})
	f.Add(full)
	f.Add([]byte{})
	f.Add(append(append([]byte{}, full...), 0x58, 0x01)) // an unknown field 11
	f.Fuzz(func(t *testing.T, b []byte) {
		p := &macpv1.CommitmentPayload{}
		if err := proto.Unmarshal(b, p); err != nil {
			return
		}
		orig := proto.Clone(p)
		h, err := cmthash.Hash(p)
		h2, err2 := cmthash.Hash(p)
		if h != h2 || (err == nil) != (err2 == nil) {
			t.Fatalf("Hash is not deterministic: %q %v, then %q %v", h, err, h2, err2)
		}
		if !proto.Equal(p, orig) {
			t.Fatal("Hash modified the payload")
		}
		unknown := len(p.ProtoReflect().GetUnknown()) > 0 ||
			(p.GetSupersedes() != nil && len(p.GetSupersedes().ProtoReflect().GetUnknown()) > 0)
		if unknown {
			if !errors.Is(err, cmthash.ErrCannotVerify) {
				t.Fatalf("a payload with unknown fields hashed: %q %v", h, err)
			}
			return
		}
		if err != nil {
			t.Fatalf("Hash of a decoded payload: %v", err)
		}
		if !cmthash.WellFormed(h) || cmthash.Verify(p, h) != nil {
			t.Fatalf("hash %q is not well formed or does not verify", h)
		}
		again, err := proto.Marshal(p)
		if err != nil {
			t.Fatal(err)
		}
		q := &macpv1.CommitmentPayload{}
		if err := proto.Unmarshal(again, q); err != nil {
			t.Fatal(err)
		}
		if hq, err := cmthash.Hash(q); err != nil || hq != h {
			t.Fatalf("re-encoded payload hashes %q %v, want %q", hq, err, h)
		}
	})
}

package cmthash_test

import (
	"errors"
	"fmt"

	"github.com/concord-macp/concord/host/cmthash"
	macpv1 "github.com/concord-macp/concord/proto/macp/v1"
)

// The payload of conformance vector cmt_hash_001_minimal.
func ExampleHash() {
	p := &macpv1.CommitmentPayload{
		CommitmentId:         "c1",
		Action:               "decision.approved",
		AuthorityScope:       "seam",
		Reason:               "sealed by seam",
		ModeVersion:          "macp.mode.decision.v1",
		PolicyVersion:        "1.0.0",
		ConfigurationVersion: "1.0.0",
		OutcomePositive:      true,
	}
	c, _ := cmthash.Canonical(p)
	fmt.Println(string(c))
	h, _ := cmthash.Hash(p)
	fmt.Println(h)
	// Output:
	// {"action":"decision.approved","authority_scope":"seam","commitment_id":"c1","configuration_version":"1.0.0","mode_version":"macp.mode.decision.v1","outcome_positive":true,"policy_version":"1.0.0","reason":"sealed by seam"}
	// sha256:9f58e9d114d11860d48aa2bcb8cda458b9618b1cc8560595a802b68c4af85d41
}

func ExampleVerify() {
	p := &macpv1.CommitmentPayload{CommitmentId: "c1", Action: "decision.approved", OutcomePositive: true}
	h, _ := cmthash.Hash(p)

	fmt.Println(cmthash.Verify(p, h) == nil)

	p.Reason = "edited"
	err := cmthash.Verify(p, h)
	switch {
	case errors.Is(err, cmthash.ErrMismatch):
		fmt.Println("mismatch")
	case errors.Is(err, cmthash.ErrCannotVerify):
		fmt.Println("cannot verify")
	}
	// Output:
	// true
	// mismatch
}

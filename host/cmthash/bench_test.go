package cmthash_test

import (
	"strings"
	"testing"

	"github.com/concord-macp/concord/host/cmthash"
	macpv1 "github.com/concord-macp/concord/proto/macp/v1"
)

var sinkHash string

func BenchmarkHash(b *testing.B) {
	escapes := sample()
	escapes.Action = "decision.\"appro\\ved\""
	escapes.Reason = "r\u00e9\tsum\u00e9\n\u2014 na\u00efve \U0001F702 <&> \x01"
	long := sample()
	long.Reason = strings.Repeat("a reason of some length; ", 80)
	for _, bc := range []struct {
		name string
		p    *macpv1.CommitmentPayload
	}{
		{"minimal", &macpv1.CommitmentPayload{CommitmentId: "c1", Action: "decision.approved", OutcomePositive: true}},
		{"supersedes", sample()},
		{"escapes", escapes},
		{"reason_2KB", long},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				h, err := cmthash.Hash(bc.p)
				if err != nil {
					b.Fatal(err)
				}
				sinkHash = h
			}
		})
	}
}

func BenchmarkVerify(b *testing.B) {
	p := sample()
	h, err := cmthash.Hash(p)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if err := cmthash.Verify(p, h); err != nil {
			b.Fatal(err)
		}
	}
}

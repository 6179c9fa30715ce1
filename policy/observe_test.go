package policy

import (
	"context"
	"testing"

	"github.com/concord-macp/concord/macperr"
	macpv1 "github.com/concord-macp/concord/proto/macp/v1"
)

func TestObservedReportsEveryEvaluation(t *testing.T) {
	type seen struct {
		eval    Evaluation
		outcome Outcome
	}
	var got []seen
	g := Observed(Default{}, func(_ context.Context, e Evaluation) func(Outcome) {
		got = append(got, seen{eval: e})
		i := len(got) - 1
		return func(o Outcome) { got[i].outcome = o }
	})
	ctx := context.Background()
	md := &macpv1.SessionMetadata{Mode: ModeDecision, Initiator: "boss"}
	if err := g.Authorize(ctx, &Input{Session: md, Sender: "boss"}); err != nil {
		t.Fatal(err)
	}
	if err := g.Authorize(ctx, &Input{Session: md, Sender: "mallory", Policy: DefaultDescriptor()}); macperr.CodeOf(err) != macperr.Forbidden {
		t.Fatalf("a non-initiator's authority: %v", err)
	}
	if d, err := g.Govern(ctx, &Input{Session: md, Sender: "boss"}); err != nil || !d.Allow {
		t.Fatalf("govern: %v %v", d, err)
	}
	want := []seen{
		{Evaluation{"authorize", DefaultID, ModeDecision}, Allowed},
		{Evaluation{"authorize", DefaultID, ModeDecision}, Denied},
		{Evaluation{"govern", DefaultID, ModeDecision}, Allowed},
	}
	if len(got) != len(want) {
		t.Fatalf("saw %+v", got)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("evaluation %d: %+v, want %+v", i, got[i], want[i])
		}
	}
	if Observed(Default{}, nil) != (Default{}) {
		t.Fatal("Observed without a hook should return the governor itself")
	}
}

package policy

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/concord-macp/concord/macperr"
	macpv1 "github.com/concord-macp/concord/proto/macp/v1"
)

var quietLog = slog.New(slog.NewTextHandler(io.Discard, nil))

func newTestRegistry(t testing.TB, opts RegistryOptions) *Registry {
	t.Helper()
	if opts.Logger == nil {
		opts.Logger = quietLog
	}
	r, err := NewRegistry(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func desc(id, mode string, version uint32, rules string) *macpv1.PolicyDescriptor {
	return &macpv1.PolicyDescriptor{PolicyId: id, Mode: mode, Description: "test policy", Rules: rules, SchemaVersion: version}
}

// wantCode fails unless err is a *macperr.Error with code whose message
// contains every fragment.
func wantCode(t *testing.T, err error, code macperr.Code, fragments ...string) {
	t.Helper()
	var me *macperr.Error
	if !errors.As(err, &me) {
		t.Fatalf("error %v is not a *macperr.Error", err)
	}
	if me.Code != code {
		t.Fatalf("code %s (%v), want %s", me.Code, err, code)
	}
	for _, f := range fragments {
		if !strings.Contains(err.Error(), f) {
			t.Errorf("error %q does not mention %q", err, f)
		}
	}
}

func TestRegisterRejectsBadDescriptors(t *testing.T) {
	const dec = ModeDecision
	cases := []struct {
		name string
		d    *macpv1.PolicyDescriptor
		want []string
	}{
		{"nil descriptor", nil, []string{"missing"}},
		{"empty id", desc("", dec, 1, `{}`), []string{"policy_id is missing"}},
		{"default id", desc(DefaultID, dec, 1, `{}`), []string{"built in"}},
		{"id with spaces", desc("policy.a b", dec, 1, `{}`), []string{"white space"}},
		{"missing mode", desc("policy.t.x", "", 1, `{}`), []string{"mode is missing"}},
		{"missing description", &macpv1.PolicyDescriptor{PolicyId: "policy.t.x", Mode: dec, Rules: `{}`, SchemaVersion: 1}, []string{"description is missing"}},
		{"missing rules", desc("policy.t.x", dec, 1, ``), []string{"rules are missing"}},
		{"bad JSON", desc("policy.t.x", dec, 1, `{"voting":`), []string{"not valid JSON"}},
		{"trailing data", desc("policy.t.x", dec, 1, `{} {}`), []string{"not valid JSON"}},
		{"duplicate key", desc("policy.t.x", dec, 1, `{"voting":{},"voting":{}}`), []string{"duplicate key"}},
		{"rules array", desc("policy.t.x", dec, 1, `[]`), []string{"must be a JSON object"}},
		{"rules null", desc("policy.t.x", dec, 1, `null`), []string{"must be a JSON object"}},
		{"schema_version 0", desc("policy.t.x", dec, 0, `{}`), []string{"schema_version 0"}},
		{"schema_version 4", desc("policy.t.x", dec, 4, `{}`), []string{"schema_version 4"}},
		{"unknown top-level key", desc("policy.t.x", dec, 3, `{"votes":{}}`), []string{"rules.votes", "unknown key"}},
		{"unknown nested key", desc("policy.t.x", dec, 3, `{"voting":{"algorithm":"majority","quorum":{"type":"count","min":1}}}`), []string{"rules.voting.quorum.min"}},
		{"section not an object", desc("policy.t.x", dec, 3, `{"voting":[]}`), []string{"rules.voting", "must be an object"}},
		{"algorithm enum", desc("policy.t.x", dec, 3, `{"voting":{"algorithm":"Majority"}}`), []string{"rules.voting.algorithm"}},
		{"threshold zero", desc("policy.t.x", dec, 3, `{"voting":{"algorithm":"weighted","threshold":0,"weights":{"a":1}}}`), []string{"rules.voting.threshold", "out of range"}},
		{"threshold above one", desc("policy.t.x", dec, 3, `{"voting":{"algorithm":"plurality","threshold":1.5}}`), []string{"out of range (0, 1]"}},
		{"threshold string", desc("policy.t.x", dec, 3, `{"voting":{"threshold":"0.5"}}`), []string{"must be a number"}},
		{"majority below half", desc("policy.t.x", dec, 3, `{"voting":{"algorithm":"majority","threshold":0.4}}`), []string{"at least 0.5"}},
		{"supermajority without threshold", desc("policy.t.x", dec, 3, `{"voting":{"algorithm":"supermajority"}}`), []string{"explicit threshold"}},
		{"supermajority at half", desc("policy.t.x", dec, 3, `{"voting":{"algorithm":"supermajority","threshold":0.5}}`), []string{"above 0.5"}},
		{"weighted without weights", desc("policy.t.x", dec, 3, `{"voting":{"algorithm":"weighted"}}`), []string{"weights"}},
		{"weighted with empty weights", desc("policy.t.x", dec, 3, `{"voting":{"algorithm":"weighted","weights":{}}}`), []string{"non-empty weights"}},
		{"weight zero", desc("policy.t.x", dec, 3, `{"voting":{"algorithm":"weighted","weights":{"a":1,"b":0}}}`), []string{"rules.voting.weights.b"}},
		{"weight negative", desc("policy.t.x", dec, 3, `{"voting":{"algorithm":"weighted","weights":{"a":-1}}}`), []string{"rules.voting.weights.a"}},
		{"quorum negative", desc("policy.t.x", dec, 3, `{"voting":{"quorum":{"type":"count","value":-1}}}`), []string{"rules.voting.quorum.value"}},
		{"quorum percentage above 100", desc("policy.t.x", dec, 3, `{"voting":{"quorum":{"type":"percentage","value":150}}}`), []string{"0-100"}},
		{"veto threshold fractional", desc("policy.t.x", dec, 3, `{"objection_handling":{"veto_threshold":1.5}}`), []string{"must be an integer"}},
		{"veto threshold zero", desc("policy.t.x", dec, 3, `{"objection_handling":{"veto_threshold":0}}`), []string{"out of range"}},
		{"minimum confidence above one", desc("policy.t.x", dec, 3, `{"evaluation":{"minimum_confidence":1.1}}`), []string{"minimum_confidence"}},
		{"authority enum", desc("policy.t.x", dec, 3, `{"commitment":{"authority":"anyone"}}`), []string{"rules.commitment.authority"}},
		{"designated_role without roles", desc("policy.t.x", dec, 3, `{"commitment":{"authority":"designated_role"}}`), []string{"designated_roles"}},
		{"designated_role with empty roles", desc("policy.t.x", dec, 3, `{"commitment":{"authority":"designated_role","designated_roles":[]}}`), []string{"designated_roles"}},
		{"designated role blank", desc("policy.t.x", dec, 3, `{"commitment":{"authority":"designated_role","designated_roles":[" "]}}`), []string{"designated_roles[0]"}},
		{"v2 key in v1: allow_decline_over_approval", desc("policy.t.x", dec, 1, `{"commitment":{"allow_decline_over_approval":true}}`), []string{"requires schema_version 2"}},
		{"v2 key in v1: critical_objection_action", desc("policy.t.x", dec, 1, `{"objection_handling":{"critical_objection_action":"hold"}}`), []string{"requires schema_version 2"}},
		{"critical_objection_action enum", desc("policy.t.x", dec, 2, `{"objection_handling":{"critical_objection_action":"veto"}}`), []string{"critical_objection_action"}},
		{"star validated as decision", desc("policy.t.x", AnyMode, 1, `{"completion":{"require_output":true}}`), []string{"rules.completion", "unknown key"}},
		{"reserved custom key", desc("policy.t.x", "ext.thing.v1", 1, `{"concord.rego":"sha256:00"}`), []string{"reserved"}},
		{"quorum weighted threshold", desc("policy.t.x", ModeQuorum, 1, `{"threshold":{"type":"weighted","value":2}}`), []string{"removed", "reserved"}},
		{"quorum count alias", desc("policy.t.x", ModeQuorum, 1, `{"threshold":{"type":"count","value":2}}`), []string{"n_of_m"}},
		{"quorum value zero", desc("policy.t.x", ModeQuorum, 1, `{"threshold":{"type":"n_of_m","value":0}}`), []string{"rules.threshold.value"}},
		{"quorum percentage above 100", desc("policy.t.x", ModeQuorum, 1, `{"threshold":{"type":"percentage","value":101}}`), []string{"1-100"}},
		{"quorum abstention enum", desc("policy.t.x", ModeQuorum, 1, `{"abstention":{"interpretation":"reject"}}`), []string{"interpretation"}},
		{"quorum decision key", desc("policy.t.x", ModeQuorum, 1, `{"voting":{}}`), []string{"unknown key"}},
		{"quorum commitment extra key", desc("policy.t.x", ModeQuorum, 1, `{"commitment":{"require_vote_quorum":true}}`), []string{"rules.commitment.require_vote_quorum"}},
		{"proposal criterion", desc("policy.t.x", ModeProposal, 1, `{"acceptance":{"criterion":"everyone"}}`), []string{"criterion"}},
		{"proposal max_rounds negative", desc("policy.t.x", ModeProposal, 1, `{"counter_proposal":{"max_rounds":-1}}`), []string{"max_rounds"}},
		{"proposal designated_role without roles", desc("policy.t.x", ModeProposal, 1, `{"commitment":{"authority":"designated_role"}}`), []string{"designated_roles"}},
		{"task require_output type", desc("policy.t.x", ModeTask, 1, `{"completion":{"require_output":"yes"}}`), []string{"must be a boolean"}},
		{"handoff timeout negative", desc("policy.t.x", ModeHandoff, 1, `{"acceptance":{"implicit_accept_timeout_ms":-5}}`), []string{"implicit_accept_timeout_ms"}},
		{"number out of binary64 range", desc("policy.t.x", dec, 3, `{"voting":{"quorum":{"value":1e400}}}`), []string{"out of range"}},
		{"unassigned std id", desc("policy.std.plurality", dec, 1, `{}`), []string{"reserved"}},
		{"non-canonical std", desc("policy.std.majority", dec, 1, `{"voting":{"algorithm":"majority"}}`), []string{"canonical"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := newTestRegistry(t, RegistryOptions{})
			before := len(r.List(""))
			_, err := r.Register(context.Background(), tc.d)
			wantCode(t, err, macperr.InvalidPolicyDefinition, tc.want...)
			if !strings.HasPrefix(err.Error(), string(macperr.InvalidPolicyDefinition)+": ") {
				t.Errorf("error %q lacks the registry-code prefix", err)
			}
			if after := len(r.List("")); after != before {
				t.Errorf("%d descriptors after a refused registration, want %d", after, before)
			}
		})
	}
}

func TestRegisterAcceptsValidDescriptors(t *testing.T) {
	cases := []*macpv1.PolicyDescriptor{
		desc("policy.t.empty", ModeDecision, 1, `{}`),
		desc("policy.t.full", ModeDecision, 3, `{
			"voting": {"algorithm": "weighted", "threshold": 0.6, "quorum": {"type": "percentage", "value": 50}, "weights": {"a": 2, "b": 0.5}},
			"objection_handling": {"critical_severity_vetoes": true, "veto_threshold": 2, "critical_objection_action": "finalize_decline"},
			"evaluation": {"minimum_confidence": 0.7, "required_before_voting": true},
			"commitment": {"authority": "designated_role", "designated_roles": ["a"], "require_vote_quorum": true, "allow_decline_over_approval": true}
		}`),
		desc("policy.t.integral-float", ModeDecision, 2, `{"objection_handling":{"veto_threshold":2.0}}`),
		desc("policy.t.star", AnyMode, 3, `{"commitment":{"authority":"any_participant"}}`),
		desc("policy.t.quorum", ModeQuorum, 1, `{"threshold":{"type":"percentage","value":60},"abstention":{"counts_toward_quorum":true,"interpretation":"ignored"},"commitment":{"authority":"initiator_only"}}`),
		desc("policy.t.proposal", ModeProposal, 1, `{"acceptance":{"criterion":"counterparty"},"counter_proposal":{"max_rounds":3},"rejection":{"terminal_on_any_reject":true}}`),
		desc("policy.t.task", ModeTask, 2, `{"assignment":{"allow_reassignment_on_reject":true},"completion":{"require_output":true}}`),
		desc("policy.t.handoff", ModeHandoff, 3, `{"acceptance":{"implicit_accept_timeout_ms":5000}}`),
		desc("policy.t.ext", "ext.vendor.v1", 1, `{"anything":{"goes":[1,2,3]}}`),
		desc("policy.t.multi", ModeMultiRound, 1, `{}`),
	}
	r := newTestRegistry(t, RegistryOptions{})
	for _, d := range cases {
		got, err := r.Register(context.Background(), d)
		if err != nil {
			t.Errorf("%s: %v", d.PolicyId, err)
			continue
		}
		if got.PolicyId != d.PolicyId || got.Rules != d.Rules {
			t.Errorf("%s: registered %v", d.PolicyId, got)
		}
	}
}

func TestValidateRulesWarnings(t *testing.T) {
	w, err := ValidateRules(ModeDecision, 2, `{"voting":{"algorithm":"majority","quorum":{"type":"percentage","value":0.5}}}`)
	if err != nil {
		t.Fatal(err)
	}
	if len(w) != 2 {
		t.Fatalf("warnings %q, want the A3 scale warning and the v<=2 empty-tally warning", w)
	}
	if w, _ := ValidateRules(ModeDecision, 3, `{"voting":{"algorithm":"majority"}}`); len(w) != 0 {
		t.Errorf("v3 warnings %q", w)
	}
	if w, _ := ValidateRules(ModeDecision, 1, `{"voting":{"algorithm":"majority"},"commitment":{"require_vote_quorum":true}}`); len(w) != 0 {
		t.Errorf("require_vote_quorum warnings %q", w)
	}
}

func TestRegisterDuplicateAndImmutability(t *testing.T) {
	ctx := context.Background()
	r := newTestRegistry(t, RegistryOptions{})
	d := desc("policy.t.x", ModeDecision, 1, `{}`)
	if _, err := r.Register(ctx, d); err != nil {
		t.Fatal(err)
	}
	_, err := r.Register(ctx, desc("policy.t.x", ModeDecision, 1, `{"voting":{"algorithm":"majority"}}`))
	wantCode(t, err, macperr.InvalidPolicyDefinition, "already registered")

	// The registry keeps its own copy.
	d.Rules = `{"voting":{"algorithm":"plurality"}}`
	got, err := r.Get("policy.t.x")
	if err != nil || got.Rules != `{}` {
		t.Fatalf("Get = %v, %v", got, err)
	}
	got.Rules = "mutated"
	if again, _ := r.Get("policy.t.x"); again.Rules != `{}` {
		t.Fatal("Get returned an alias of the stored descriptor")
	}
}

func TestStdProfiles(t *testing.T) {
	ctx := context.Background()
	r := newTestRegistry(t, RegistryOptions{})
	for _, want := range StdProfiles() {
		got, err := r.Get(want.PolicyId)
		if err != nil {
			t.Fatal(err)
		}
		if !sameIdentity(got, want) {
			t.Errorf("%s: %v", want.PolicyId, got)
		}
		if _, err := ValidateDescriptor(want); err != nil {
			t.Errorf("%s does not pass its own schema: %v", want.PolicyId, err)
		}
		// Re-registering the canonical definition (in any key order) is a
		// no-op.
		canon := desc(want.PolicyId, want.Mode, want.SchemaVersion, want.Rules)
		if _, err := r.Register(ctx, canon); err != nil {
			t.Errorf("%s canonical re-registration: %v", want.PolicyId, err)
		}
		wantCode(t, r.Unregister(ctx, want.PolicyId), macperr.InvalidPolicyDefinition, "cannot be unregistered")
	}
	_, err := r.Bind(ctx, ModeDecision, "policy.std.plurality")
	wantCode(t, err, macperr.UnknownPolicyVersion)

	// Without the pre-registered profiles, the canonical definition
	// registers and a reordered equal one is recognised.
	bare := newTestRegistry(t, RegistryOptions{WithoutStdProfiles: true})
	if _, err := bare.Get("policy.std.unanimous"); err == nil {
		t.Fatal("profile served although disabled")
	}
	reordered := desc("policy.std.unanimous", ModeDecision, 1, `{"commitment":{"require_vote_quorum":true},"voting":{"quorum":{"value":1.0,"type":"count"},"algorithm":"unanimous"}}`)
	if _, err := bare.Register(ctx, reordered); err != nil {
		t.Fatal(err)
	}
	if err := bare.Unregister(ctx, "policy.std.unanimous"); err != nil {
		t.Errorf("a registered (not pre-registered) profile should unregister: %v", err)
	}
}

func TestUnregister(t *testing.T) {
	ctx := context.Background()
	r := newTestRegistry(t, RegistryOptions{})
	wantCode(t, r.Unregister(ctx, DefaultID), macperr.InvalidPolicyDefinition)
	wantCode(t, r.Unregister(ctx, "policy.t.none"), macperr.UnknownPolicyVersion)
	if _, err := r.Register(ctx, desc("policy.t.x", ModeDecision, 1, `{}`)); err != nil {
		t.Fatal(err)
	}
	bound, err := r.Bind(ctx, ModeDecision, "policy.t.x")
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Unregister(ctx, "policy.t.x"); err != nil {
		t.Fatal(err)
	}
	_, err = r.Bind(ctx, ModeDecision, "policy.t.x")
	wantCode(t, err, macperr.UnknownPolicyVersion)
	if bound.PolicyId != "policy.t.x" || bound.Rules != `{}` {
		t.Error("the bound copy changed after unregistering")
	}
	// The id may be registered again afterwards.
	if _, err := r.Register(ctx, desc("policy.t.x", ModeDecision, 2, `{}`)); err != nil {
		t.Fatal(err)
	}
}

func TestBind(t *testing.T) {
	ctx := context.Background()
	r := newTestRegistry(t, RegistryOptions{})
	for _, d := range []*macpv1.PolicyDescriptor{
		desc("policy.t.dec", ModeDecision, 1, `{}`),
		desc("policy.t.any", AnyMode, 1, `{}`),
	} {
		if _, err := r.Register(ctx, d); err != nil {
			t.Fatal(err)
		}
	}
	for _, v := range []string{"", "  ", DefaultID} {
		d, err := r.Bind(ctx, ModeTask, v)
		if err != nil || d.PolicyId != DefaultID {
			t.Errorf("Bind(%q) = %v, %v", v, d, err)
		}
	}
	if d, err := r.Bind(ctx, ModeDecision, "policy.t.dec"); err != nil || d.PolicyId != "policy.t.dec" {
		t.Errorf("Bind = %v, %v", d, err)
	}
	if _, err := r.Bind(ctx, "ext.vendor.v1", "policy.t.any"); err != nil {
		t.Errorf("a * policy binds to any mode: %v", err)
	}
	_, err := r.Bind(ctx, ModeTask, "policy.t.dec")
	wantCode(t, err, macperr.InvalidPolicyDefinition, ModeDecision, ModeTask)
	_, err = r.Bind(ctx, ModeDecision, "policy.t.unknown")
	wantCode(t, err, macperr.UnknownPolicyVersion, "policy.t.unknown")
	_, err = r.Bind(ctx, ModeTask, "policy.std.majority")
	wantCode(t, err, macperr.InvalidPolicyDefinition)

	// Bind returns a copy.
	d, _ := r.Bind(ctx, ModeDecision, "policy.t.dec")
	d.Rules = "changed"
	if again, _ := r.Bind(ctx, ModeDecision, "policy.t.dec"); again.Rules != `{}` {
		t.Error("Bind returned an alias")
	}
}

func TestListAndClock(t *testing.T) {
	ctx := context.Background()
	now := time.UnixMilli(1_700_000_000_000)
	r := newTestRegistry(t, RegistryOptions{Now: func() time.Time { return now }})
	now = now.Add(time.Second)
	in := desc("policy.t.task", ModeTask, 1, `{}`)
	in.RegisteredAtUnixMs = 42
	got, err := r.Register(ctx, in)
	if err != nil {
		t.Fatal(err)
	}
	if got.RegisteredAtUnixMs != now.UnixMilli() {
		t.Errorf("registered_at %d, want %d", got.RegisteredAtUnixMs, now.UnixMilli())
	}
	if _, err := r.Register(ctx, desc("policy.t.any", AnyMode, 1, `{}`)); err != nil {
		t.Fatal(err)
	}
	ids := func(ds []*macpv1.PolicyDescriptor) string {
		var s []string
		for _, d := range ds {
			s = append(s, d.PolicyId)
		}
		return strings.Join(s, ",")
	}
	if got, want := ids(r.List(ModeTask)), "policy.default,policy.t.any,policy.t.task"; got != want {
		t.Errorf("List(task) = %s, want %s", got, want)
	}
	if got, want := ids(r.List(ModeDecision)), "policy.default,policy.std.majority,policy.std.supermajority,policy.std.unanimous,policy.t.any"; got != want {
		t.Errorf("List(decision) = %s, want %s", got, want)
	}
	if got := len(r.List("")); got != 6 {
		t.Errorf("List(\"\") has %d descriptors, want 6", got)
	}
}

func TestPersistence(t *testing.T) {
	ctx := context.Background()
	p := NewMemoryPersister()
	r := newTestRegistry(t, RegistryOptions{Persister: p})
	if _, err := r.Register(ctx, desc("policy.t.a", ModeDecision, 1, `{}`)); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Register(ctx, desc("policy.t.b", ModeTask, 1, `{}`)); err != nil {
		t.Fatal(err)
	}
	if err := r.Unregister(ctx, "policy.t.b"); err != nil {
		t.Fatal(err)
	}
	stored, _ := p.All(ctx)
	if len(stored) != 1 || stored[0].PolicyId != "policy.t.a" {
		t.Fatalf("persisted %v; built-ins must not be persisted", stored)
	}
	// A stored descriptor that today's schema would refuse is served as
	// stored (admission-only validation).
	legacy := desc("policy.t.legacy", ModeQuorum, 1, `{"threshold":{"type":"weighted","value":3}}`)
	if err := p.Put(ctx, legacy); err != nil {
		t.Fatal(err)
	}
	r2 := newTestRegistry(t, RegistryOptions{Persister: p})
	for _, id := range []string{"policy.t.a", "policy.t.legacy", DefaultID, "policy.std.majority"} {
		if _, err := r2.Get(id); err != nil {
			t.Errorf("after reload: %v", err)
		}
	}
	if _, err := r2.Get("policy.t.b"); err == nil {
		t.Error("an unregistered policy came back")
	}
}

type failingPersister struct{ MemoryPersister }

func (*failingPersister) Put(context.Context, *macpv1.PolicyDescriptor) error {
	return errors.New("disk full")
}

func TestPersistFailureRegistersNothing(t *testing.T) {
	r := newTestRegistry(t, RegistryOptions{Persister: &failingPersister{MemoryPersister{m: map[string]*macpv1.PolicyDescriptor{}}}})
	_, err := r.Register(context.Background(), desc("policy.t.x", ModeDecision, 1, `{}`))
	wantCode(t, err, macperr.InternalError)
	if _, err := r.Get("policy.t.x"); err == nil {
		t.Error("registered although persisting failed")
	}
}

func TestSubscribe(t *testing.T) {
	ctx := context.Background()
	r := newTestRegistry(t, RegistryOptions{})
	var mu sync.Mutex
	var got []Event
	unsubscribe := r.Subscribe(func(e Event) {
		mu.Lock()
		got = append(got, e)
		mu.Unlock()
	})
	if _, err := r.Register(ctx, desc("policy.t.x", ModeDecision, 1, `{}`)); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Register(ctx, desc("policy.t.x", ModeDecision, 1, `{}`)); err == nil {
		t.Fatal("duplicate accepted")
	}
	if err := r.Unregister(ctx, "policy.t.x"); err != nil {
		t.Fatal(err)
	}
	unsubscribe()
	if _, err := r.Register(ctx, desc("policy.t.y", ModeDecision, 1, `{}`)); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(got) != 2 {
		t.Fatalf("%d events, want 2 (refusals and post-unsubscribe changes are silent)", len(got))
	}
	if got[0].Type != EventRegistered || got[0].PolicyID != "policy.t.x" || len(got[0].Descriptors) != 5 {
		t.Errorf("first event %+v", got[0])
	}
	if got[1].Type != EventUnregistered || len(got[1].Descriptors) != 4 {
		t.Errorf("second event %+v", got[1])
	}
}

package conformance_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/concord-macp/concord/host/cmthash"
	"github.com/concord-macp/concord/host/kernel"
	"github.com/concord-macp/concord/host/rpc"
	"github.com/concord-macp/concord/host/server"
	"github.com/concord-macp/concord/internal/servertest"
	"github.com/concord-macp/concord/macperr"
	"github.com/concord-macp/concord/modes-wasm/multiround"
	adminv1 "github.com/concord-macp/concord/proto/concord/admin/v1"
	decisionv1 "github.com/concord-macp/concord/proto/macp/modes/decision/v1"
	multiroundv1 "github.com/concord-macp/concord/proto/macp/modes/multi_round/v1"
	macpv1 "github.com/concord-macp/concord/proto/macp/v1"
)

// The parity contract (schemas/parity/contract.json of the specification)
// pins the wire facts that MACP implementations share. Each section names
// the implementations that must assert it (applies_to); this test asserts
// every section naming "macp-runtime" against Concord's own code and a real
// server, field by field: a section decodes strictly, so a field added by a
// newer contract fails the test until it is asserted here.

// vendoredContract is the copy versioned with the code (see parity/SOURCE.md).
const vendoredContract = "parity/contract.json"

// contractEnv names another copy to assert instead, e.g. the
// specification's newest.
const contractEnv = "CONCORD_PARITY_CONTRACT"

// runtimeRole is the applies_to entry of a runtime.
const runtimeRole = "macp-runtime"

// sectionChecks asserts each section a runtime must assert.
var sectionChecks = map[string]func(t *testing.T, srv *servertest.Server, raw json.RawMessage){
	"protocol":              checkProtocol,
	"modes":                 checkModes,
	"defaults":              checkDefaults,
	"error_codes":           checkErrorCodes,
	"commitment_hash":       checkCommitmentHash,
	"contribute_payload":    checkContributePayload,
	"contribute_acceptance": checkContributeAcceptance,
	"proposal_disposition":  checkProposalDispositionSection,
}

// digestChecks name the tests that assert, with SPEC-DIGEST's values, what
// sections newer than the vendored contract pin.
var digestChecks = map[string]string{"proposal_disposition": "TestProposalDispositions"}

// sdkSections are the contract's sections for SDKs only (retry policy,
// projection anomalies): a runtime has nothing to assert in them.
var sdkSections = []string{"retry", "projection_anomaly"}

type contract struct {
	Version  string                     `json:"contract_version"`
	Sections map[string]json.RawMessage `json:"sections"`
}

func contractPath() string {
	if p := os.Getenv(contractEnv); p != "" {
		return p
	}
	return vendoredContract
}

func loadContract(t *testing.T) contract {
	t.Helper()
	raw, err := os.ReadFile(contractPath())
	if err != nil {
		t.Fatalf("parity contract: %v", err)
	}
	var c contract
	strictJSON(t, "the contract root", raw, &c)
	if c.Sections == nil {
		t.Fatal("the parity contract has no sections")
	}
	return c
}

// strictJSON decodes raw into v, refusing unknown keys except the
// contract's annotations ("$comment", keys starting with "_").
func strictJSON(t *testing.T, what string, raw json.RawMessage, v any) {
	t.Helper()
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(raw, &obj); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	for k := range obj {
		if strings.HasPrefix(k, "_") || strings.HasPrefix(k, "$comment") {
			delete(obj, k)
		}
	}
	clean, _ := json.Marshal(obj)
	dec := json.NewDecoder(bytes.NewReader(clean))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		t.Fatalf("%s has a field this test does not assert (a newer contract?): %v", what, err)
	}
}

// sectionHead is what every section carries besides its values.
type sectionHead struct {
	AppliesTo []string `json:"applies_to"`
	Source    string   `json:"source"`
}

// TestParityContract asserts every runtime section of the parity contract.
func TestParityContract(t *testing.T) {
	c := loadContract(t)
	if !strings.HasPrefix(c.Version, "1.") {
		t.Fatalf("contract_version %q: this test asserts contract 1.x", c.Version)
	}
	t.Logf("parity contract %s from %s", c.Version, contractPath())
	srv := servertest.Start(t, server.Config{Memory: true})
	for _, name := range slices.Sorted(func(yield func(string) bool) {
		for n := range c.Sections {
			if !yield(n) {
				return
			}
		}
	}) {
		raw := c.Sections[name]
		var head sectionHead
		if err := json.Unmarshal(raw, &head); err != nil || len(head.AppliesTo) == 0 || head.Source == "" {
			t.Errorf("section %s lacks applies_to or source: %v", name, err)
			continue
		}
		check, handled := sectionChecks[name]
		switch runtime := slices.Contains(head.AppliesTo, runtimeRole); {
		case runtime && !handled:
			t.Errorf("section %s applies to runtimes and has no assertion here", name)
		case !runtime && handled:
			t.Errorf("section %s no longer applies to runtimes; drop its assertion", name)
		case !runtime && !slices.Contains(sdkSections, name):
			t.Errorf("section %s is new to this test (applies to %v)", name, head.AppliesTo)
		case !runtime:
			t.Logf("section %s applies to %v only: nothing for a runtime to assert", name, head.AppliesTo)
		default:
			t.Run(name, func(t *testing.T) { check(t, srv, raw) })
		}
	}
	for name := range sectionChecks {
		if _, ok := c.Sections[name]; !ok {
			t.Logf("section %s is not in contract %s; %s asserts the behaviour with the digest's values", name, c.Version, digestChecks[name])
		}
	}
}

// TestParityContractSource checks that the vendored copy is the one
// parity/SOURCE.md describes.
func TestParityContractSource(t *testing.T) {
	raw, err := os.ReadFile(vendoredContract)
	if err != nil {
		t.Fatal(err)
	}
	note, err := os.ReadFile(filepath.Join(filepath.Dir(vendoredContract), "SOURCE.md"))
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(raw)
	m := regexp.MustCompile(`sha256 of contract.json: ([0-9a-f]{64})`).FindSubmatch(note)
	if m == nil || string(m[1]) != hex.EncodeToString(sum[:]) {
		t.Fatalf("parity/contract.json (sha256 %x) is not the copy parity/SOURCE.md records", sum)
	}
	var c contract
	_ = json.Unmarshal(raw, &c)
	if !strings.Contains(string(note), "`contract_version` is `"+c.Version+"`") {
		t.Fatalf("parity/SOURCE.md does not name contract_version %s", c.Version)
	}
}

// ─── protocol ───────────────────────────────────────────────────────────

func checkProtocol(t *testing.T, srv *servertest.Server, raw json.RawMessage) {
	var s struct {
		sectionHead
		MacpVersion string `json:"macp_version"`
	}
	strictJSON(t, "protocol", raw, &s)
	if s.MacpVersion != kernel.ProtocolVersion {
		t.Fatalf("macp_version %q, Concord speaks %q", s.MacpVersion, kernel.ProtocolVersion)
	}
	ctx := context.Background()
	init, err := srv.Client(servertest.GRPC, "").Initialize(ctx, connect.NewRequest(&macpv1.InitializeRequest{SupportedProtocolVersions: []string{s.MacpVersion}}))
	if err != nil || init.Msg.GetSelectedProtocolVersion() != s.MacpVersion {
		t.Fatalf("Initialize with %q: %v %v", s.MacpVersion, init, err)
	}
	env := servertest.Envelope("macp.mode.decision.v1", "SessionStart", "m0", servertest.NewSessionID(), decisionStart("1.0.0", "cfg-1", ""))
	env.MacpVersion = s.MacpVersion
	if ack := srv.Send(t, "coordinator", env); !ack.GetOk() {
		t.Fatalf("an envelope of macp_version %q is refused: %v", s.MacpVersion, ack.GetError())
	}
	env = servertest.Envelope("macp.mode.decision.v1", "SessionStart", "m0", servertest.NewSessionID(), decisionStart("1.0.0", "cfg-1", ""))
	env.MacpVersion = s.MacpVersion + ".0"
	if ack := srv.Send(t, "coordinator", env); ack.GetError().GetCode() != string(macperr.UnsupportedProtocolVersion) {
		t.Fatalf("an envelope of macp_version %q: %v, want UNSUPPORTED_PROTOCOL_VERSION", env.MacpVersion, ack)
	}
}

// ─── modes ──────────────────────────────────────────────────────────────

func checkModes(t *testing.T, srv *servertest.Server, raw json.RawMessage) {
	var s struct {
		sectionHead
		Standard  []string `json:"standard"`
		Extension []string `json:"extension"`
	}
	strictJSON(t, "modes", raw, &s)
	ctx := context.Background()
	c := srv.Client(servertest.GRPC, "")
	std, err := c.ListModes(ctx, connect.NewRequest(&macpv1.ListModesRequest{}))
	if err != nil {
		t.Fatal(err)
	}
	ext, err := c.ListExtModes(ctx, connect.NewRequest(&macpv1.ListExtModesRequest{}))
	if err != nil {
		t.Fatal(err)
	}
	if got := modeNames(std.Msg.GetModes()); !sameSet(got, s.Standard) {
		t.Errorf("ListModes serves %v, the contract's standard modes are %v", got, s.Standard)
	}
	if got := modeNames(ext.Msg.GetModes()); !sameSet(got, s.Extension) {
		t.Errorf("ListExtModes serves %v, the contract's extension modes are %v", got, s.Extension)
	}
	all := append(slices.Clone(s.Standard), s.Extension...)
	init, err := c.Initialize(ctx, connect.NewRequest(&macpv1.InitializeRequest{SupportedProtocolVersions: []string{"1.0"}}))
	if err != nil || !sameSet(init.Msg.GetSupportedModes(), all) {
		t.Errorf("Initialize supported_modes %v, want %v (%v)", init.Msg.GetSupportedModes(), all, err)
	}
	man, err := c.GetManifest(ctx, connect.NewRequest(&macpv1.GetManifestRequest{}))
	if err != nil || !sameSet(man.Msg.GetManifest().GetSupportedModes(), all) {
		t.Errorf("manifest supported_modes %v, want %v (%v)", man.Msg.GetManifest().GetSupportedModes(), all, err)
	}
}

func modeNames(ds []*macpv1.ModeDescriptor) []string {
	out := make([]string, 0, len(ds))
	for _, d := range ds {
		out = append(out, d.GetMode())
	}
	return out
}

// sameSet reports whether a and b hold the same strings, in any order.
func sameSet(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}

// ─── defaults ───────────────────────────────────────────────────────────

func decisionStart(modeVersion, configurationVersion, policyVersion string) *macpv1.SessionStartPayload {
	return &macpv1.SessionStartPayload{Intent: "parity", Participants: []string{"coordinator", "alice"},
		ModeVersion: modeVersion, ConfigurationVersion: configurationVersion, PolicyVersion: policyVersion, TtlMs: 60_000}
}

func checkDefaults(t *testing.T, srv *servertest.Server, raw json.RawMessage) {
	var s struct {
		sectionHead
		ModeVersion                string `json:"mode_version"`
		ConfigurationVersion       string `json:"configuration_version"`
		PolicyVersion              string `json:"policy_version"`
		PolicyBuilderSchemaVersion uint32 `json:"policy_builder_schema_version"`
	}
	strictJSON(t, "defaults", raw, &s)
	ctx := context.Background()
	c := srv.Client(servertest.GRPC, "coordinator")
	std, _ := c.ListModes(ctx, connect.NewRequest(&macpv1.ListModesRequest{}))
	ext, _ := c.ListExtModes(ctx, connect.NewRequest(&macpv1.ListExtModesRequest{}))
	modes := append(std.Msg.GetModes(), ext.Msg.GetModes()...)
	if len(modes) == 0 {
		t.Fatal("no modes listed")
	}
	for _, d := range modes {
		if d.GetModeVersion() != s.ModeVersion {
			t.Errorf("mode %s is served at version %q, the default mode_version is %q", d.GetMode(), d.GetModeVersion(), s.ModeVersion)
		}
		// A session that takes every default, leaving policy_version empty,
		// starts, and binds the default policy.
		sid := servertest.NewSessionID()
		env := servertest.Envelope(d.GetMode(), "SessionStart", "m0", sid, decisionStart(s.ModeVersion, s.ConfigurationVersion, ""))
		if ack := srv.Send(t, "coordinator", env); !ack.GetOk() {
			t.Errorf("%s: a SessionStart with the default versions is refused: %v", d.GetMode(), ack.GetError())
			continue
		}
		md, err := c.GetSession(ctx, connect.NewRequest(&macpv1.GetSessionRequest{SessionId: sid}))
		if err != nil {
			t.Fatal(err)
		}
		if got := md.Msg.GetMetadata(); got.GetPolicyVersion() != s.PolicyVersion || got.GetConfigurationVersion() != s.ConfigurationVersion ||
			got.GetModeVersion() != s.ModeVersion {
			t.Errorf("%s: a session with policy_version \"\" binds %q (versions %q %q), want %q", d.GetMode(),
				got.GetPolicyVersion(), got.GetModeVersion(), got.GetConfigurationVersion(), s.PolicyVersion)
		}
		// Naming the default policy explicitly is the same.
		env = servertest.Envelope(d.GetMode(), "SessionStart", "m0", servertest.NewSessionID(), decisionStart(s.ModeVersion, s.ConfigurationVersion, s.PolicyVersion))
		if ack := srv.Send(t, "coordinator", env); !ack.GetOk() {
			t.Errorf("%s: a SessionStart naming %s is refused: %v", d.GetMode(), s.PolicyVersion, ack.GetError())
		}
	}
	op := srv.Client(servertest.GRPC, "operator")
	if p, err := op.GetPolicy(ctx, connect.NewRequest(&macpv1.GetPolicyRequest{PolicyId: s.PolicyVersion})); err != nil || p.Msg.GetPolicyDescriptor().GetPolicyId() != s.PolicyVersion {
		t.Errorf("GetPolicy(%s): %v %v; the default policy is always registered", s.PolicyVersion, p, err)
	}
	if un, err := op.UnregisterPolicy(ctx, connect.NewRequest(&macpv1.UnregisterPolicyRequest{PolicyId: s.PolicyVersion})); err != nil || un.Msg.GetOk() {
		t.Errorf("UnregisterPolicy(%s): %v %v; the default policy is reserved", s.PolicyVersion, un, err)
	}
	// A policy built with the recommended schema_version registers.
	reg, err := op.RegisterPolicy(ctx, connect.NewRequest(&macpv1.RegisterPolicyRequest{PolicyDescriptor: &macpv1.PolicyDescriptor{
		PolicyId: "policy.parity.builder", Mode: "macp.mode.decision.v1", Description: "policy-builder default schema version",
		SchemaVersion: s.PolicyBuilderSchemaVersion, Rules: `{"voting":{"algorithm":"majority","threshold":0.5}}`,
	}}))
	if err != nil || !reg.Msg.GetOk() {
		t.Errorf("RegisterPolicy at schema_version %d: %v %v", s.PolicyBuilderSchemaVersion, reg, err)
	}
}

// ─── error_codes ────────────────────────────────────────────────────────

// grpcStatusOf is the registry's gRPC mapping (SPEC-DIGEST §12.3, with the
// recommended INVALID_ARGUMENT for INVALID_ENVELOPE).
var grpcStatusOf = map[string]connect.Code{
	"UNAUTHENTICATED": connect.CodeUnauthenticated, "FORBIDDEN": connect.CodePermissionDenied,
	"SESSION_NOT_FOUND": connect.CodeNotFound, "SESSION_NOT_OPEN": connect.CodeFailedPrecondition,
	"SESSION_ALREADY_EXISTS": connect.CodeAlreadyExists, "INVALID_ENVELOPE": connect.CodeInvalidArgument,
	"UNSUPPORTED_PROTOCOL_VERSION": connect.CodeFailedPrecondition, "MODE_NOT_SUPPORTED": connect.CodeFailedPrecondition,
	"PAYLOAD_TOO_LARGE": connect.CodeResourceExhausted, "RATE_LIMITED": connect.CodeResourceExhausted,
	"INVALID_SESSION_ID": connect.CodeInvalidArgument, "INTERNAL_ERROR": connect.CodeInternal,
	"UNKNOWN_POLICY_VERSION": connect.CodeFailedPrecondition, "POLICY_DENIED": connect.CodeFailedPrecondition,
	"INVALID_POLICY_DEFINITION": connect.CodeInvalidArgument,
}

// reservedCode is permanent in the registry, yet never emitted: a repeated
// message_id gets a duplicate Ack instead.
const reservedCode = "DUPLICATE_MESSAGE"

func checkErrorCodes(t *testing.T, srv *servertest.Server, raw json.RawMessage) {
	var s struct {
		sectionHead
		Permanent  []string `json:"permanent"`
		Deprecated []string `json:"deprecated"`
	}
	strictJSON(t, "error_codes", raw, &s)
	var emitted []string
	for _, c := range macperr.Codes() {
		emitted = append(emitted, string(c))
	}
	want := slices.DeleteFunc(slices.Clone(s.Permanent), func(c string) bool { return c == reservedCode })
	if !slices.Contains(s.Permanent, reservedCode) || !sameSet(emitted, want) {
		t.Errorf("macperr.Codes() = %v; the contract's permanent codes less %s are %v", emitted, reservedCode, want)
	}
	for _, c := range s.Deprecated {
		if slices.Contains(emitted, c) || macperr.Code(c).Known() {
			t.Errorf("deprecated code %s is among the codes Concord emits", c)
		}
	}
	for _, c := range macperr.Codes() {
		if got, want := rpc.StatusCode(c), grpcStatusOf[string(c)]; got != want || got == connect.CodeUnknown {
			t.Errorf("%s surfaces as gRPC %v, the registry maps it to %v", c, got, want)
		}
	}
	// DUPLICATE_MESSAGE is never emitted: a repeated message is a duplicate Ack.
	sid := servertest.NewSessionID()
	start := servertest.Envelope("macp.mode.decision.v1", "SessionStart", "m0", sid, decisionStart("1.0.0", "cfg-1", ""))
	srv.Send(t, "coordinator", start)
	proposal := servertest.Envelope("macp.mode.decision.v1", "Proposal", "m1", sid, &decisionv1.ProposalPayload{ProposalId: "p1", Option: "ship"})
	for i := range 2 {
		ack := srv.Send(t, "alice", proposal)
		if !ack.GetOk() || ack.GetDuplicate() != (i == 1) || ack.GetError() != nil {
			t.Fatalf("send %d of one message: %v; a repeat is a duplicate Ack, never %s", i+1, ack, reservedCode)
		}
	}
}

// ─── commitment_hash ────────────────────────────────────────────────────

func checkCommitmentHash(t *testing.T, srv *servertest.Server, raw json.RawMessage) {
	var s struct {
		sectionHead
		Pattern string   `json:"pattern"`
		Accept  []string `json:"accept"`
		Reject  []string `json:"reject"`
	}
	strictJSON(t, "commitment_hash", raw, &s)
	pattern, err := regexp.Compile(s.Pattern)
	if err != nil {
		t.Fatalf("pattern: %v", err)
	}
	if len(s.Accept) == 0 || len(s.Reject) == 0 {
		t.Fatal("the accept/reject table is empty")
	}
	for _, h := range s.Accept {
		if !pattern.MatchString(h) || !cmthash.WellFormed(h) {
			t.Errorf("%q: pattern %t, cmthash.WellFormed %t; want both to accept", h, pattern.MatchString(h), cmthash.WellFormed(h))
		}
	}
	for _, h := range s.Reject {
		if pattern.MatchString(h) || cmthash.WellFormed(h) {
			t.Errorf("%q: pattern %t, cmthash.WellFormed %t; want both to reject", h, pattern.MatchString(h), cmthash.WellFormed(h))
		}
	}
	// Concord's own hashes have the format.
	own, err := cmthash.Hash(parityCommitment(nil))
	if err != nil || !pattern.MatchString(own) {
		t.Errorf("cmthash.Hash = %q (%v), which the pattern rejects", own, err)
	}
	// The table through a real session: every rejected value makes the
	// Commitment INVALID_ENVELOPE, every accepted one resolves a session.
	for i, h := range s.Accept {
		sid := proposedDecision(t, srv)
		for j, bad := range s.Reject {
			env := servertest.Envelope("macp.mode.decision.v1", "Commitment", fmt.Sprintf("bad-%d", j), sid,
				parityCommitment(&macpv1.CommitmentRef{SessionId: "earlier-session", CommitmentHash: bad}))
			if ack := srv.Send(t, "coordinator", env); ack.GetOk() || ack.GetError().GetCode() != string(macperr.InvalidEnvelope) {
				t.Errorf("supersedes.commitment_hash %q: %v, want INVALID_ENVELOPE", bad, ack)
			}
		}
		env := servertest.Envelope("macp.mode.decision.v1", "Commitment", fmt.Sprintf("good-%d", i), sid,
			parityCommitment(&macpv1.CommitmentRef{SessionId: "earlier-session", CommitmentHash: h}))
		if ack := srv.Send(t, "coordinator", env); !ack.GetOk() || ack.GetSessionState() != macpv1.SessionState_SESSION_STATE_RESOLVED {
			t.Errorf("supersedes.commitment_hash %q: %v, want the session resolved", h, ack)
		}
	}
}

func parityCommitment(supersedes *macpv1.CommitmentRef) *macpv1.CommitmentPayload {
	return &macpv1.CommitmentPayload{CommitmentId: "c1", Action: "decision.selected", AuthorityScope: "team", Reason: "parity",
		ModeVersion: "1.0.0", ConfigurationVersion: "cfg-1", OutcomePositive: true, Supersedes: supersedes}
}

// proposedDecision opens a Decision session with one proposal, ready for a
// Commitment under the default policy.
func proposedDecision(t *testing.T, srv *servertest.Server) string {
	t.Helper()
	sid := servertest.NewSessionID()
	if ack := srv.Send(t, "coordinator", servertest.Envelope("macp.mode.decision.v1", "SessionStart", "m0", sid, decisionStart("1.0.0", "cfg-1", ""))); !ack.GetOk() {
		t.Fatalf("SessionStart: %v", ack)
	}
	if ack := srv.Send(t, "alice", servertest.Envelope("macp.mode.decision.v1", "Proposal", "m1", sid, &decisionv1.ProposalPayload{ProposalId: "p1", Option: "ship"})); !ack.GetOk() {
		t.Fatalf("Proposal: %v", ack)
	}
	return sid
}

// ─── contribute_payload / contribute_acceptance ─────────────────────────

type contributeVector struct {
	Name          string `json:"name"`
	Value         string `json:"value"`
	ProtobufHex   string `json:"protobuf_hex"`
	LegacyJSONHex string `json:"legacy_json_hex"`
	DecodeOnly    bool   `json:"decode_only"`
}

func checkContributePayload(t *testing.T, srv *servertest.Server, raw json.RawMessage) {
	var s struct {
		sectionHead
		CanonicalEncoding string   `json:"canonical_encoding"`
		DecodeOrder       []string `json:"decode_order"`
		FirstByte         struct {
			Protobuf   string `json:"protobuf"`
			LegacyJSON string `json:"legacy_json"`
		} `json:"first_byte"`
		Vectors []json.RawMessage `json:"vectors"`
	}
	strictJSON(t, "contribute_payload", raw, &s)
	if s.CanonicalEncoding != "protobuf" {
		t.Errorf("canonical_encoding %q: Concord's clients and fixtures send ContributePayload protobuf", s.CanonicalEncoding)
	}
	// Concord decodes both encodings (modes-wasm/multiround.DecodeContribute).
	// Its order differs from a literal "JSON, then protobuf" only for
	// payloads that are valid canonical protobuf and also parse as JSON: it
	// reads those as protobuf (RATIONALE.md, "The parity contract"). The
	// vectors below pin the outcomes, including the collision cases.
	if !sameSet(s.DecodeOrder, []string{"json", "protobuf"}) {
		t.Errorf("decode_order %v: Concord decodes exactly protobuf and legacy JSON", s.DecodeOrder)
	}
	protoMarker := markerByte(t, s.FirstByte.Protobuf)
	jsonMarker := markerByte(t, s.FirstByte.LegacyJSON)
	if tag := protowire.AppendTag(nil, 1, protowire.BytesType); protoMarker != tag[0] {
		t.Errorf("first_byte.protobuf %s, but ContributePayload.value (field 1, length-delimited) starts with 0x%02x", s.FirstByte.Protobuf, tag[0])
	}
	if jsonMarker != '{' {
		t.Errorf("first_byte.legacy_json %s is not '{'", s.FirstByte.LegacyJSON)
	}
	var cases []contribution
	legacy := 0
	for i, raw := range s.Vectors {
		var v contributeVector
		strictJSON(t, fmt.Sprintf("contribute_payload.vectors[%d]", i), raw, &v)
		pb := hexBytes(t, v.Name, v.ProtobufHex)
		if pb[0] != protoMarker {
			t.Errorf("%s: protobuf_hex starts with 0x%02x, not first_byte.protobuf", v.Name, pb[0])
		}
		if !v.DecodeOnly {
			enc, err := proto.Marshal(&multiroundv1.ContributePayload{Value: v.Value})
			if err != nil || !bytes.Equal(enc, pb) {
				t.Errorf("%s: ContributePayload{%q} encodes to %x, the vector says %s", v.Name, v.Value, enc, v.ProtobufHex)
			}
		}
		cases = append(cases, contribution{name: v.Name + "/protobuf", payload: pb, value: v.Value})
		if v.LegacyJSONHex != "" {
			legacy++
			js := hexBytes(t, v.Name, v.LegacyJSONHex)
			if js[0] != jsonMarker {
				t.Errorf("%s: legacy_json_hex starts with 0x%02x, not first_byte.legacy_json", v.Name, js[0])
			}
			cases = append(cases, contribution{name: v.Name + "/legacy_json", payload: js, value: v.Value})
		}
		if strings.HasPrefix(v.Name, "collision_") && !json.Valid(pb) {
			t.Errorf("%s: its protobuf bytes do not parse as JSON, so it is no collision", v.Name)
		}
	}
	if len(cases) == 0 || legacy == 0 {
		t.Fatalf("the vectors exercise protobuf %d times and legacy JSON %d times; both decoders need one", len(cases)-legacy, legacy)
	}
	checkContributions(t, srv, cases)
}

func checkContributeAcceptance(t *testing.T, srv *servertest.Server, raw json.RawMessage) {
	var s struct {
		sectionHead
		EmptyPayload string `json:"empty_payload"`
	}
	strictJSON(t, "contribute_acceptance", raw, &s)
	sid := multiRoundSession(t, srv)
	ack := srv.Send(t, "alice", servertest.Envelope("ext.multi_round.v1", "Contribute", "empty", sid, nil))
	switch s.EmptyPayload {
	case "reject":
		if ack.GetOk() || ack.GetError().GetCode() != string(macperr.InvalidEnvelope) {
			t.Fatalf("an empty Contribute: %v, want INVALID_ENVELOPE", ack)
		}
	default:
		t.Fatalf("empty_payload %q: Concord rejects an empty Contribute (%v)", s.EmptyPayload, ack.GetError())
	}
}

func markerByte(t *testing.T, s string) byte {
	t.Helper()
	b, err := hex.DecodeString(strings.TrimPrefix(s, "0x"))
	if err != nil || len(b) != 1 || !strings.HasPrefix(s, "0x") {
		t.Fatalf("first_byte %q is not 0x and two hex digits", s)
	}
	return b[0]
}

func hexBytes(t *testing.T, name, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil || len(b) == 0 {
		t.Fatalf("%s: %q is not a hex payload: %v", name, s, err)
	}
	return b
}

// contribution is a Contribute payload and the value it must decode to.
type contribution struct {
	name    string
	payload []byte
	value   string
}

// checkContributions decodes each payload with the multi_round mode's
// decoder and sends it as alice's Contribute in a real session, where the
// mode's state must then hold the value as alice's latest.
func checkContributions(t *testing.T, srv *servertest.Server, cases []contribution) {
	t.Helper()
	sid := multiRoundSession(t, srv)
	for i, c := range cases {
		if got, err := multiround.DecodeContribute(c.payload); err != nil || got != c.value {
			t.Errorf("%s: DecodeContribute = %q, %v; want %q", c.name, got, err, c.value)
		}
		env := servertest.Envelope("ext.multi_round.v1", "Contribute", fmt.Sprintf("c%d", i), sid, nil)
		env.Payload = c.payload
		if ack := srv.Send(t, "alice", env); !ack.GetOk() {
			t.Errorf("%s: Contribute refused: %v", c.name, ack.GetError())
			continue
		}
		if got := modeState(t, srv, "coordinator", sid)["final"].(map[string]any)["alice"]; got != c.value {
			t.Errorf("%s: the session holds alice's value %q, want %q", c.name, got, c.value)
		}
	}
}

// multiRoundSession opens a multi_round session for alice and bob; bob
// never contributes, so it never converges and takes any number of
// Contributes from alice.
func multiRoundSession(t *testing.T, srv *servertest.Server) string {
	t.Helper()
	sid := servertest.NewSessionID()
	start := servertest.Envelope("ext.multi_round.v1", "SessionStart", "m0", sid, &macpv1.SessionStartPayload{
		Intent: "parity", Participants: []string{"alice", "bob"}, ModeVersion: "1.0.0", ConfigurationVersion: "cfg-1", TtlMs: 60_000})
	if ack := srv.Send(t, "coordinator", start); !ack.GetOk() {
		t.Fatalf("multi_round SessionStart: %v", ack)
	}
	return sid
}

// modeState returns a session's mode state as the initiator reads it.
func modeState(t *testing.T, srv *servertest.Server, initiator, sid string) map[string]any {
	t.Helper()
	res, err := srv.Admin(initiator).InspectSession(context.Background(), connect.NewRequest(&adminv1.InspectSessionRequest{SessionId: sid}))
	if err != nil {
		t.Fatal(err)
	}
	var state map[string]any
	if err := json.Unmarshal([]byte(res.Msg.GetModeStateJson()), &state); err != nil {
		t.Fatalf("mode state: %v", err)
	}
	return state
}

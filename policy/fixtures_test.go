package policy

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	"github.com/concord-macp/concord/abi/guest"
	"github.com/concord-macp/concord/macperr"
	"github.com/concord-macp/concord/modes-wasm/decision"
	_ "github.com/concord-macp/concord/proto/macp/modes/decision/v1"
	macpv1 "github.com/concord-macp/concord/proto/macp/v1"
)

// conformanceDir holds the MACP conformance fixtures, ../shared next to the
// repository root.
const conformanceDir = "../../shared/macp-spec/conformance"

type fixture struct {
	Mode                 string           `json:"mode"`
	Initiator            string           `json:"initiator"`
	Participants         []string         `json:"participants"`
	ModeVersion          string           `json:"mode_version"`
	ConfigurationVersion string           `json:"configuration_version"`
	PolicyVersion        string           `json:"policy_version"`
	Policy               map[string]any   `json:"policy"`
	Messages             []fixtureMessage `json:"messages"`
	ExpectedFinalState   string           `json:"expected_final_state"`
}

type fixtureMessage struct {
	Sender            string         `json:"sender"`
	MessageType       string         `json:"message_type"`
	PayloadType       string         `json:"payload_type"`
	Payload           map[string]any `json:"payload"`
	Expect            string         `json:"expect"`
	ExpectedErrorCode string         `json:"expected_error_code"`
}

// TestDecisionFixtures drives every Decision conformance fixture through the
// Decision mode's logic and this engine, in the kernel's order for a
// Commitment: Authorize (FORBIDDEN), the mode's eligibility
// (INVALID_ENVELOPE), then Govern (POLICY_DENIED).
func TestDecisionFixtures(t *testing.T) {
	paths, err := filepath.Glob(filepath.Join(conformanceDir, "decision_*.json"))
	if err != nil {
		t.Fatal(err)
	}
	if len(paths) == 0 {
		t.Fatalf("no decision fixtures in %s", conformanceDir)
	}
	inline := 0
	for _, path := range paths {
		raw, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		var f fixture
		if err := json.Unmarshal(raw, &f); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		if f.Policy != nil {
			inline++
		}
		t.Run(strings.TrimSuffix(filepath.Base(path), ".json"), func(t *testing.T) {
			runDecisionFixture(t, &f)
		})
	}
	if inline < 10 {
		t.Errorf("only %d fixtures carry an inline policy", inline)
	}
}

// stripAnnotations drops "_"-prefixed keys at every level.
func stripAnnotations(v any) any {
	switch v := v.(type) {
	case map[string]any:
		out := map[string]any{}
		for k, x := range v {
			if !strings.HasPrefix(k, "_") {
				out[k] = stripAnnotations(x)
			}
		}
		return out
	case []any:
		out := make([]any, len(v))
		for i, x := range v {
			out[i] = stripAnnotations(x)
		}
		return out
	default:
		return v
	}
}

// registerFixturePolicy registers a fixture's inline policy as the
// conformance runner does.
func registerFixturePolicy(t *testing.T, reg *Registry, p map[string]any) {
	t.Helper()
	p = stripAnnotations(p).(map[string]any)
	rules, err := json.Marshal(p["rules"])
	if err != nil {
		t.Fatal(err)
	}
	d := &macpv1.PolicyDescriptor{
		PolicyId:      p["policy_id"].(string),
		Mode:          p["mode"].(string),
		Description:   p["description"].(string),
		Rules:         string(rules),
		SchemaVersion: uint32(p["schema_version"].(float64)),
	}
	if _, err := reg.Register(context.Background(), d); err != nil {
		t.Fatalf("RegisterPolicy: %v", err)
	}
}

func runDecisionFixture(t *testing.T, f *fixture) {
	ctx := context.Background()
	reg, err := NewRegistry(ctx, RegistryOptions{Logger: quietLog})
	if err != nil {
		t.Fatal(err)
	}
	eng, err := NewEngine(context.Background(), EngineOptions{Registry: reg})
	if err != nil {
		t.Fatal(err)
	}
	if f.Policy != nil {
		registerFixturePolicy(t, reg, f.Policy)
	}
	bound, err := eng.Bind(ctx, f.Mode, f.PolicyVersion)
	if err != nil {
		t.Fatalf("Bind: %v", err)
	}
	meta := &macpv1.SessionMetadata{
		SessionId:            "0b6f1c1e-8f5a-4c47-9d4e-1f2a3b4c5d6e",
		Mode:                 f.Mode,
		ModeVersion:          f.ModeVersion,
		ConfigurationVersion: f.ConfigurationVersion,
		PolicyVersion:        bound.PolicyId,
		Initiator:            f.Initiator,
		Participants:         f.Participants,
	}
	sess := &guest.Session{
		SessionID:            meta.SessionId,
		Mode:                 f.Mode,
		ModeVersion:          f.ModeVersion,
		ConfigurationVersion: f.ConfigurationVersion,
		PolicyVersion:        bound.PolicyId,
		Initiator:            f.Initiator,
		Participants:         f.Participants,
		PolicyRules:          bound.Rules,
		PolicySchemaVersion:  bound.SchemaVersion,
	}
	mode := decision.Mode{}
	start := mode.Step(&guest.StepRequest{Session: *sess, Envelope: guest.Envelope{
		Mode: f.Mode, MessageType: decision.MsgSessionStart, MessageID: "m0", Sender: f.Initiator,
	}})
	if !start.Accepted {
		t.Fatalf("SessionStart: %s", start.Message)
	}
	state := start.State
	resolved := false

	for i, m := range f.Messages {
		where := fmt.Sprintf("message %d (%s from %s)", i+1, m.MessageType, m.Sender)
		payload, err := encodeFixturePayload(m.PayloadType, m.Payload)
		if err != nil {
			t.Fatalf("%s: %v", where, err)
		}
		env := guest.Envelope{
			Mode: f.Mode, MessageType: m.MessageType, MessageID: fmt.Sprintf("m%d", i+1),
			SessionID: meta.SessionId, Sender: m.Sender, Payload: payload,
		}
		code := ""
		var next []byte
		if m.MessageType == decision.MsgCommitment {
			code, next = commitDecision(t, eng, mode, sess, meta, bound, state, env)
		} else {
			res := mode.Step(&guest.StepRequest{State: state, Envelope: env, Session: *sess})
			code, next = string(res.Code), res.State
			if res.Accepted {
				code = ""
			}
		}
		switch m.Expect {
		case "accept":
			if code != "" {
				t.Fatalf("%s: rejected with %s, want accept", where, code)
			}
			state = next
			if m.MessageType == decision.MsgCommitment {
				resolved = true
			}
		case "reject":
			if code == "" {
				t.Fatalf("%s: accepted, want %s", where, m.ExpectedErrorCode)
			}
			if m.ExpectedErrorCode != "" && code != m.ExpectedErrorCode {
				t.Fatalf("%s: %s, want %s", where, code, m.ExpectedErrorCode)
			}
		default:
			t.Fatalf("%s: expect %q", where, m.Expect)
		}
	}
	if want := f.ExpectedFinalState == "Resolved"; resolved != want {
		t.Errorf("resolved = %v, fixture's final state is %s", resolved, f.ExpectedFinalState)
	}
}

// commitDecision runs one Commitment the way the kernel does and returns
// the rejection code ("" when accepted) and the new state.
func commitDecision(t *testing.T, eng *Engine, mode decision.Mode, sess *guest.Session, meta *macpv1.SessionMetadata,
	bound *macpv1.PolicyDescriptor, state []byte, env guest.Envelope) (string, []byte) {
	t.Helper()
	ctx := context.Background()
	var c macpv1.CommitmentPayload
	if err := proto.Unmarshal(env.Payload, &c); err != nil {
		t.Fatalf("commitment payload: %v", err)
	}
	in := &Input{Policy: bound, Session: meta, Sender: env.Sender, Commitment: &c, NowUnixMs: 1}
	if err := eng.Authorize(ctx, in); err != nil {
		if macperr.CodeOf(err) != macperr.Forbidden {
			t.Fatalf("Authorize: %v", err)
		}
		return string(macperr.Forbidden), nil
	}
	res := mode.Step(&guest.StepRequest{State: state, Envelope: env, Session: *sess})
	if !res.Accepted {
		return string(res.Code), nil
	}
	before := state
	in.ModeState = func(context.Context) ([]byte, error) { return mode.View(before, sess) }
	d, err := eng.Govern(ctx, in)
	if err != nil {
		t.Fatalf("Govern: %v", err)
	}
	if !d.Allow {
		if len(d.Reasons) == 0 {
			t.Errorf("denied without reasons")
		}
		t.Logf("POLICY_DENIED: %s", strings.Join(d.Reasons, "; "))
		return string(macperr.PolicyDenied), nil
	}
	return "", res.State
}

// encodeFixturePayload builds the named payload from the fixture's
// snake_case object: bytes fields are a plain string (its UTF-8 bytes) or
// an array of byte values, and a Commitment without outcome_positive is
// positive.
func encodeFixturePayload(typeName string, payload map[string]any) ([]byte, error) {
	mt, err := protoregistry.GlobalTypes.FindMessageByName(protoreflect.FullName(typeName))
	if err != nil {
		return nil, err
	}
	fields := mt.Descriptor().Fields()
	obj := map[string]any{}
	for k, v := range payload {
		if strings.HasPrefix(k, "_") {
			continue
		}
		if fd := fields.ByName(protoreflect.Name(k)); fd != nil && fd.Kind() == protoreflect.BytesKind {
			b, err := fixtureBytes(v)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", k, err)
			}
			v = base64.StdEncoding.EncodeToString(b)
		}
		obj[k] = v
	}
	if typeName == "macp.v1.CommitmentPayload" {
		if _, ok := obj["outcome_positive"]; !ok {
			obj["outcome_positive"] = true
		}
	}
	js, err := json.Marshal(obj)
	if err != nil {
		return nil, err
	}
	m := mt.New().Interface()
	if err := protojson.Unmarshal(js, m); err != nil {
		return nil, err
	}
	return proto.Marshal(m)
}

func fixtureBytes(v any) ([]byte, error) {
	switch v := v.(type) {
	case string:
		return []byte(v), nil
	case []any:
		b := make([]byte, len(v))
		for i, x := range v {
			n, ok := x.(float64)
			if !ok || n < 0 || n > 255 || n != float64(byte(n)) {
				return nil, fmt.Errorf("byte %d is %v", i, x)
			}
			b[i] = byte(n)
		}
		return b, nil
	case nil:
		return nil, nil
	}
	return nil, fmt.Errorf("unsupported bytes value %T", v)
}

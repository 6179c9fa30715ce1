package decision

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	"github.com/concord-macp/concord/abi/guest"
	"github.com/concord-macp/concord/macperr"
)

// conformanceDir holds the MACP conformance fixtures: ../shared next to the
// repository root.
const conformanceDir = "../../../shared/macp-spec/conformance"

type fixture struct {
	Mode                 string           `json:"mode"`
	Initiator            string           `json:"initiator"`
	Participants         []string         `json:"participants"`
	ModeVersion          string           `json:"mode_version"`
	ConfigurationVersion string           `json:"configuration_version"`
	PolicyVersion        string           `json:"policy_version"`
	Messages             []fixtureMessage `json:"messages"`
	ExpectedFinalState   string           `json:"expected_final_state"`
	ExpectedModeState    map[string]any   `json:"expected_mode_state"`
}

type fixtureMessage struct {
	Sender            string         `json:"sender"`
	MessageType       string         `json:"message_type"`
	PayloadType       string         `json:"payload_type"`
	Payload           map[string]any `json:"payload"`
	Expect            string         `json:"expect"`
	ExpectedErrorCode string         `json:"expected_error_code"`
}

// TestConformanceFixtures drives the mode with every Decision fixture. The
// host's share is left out: a Commitment the fixture rejects with
// POLICY_DENIED (governance) or FORBIDDEN (commitment authority) is not
// offered to the mode and counts as not applied.
func TestConformanceFixtures(t *testing.T) {
	paths, err := filepath.Glob(filepath.Join(conformanceDir, "decision_*.json"))
	if err != nil {
		t.Fatal(err)
	}
	if len(paths) == 0 {
		t.Fatalf("no decision_*.json fixtures in %s", conformanceDir)
	}
	for _, path := range paths {
		t.Run(filepath.Base(path), func(t *testing.T) {
			raw, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			var f fixture
			if err := json.Unmarshal(raw, &f); err != nil {
				t.Fatal(err)
			}
			runFixture(t, &f)
		})
	}
}

func runFixture(t *testing.T, f *fixture) {
	if f.Mode != ModeName || f.ModeVersion != ModeVersion {
		t.Fatalf("fixture is for %s %s", f.Mode, f.ModeVersion)
	}
	sess := &guest.Session{
		SessionID:            "0b6f1c1e-8f5a-4c47-9d4e-1f2a3b4c5d6e",
		Mode:                 f.Mode,
		ModeVersion:          f.ModeVersion,
		ConfigurationVersion: f.ConfigurationVersion,
		PolicyVersion:        f.PolicyVersion,
		Initiator:            f.Initiator,
		Participants:         f.Participants,
	}
	if sess.PolicyVersion == "" {
		sess.PolicyVersion = "policy.default"
	}
	state := start(t, sess)
	for i, m := range f.Messages {
		where := fmt.Sprintf("message %d (%s from %s)", i+1, m.MessageType, m.Sender)
		if m.MessageType == MsgCommitment && m.Expect == "reject" &&
			(m.ExpectedErrorCode == string(macperr.PolicyDenied) || m.ExpectedErrorCode == string(macperr.Forbidden)) {
			continue
		}
		payload, err := encodePayload(m.PayloadType, m.Payload)
		if err != nil {
			t.Fatalf("%s: %v", where, err)
		}
		res := run(sess, state, msg{m.Sender, m.MessageType, payload})
		switch m.Expect {
		case "accept":
			if !res.Accepted {
				t.Fatalf("%s: rejected with %s: %s", where, res.Code, res.Message)
			}
			state = res.State
		case "reject":
			if res.Accepted {
				t.Fatalf("%s: accepted, want %s", where, m.ExpectedErrorCode)
			}
			if m.ExpectedErrorCode != "" && string(res.Code) != m.ExpectedErrorCode {
				t.Fatalf("%s: code %s (%s), want %s", where, res.Code, res.Message, m.ExpectedErrorCode)
			}
		default:
			t.Fatalf("%s: expect %q", where, m.Expect)
		}
	}

	got := view(t, state)
	if resolved := got["phase"] == PhaseCommitted; resolved != (f.ExpectedFinalState == "Resolved") {
		t.Errorf("phase %v, but the fixture's final state is %s", got["phase"], f.ExpectedFinalState)
	}
	if f.ExpectedModeState != nil {
		if err := subset(f.ExpectedModeState, got, "$"); err != nil {
			b, _ := json.Marshal(got)
			t.Errorf("mode state: %v\nview: %s", err, b)
		}
	}
}

// encodePayload builds the named payload message from the fixture's
// snake_case object, as the conformance runner does: bytes fields are given
// as an array of byte values or as a plain string (its UTF-8 bytes), and a
// Commitment without outcome_positive is positive.
func encodePayload(typeName string, payload map[string]any) ([]byte, error) {
	mt, err := protoregistry.GlobalTypes.FindMessageByName(protoreflect.FullName(typeName))
	if err != nil {
		return nil, err
	}
	fields := mt.Descriptor().Fields()
	obj := map[string]any{}
	for k, v := range payload {
		if len(k) > 0 && k[0] == '_' {
			continue
		}
		if fd := fields.ByName(protoreflect.Name(k)); fd != nil && fd.Kind() == protoreflect.BytesKind {
			b, err := fixtureBytes(v)
			if err != nil {
				return nil, fmt.Errorf("%s: %v", k, err)
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

// subset reports whether want is contained in got: objects by key, arrays by
// prefix, everything else by equality.
func subset(want, got any, path string) error {
	switch w := want.(type) {
	case map[string]any:
		g, ok := got.(map[string]any)
		if !ok {
			return fmt.Errorf("%s: got %T, want an object", path, got)
		}
		for k, wv := range w {
			gv, ok := g[k]
			if !ok {
				return fmt.Errorf("%s.%s: missing", path, k)
			}
			if err := subset(wv, gv, path+"."+k); err != nil {
				return err
			}
		}
		return nil
	case []any:
		g, ok := got.([]any)
		if !ok {
			return fmt.Errorf("%s: got %T, want an array", path, got)
		}
		if len(g) < len(w) {
			return fmt.Errorf("%s: %d elements, want at least %d", path, len(g), len(w))
		}
		for i := range w {
			if err := subset(w[i], g[i], fmt.Sprintf("%s[%d]", path, i)); err != nil {
				return err
			}
		}
		return nil
	default:
		if !reflect.DeepEqual(want, got) {
			return fmt.Errorf("%s: got %v, want %v", path, got, want)
		}
		return nil
	}
}

func TestSubset(t *testing.T) {
	got := map[string]any{"a": []any{1.0, 2.0}, "b": map[string]any{"c": "x", "d": true}}
	for _, want := range []map[string]any{{}, {"a": []any{1.0}}, {"b": map[string]any{"d": true}}} {
		if err := subset(want, got, "$"); err != nil {
			t.Errorf("%v: %v", want, err)
		}
	}
	for _, want := range []map[string]any{{"z": 1.0}, {"a": []any{2.0}}, {"a": []any{1.0, 2.0, 3.0}}, {"b": map[string]any{"c": "y"}}, {"a": "x"}} {
		if err := subset(want, got, "$"); err == nil {
			t.Errorf("%v is not a subset but passed", want)
		}
	}
}

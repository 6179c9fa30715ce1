// Package fixturetest drives a mode natively with the specification's
// conformance fixtures, the way the host would: SessionStart first, then
// every message in order, each accepted step's state feeding the next, and
// finally the mode's view against the fixture's expected mode state. Only
// tests import it.
package fixturetest

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	"github.com/concord-macp/concord/abi/guest"
	// Payload types the fixtures name, registered for lookup by name.
	_ "github.com/concord-macp/concord/proto/macp/modes/decision/v1"
	_ "github.com/concord-macp/concord/proto/macp/modes/handoff/v1"
	_ "github.com/concord-macp/concord/proto/macp/modes/multi_round/v1"
	_ "github.com/concord-macp/concord/proto/macp/modes/proposal/v1"
	_ "github.com/concord-macp/concord/proto/macp/modes/quorum/v1"
	_ "github.com/concord-macp/concord/proto/macp/modes/task/v1"
	_ "github.com/concord-macp/concord/proto/macp/v1"
)

// Dir returns the conformance fixture folder: shared/macp-spec/conformance
// beside the repository, found from the test's working directory.
func Dir(t testing.TB) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return filepath.Join(dir, "..", "shared", "macp-spec", "conformance")
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("fixturetest: no go.mod above the working directory")
		}
		dir = parent
	}
}

// Options tune Run for one mode.
type Options struct {
	// HostOwns reports whether a rejected Commitment's code is decided by
	// the host (POLICY_DENIED, or FORBIDDEN from commitment.authority) and
	// so not checked against the mode. Nil means POLICY_DENIED and FORBIDDEN.
	HostOwns func(code string) bool
	// AfterStep, if set, is called with every accepted state.
	AfterStep func(t *testing.T, state []byte)
}

// Run plays every fixture matching pattern (e.g. "task_*.json") through m.
func Run(t *testing.T, m guest.Mode, pattern string, opts Options) {
	if opts.HostOwns == nil {
		opts.HostOwns = func(code string) bool { return code == "POLICY_DENIED" || code == "FORBIDDEN" }
	}
	dir := Dir(t)
	files, err := filepath.Glob(filepath.Join(dir, pattern))
	if err != nil || len(files) == 0 {
		t.Fatalf("no fixtures %s in %s: %v", pattern, dir, err)
	}
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) { play(t, m, file, opts) })
	}
}

func play(t *testing.T, m guest.Mode, file string, opts Options) {
	raw, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var f fixture
	if err := json.Unmarshal(raw, &f); err != nil {
		t.Fatal(err)
	}
	if want := m.Describe().Mode; f.Mode != want {
		t.Fatalf("fixture mode %s, mode under test %s", f.Mode, want)
	}
	sess := fixtureSession(t, &f)
	res := m.Step(&guest.StepRequest{
		Envelope:  guest.Envelope{MACPVersion: "1.0", Mode: f.Mode, MessageType: "SessionStart", MessageID: "m0", SessionID: sess.SessionID, Sender: f.Initiator},
		Session:   sess,
		NowUnixMs: 1_000,
	})
	if !res.Accepted {
		t.Fatalf("SessionStart rejected: %s %s", res.Code, res.Message)
	}
	state := res.State
	checked := 0
	for i, msg := range f.Messages {
		env := guest.Envelope{
			MACPVersion: "1.0", Mode: f.Mode, MessageType: msg.MessageType,
			MessageID: fmt.Sprintf("m%d", i+1), SessionID: sess.SessionID, Sender: msg.Sender,
			Payload: encodeFixturePayload(t, msg.PayloadType, msg.Payload),
		}
		if msg.MessageType == "Commitment" && msg.Expect == "reject" && opts.HostOwns(msg.ExpectedErrorCode) {
			continue
		}
		res := m.Step(&guest.StepRequest{State: state, Envelope: env, Session: sess, NowUnixMs: int64(1_000 + i + 1)})
		checked++
		switch msg.Expect {
		case "accept":
			if !res.Accepted {
				t.Fatalf("message %d (%s from %s): rejected %s %s, want accept", i+1, msg.MessageType, msg.Sender, res.Code, res.Message)
			}
			state = res.State
			if opts.AfterStep != nil {
				opts.AfterStep(t, state)
			}
		case "reject":
			if res.Accepted {
				t.Fatalf("message %d (%s from %s): accepted, want reject %s", i+1, msg.MessageType, msg.Sender, msg.ExpectedErrorCode)
			}
			if msg.ExpectedErrorCode != "" && res.Code != msg.ExpectedErrorCode {
				t.Fatalf("message %d (%s from %s): code %s (%s), want %s", i+1, msg.MessageType, msg.Sender, res.Code, res.Message, msg.ExpectedErrorCode)
			}
		default:
			t.Fatalf("message %d: expect %q", i+1, msg.Expect)
		}
	}
	if checked == 0 {
		t.Fatal("no message checked")
	}
	view, err := m.View(state, &sess)
	if err != nil {
		t.Fatal(err)
	}
	if len(f.ExpectedModeState) > 0 {
		var want, got any
		if err := json.Unmarshal(f.ExpectedModeState, &want); err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(view, &got); err != nil {
			t.Fatal(err)
		}
		if err := Subset(want, got, "$"); err != nil {
			t.Fatalf("mode state %s: %v", view, err)
		}
	}
}

type fixture struct {
	Mode                 string   `json:"mode"`
	Initiator            string   `json:"initiator"`
	Participants         []string `json:"participants"`
	ModeVersion          string   `json:"mode_version"`
	ConfigurationVersion string   `json:"configuration_version"`
	PolicyVersion        string   `json:"policy_version"`
	Policy               *struct {
		PolicyID      string                     `json:"policy_id"`
		SchemaVersion uint32                     `json:"schema_version"`
		Rules         map[string]json.RawMessage `json:"rules"`
	} `json:"policy"`
	Messages []struct {
		Sender            string          `json:"sender"`
		MessageType       string          `json:"message_type"`
		PayloadType       string          `json:"payload_type"`
		Payload           json.RawMessage `json:"payload"`
		Expect            string          `json:"expect"`
		ExpectedErrorCode string          `json:"expected_error_code"`
	} `json:"messages"`
	ExpectedModeState json.RawMessage `json:"expected_mode_state"`
}

// fixtureSession builds the bound session the host would pass.
func fixtureSession(t testing.TB, f *fixture) guest.Session {
	t.Helper()
	s := guest.Session{
		SessionID:            "fixture-session-0000000001",
		Mode:                 f.Mode,
		ModeVersion:          f.ModeVersion,
		ConfigurationVersion: f.ConfigurationVersion,
		PolicyVersion:        f.PolicyVersion,
		Initiator:            f.Initiator,
		Participants:         f.Participants,
		PolicyRules:          "{}",
		PolicySchemaVersion:  1,
	}
	if s.PolicyVersion == "" {
		s.PolicyVersion = "policy.default"
	}
	if f.Policy != nil {
		rules := map[string]json.RawMessage{}
		for k, v := range f.Policy.Rules {
			if !strings.HasPrefix(k, "_") {
				rules[k] = v
			}
		}
		b, err := json.Marshal(rules)
		if err != nil {
			t.Fatal(err)
		}
		s.PolicyRules = string(b)
		s.PolicySchemaVersion = f.Policy.SchemaVersion
	}
	return s
}

// encodeFixturePayload turns a fixture payload object into protobuf bytes:
// bytes fields are plain strings (UTF-8) or arrays, not base64, and a
// Commitment without outcome_positive means true.
func encodeFixturePayload(t testing.TB, typeName string, raw json.RawMessage) []byte {
	t.Helper()
	mt, err := protoregistry.GlobalTypes.FindMessageByName(protoreflect.FullName(typeName))
	if err != nil {
		t.Fatalf("payload type %s: %v", typeName, err)
	}
	msg := mt.New()
	obj := map[string]any{}
	if len(raw) > 0 {
		if err := json.Unmarshal(raw, &obj); err != nil {
			t.Fatal(err)
		}
	}
	fields := msg.Descriptor().Fields()
	for k, v := range obj {
		fd := fields.ByName(protoreflect.Name(k))
		if fd == nil || fd.Kind() != protoreflect.BytesKind {
			continue
		}
		var b []byte
		switch v := v.(type) {
		case string:
			b = []byte(v)
		case []any:
			for _, x := range v {
				b = append(b, byte(x.(float64)))
			}
		}
		obj[k] = base64.StdEncoding.EncodeToString(b)
	}
	if typeName == "macp.v1.CommitmentPayload" {
		if _, ok := obj["outcome_positive"]; !ok {
			obj["outcome_positive"] = true
		}
	}
	j, err := json.Marshal(obj)
	if err != nil {
		t.Fatal(err)
	}
	if err := protojson.Unmarshal(j, msg.Interface()); err != nil {
		t.Fatalf("payload %s: %v", j, err)
	}
	b, err := proto.Marshal(msg.Interface())
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// Subset reports where got does not contain want: objects by key, arrays
// by prefix, other values by equality.
func Subset(want, got any, path string) error {
	switch w := want.(type) {
	case map[string]any:
		g, ok := got.(map[string]any)
		if !ok {
			return fmt.Errorf("%s: want object, got %v", path, got)
		}
		for k, wv := range w {
			gv, ok := g[k]
			if !ok {
				return fmt.Errorf("%s.%s: missing", path, k)
			}
			if err := Subset(wv, gv, path+"."+k); err != nil {
				return err
			}
		}
	case []any:
		g, ok := got.([]any)
		if !ok || len(g) < len(w) {
			return fmt.Errorf("%s: want array prefix %v, got %v", path, w, got)
		}
		for i := range w {
			if err := Subset(w[i], g[i], fmt.Sprintf("%s[%d]", path, i)); err != nil {
				return err
			}
		}
	default:
		if !reflect.DeepEqual(want, got) {
			return fmt.Errorf("%s: want %v, got %v", path, want, got)
		}
	}
	return nil
}

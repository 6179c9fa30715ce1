// Package fixturetest drives a mode natively with the specification's
// conformance fixtures, the way the host would: SessionStart first, then
// every message in order, each accepted step's state feeding the next, and
// finally the mode's view against the fixture's expected mode state. Only
// tests import it.
package fixturetest

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/concord-macp/concord/abi/guest"
	"github.com/concord-macp/concord/internal/fixture"
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
	f, err := fixture.Load(file)
	if err != nil {
		t.Fatal(err)
	}
	if want := m.Describe().Mode; f.Mode != want {
		t.Fatalf("fixture mode %s, mode under test %s", f.Mode, want)
	}
	sess := fixtureSession(t, f)
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
		}
		if env.Payload, err = msg.EncodePayload(); err != nil {
			t.Fatalf("message %d: %v", i+1, err)
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
			if msg.ExpectedErrorCode != "" && string(res.Code) != msg.ExpectedErrorCode {
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
		if err := fixture.Subset(want, got, "$"); err != nil {
			t.Fatalf("mode state %s: %v", view, err)
		}
	}
}

// fixtureSession builds the bound session the host would pass.
func fixtureSession(t testing.TB, f *fixture.Fixture) guest.Session {
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
		rules, err := f.RulesJSON()
		if err != nil {
			t.Fatal(err)
		}
		s.PolicyRules = rules
		s.PolicySchemaVersion = f.Policy.SchemaVersion
	}
	return s
}

// Subset reports where got does not contain want (see fixture.Subset).
func Subset(want, got any, path string) error { return fixture.Subset(want, got, path) }

package conformance_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"sync"
	"testing"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	"github.com/concord-macp/concord/host/access"
	"github.com/concord-macp/concord/host/cluster"
	"github.com/concord-macp/concord/host/server"
	"github.com/concord-macp/concord/internal/natstest"
	"github.com/concord-macp/concord/internal/servertest"
	adminv1 "github.com/concord-macp/concord/proto/concord/admin/v1"

	// Payload types the fixtures name, registered for lookup by name.
	_ "github.com/concord-macp/concord/proto/macp/modes/decision/v1"
	_ "github.com/concord-macp/concord/proto/macp/modes/handoff/v1"
	_ "github.com/concord-macp/concord/proto/macp/modes/multi_round/v1"
	_ "github.com/concord-macp/concord/proto/macp/modes/proposal/v1"
	_ "github.com/concord-macp/concord/proto/macp/modes/quorum/v1"
	_ "github.com/concord-macp/concord/proto/macp/modes/task/v1"
	macpv1 "github.com/concord-macp/concord/proto/macp/v1"
)

// fixtureDir is where CI and developers keep the specification material:
// shared/ beside the repository.
var fixtureDir = filepath.Join("..", "..", "shared", "macp-spec", "conformance")

type fixture struct {
	Mode                    string          `json:"mode"`
	Initiator               string          `json:"initiator"`
	Participants            []string        `json:"participants"`
	ModeVersion             string          `json:"mode_version"`
	ConfigurationVersion    string          `json:"configuration_version"`
	PolicyVersion           string          `json:"policy_version"`
	Policy                  json.RawMessage `json:"policy"`
	TTLMs                   int64           `json:"ttl_ms"`
	Messages                []message       `json:"messages"`
	ExpectedFinalState      string          `json:"expected_final_state"`
	ExpectResolutionPresent *bool           `json:"expect_resolution_present"`
	ExpectedResolution      map[string]any  `json:"expected_resolution"`
	ExpectedModeState       map[string]any  `json:"expected_mode_state"`
}

type message struct {
	Sender            string                     `json:"sender"`
	MessageType       string                     `json:"message_type"`
	PayloadType       string                     `json:"payload_type"`
	Payload           map[string]json.RawMessage `json:"payload"`
	Expect            string                     `json:"expect"`
	ExpectedErrorCode string                     `json:"expected_error_code"`
}

func loadFixtures(t *testing.T) map[string]fixture {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(fixtureDir, "*.json"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no conformance fixtures under %s (shared/ must sit beside the repository): %v", fixtureDir, err)
	}
	out := map[string]fixture{}
	for _, f := range files {
		name := strings.TrimSuffix(filepath.Base(f), ".json")
		if name == "schema" {
			continue
		}
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var fx fixture
		if err := json.Unmarshal(b, &fx); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		out[name] = fx
	}
	return out
}

// TestFixtures runs every fixture. A fixture that needs something Concord
// does not serve yet is reported as skipped with the reason, never as passed.
func TestFixtures(t *testing.T) {
	runFixtures(t, servertest.Start(t, server.Config{Memory: true}))
}

// TestFixturesOnACluster runs every fixture against one node of a cluster
// of three, each node with an embedded NATS server (host/cluster).
func TestFixturesOnACluster(t *testing.T) {
	routes := natstest.FreeAddrs(t, 3)
	nodes := make([]*servertest.Server, 3)
	var wg sync.WaitGroup
	for i := range nodes {
		wg.Go(func() {
			nodes[i] = servertest.Start(t, server.Config{
				Logger: natstest.Logger(t),
				Cluster: &cluster.Config{
					Name: fmt.Sprintf("f%d", i+1), Embedded: &cluster.Embedded{Listen: routes[i], Peers: routes},
				},
			})
		})
	}
	wg.Wait()
	runFixtures(t, nodes[1])
}

func runFixtures(t *testing.T, srv *servertest.Server) {
	served := map[string]bool{}
	init, err := srv.Client(servertest.GRPC, "").Initialize(context.Background(),
		connect.NewRequest(&macpv1.InitializeRequest{SupportedProtocolVersions: []string{"1.0"}}))
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range init.Msg.GetSupportedModes() {
		served[m] = true
	}
	fixtures := loadFixtures(t)
	names := make([]string, 0, len(fixtures))
	for n := range fixtures {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, name := range names {
		fx := fixtures[name]
		t.Run(name, func(t *testing.T) {
			if !served[fx.Mode] {
				t.Skipf("mode %s is not served by this build yet", fx.Mode)
			}
			runFixture(t, srv, fx)
		})
	}
}

// registerPolicy registers a fixture's inline policy, without its "_"
// annotations, through RegisterPolicy.
func registerPolicy(t *testing.T, srv *servertest.Server, raw json.RawMessage) {
	t.Helper()
	var p struct {
		PolicyID      string         `json:"policy_id"`
		Mode          string         `json:"mode"`
		Description   string         `json:"description"`
		Rules         map[string]any `json:"rules"`
		SchemaVersion uint32         `json:"schema_version"`
	}
	if err := json.Unmarshal(raw, &p); err != nil {
		t.Fatalf("inline policy: %v", err)
	}
	rules, _ := json.Marshal(stripAnnotations(p.Rules))
	res, err := srv.Client(servertest.GRPC, "operator").RegisterPolicy(context.Background(), connect.NewRequest(&macpv1.RegisterPolicyRequest{
		PolicyDescriptor: &macpv1.PolicyDescriptor{PolicyId: p.PolicyID, Mode: p.Mode, Description: p.Description, Rules: string(rules), SchemaVersion: p.SchemaVersion},
	}))
	if err != nil {
		t.Fatalf("RegisterPolicy: %v", err)
	}
	if !res.Msg.GetOk() && !strings.Contains(res.Msg.GetError(), "already registered") {
		t.Fatalf("RegisterPolicy %s refused: %s", p.PolicyID, res.Msg.GetError())
	}
}

// stripAnnotations drops keys beginning with "_" at every level.
func stripAnnotations(v any) any {
	switch x := v.(type) {
	case map[string]any:
		out := map[string]any{}
		for k, e := range x {
			if !strings.HasPrefix(k, "_") {
				out[k] = stripAnnotations(e)
			}
		}
		return out
	case []any:
		for i := range x {
			x[i] = stripAnnotations(x[i])
		}
	}
	return v
}

func runFixture(t *testing.T, srv *servertest.Server, fx fixture) {
	ctx := context.Background()
	if len(fx.Policy) > 0 {
		registerPolicy(t, srv, fx.Policy)
	}
	sid := servertest.NewSessionID()
	start := servertest.Envelope(fx.Mode, "SessionStart", "m0", sid, &macpv1.SessionStartPayload{
		Intent: "conformance", Participants: fx.Participants, ModeVersion: fx.ModeVersion,
		ConfigurationVersion: fx.ConfigurationVersion, PolicyVersion: fx.PolicyVersion, TtlMs: fx.TTLMs,
	})
	start.Sender = fx.Initiator
	if ack := srv.Send(t, fx.Initiator, start); !ack.GetOk() {
		t.Fatalf("SessionStart refused: %v", ack.GetError())
	}
	acceptedIDs := []string{"m0"}
	for i, m := range fx.Messages {
		payload, err := buildPayload(m)
		if err != nil {
			t.Fatalf("message %d: %v", i+1, err)
		}
		env := servertest.Envelope(fx.Mode, m.MessageType, fmt.Sprintf("m%d", i+1), sid, payload)
		env.Sender = m.Sender
		ack := srv.Send(t, m.Sender, env)
		switch m.Expect {
		case "accept":
			if !ack.GetOk() || ack.GetDuplicate() {
				t.Fatalf("message %d (%s from %s): want accepted, got %s %s", i+1, m.MessageType, m.Sender, ack.GetError().GetCode(), ack.GetError().GetMessage())
			}
			acceptedIDs = append(acceptedIDs, env.MessageId)
		case "reject":
			if ack.GetOk() {
				t.Fatalf("message %d (%s from %s): want rejected, got accepted", i+1, m.MessageType, m.Sender)
			}
			if m.ExpectedErrorCode != "" && ack.GetError().GetCode() != m.ExpectedErrorCode {
				t.Fatalf("message %d (%s from %s): want %s, got %s (%s)", i+1, m.MessageType, m.Sender, m.ExpectedErrorCode, ack.GetError().GetCode(), ack.GetError().GetMessage())
			}
		default:
			t.Fatalf("message %d: unknown expect %q", i+1, m.Expect)
		}
	}

	in, err := srv.Server().Kernel().As(access.Caller{ID: fx.Initiator}).Inspect(ctx, sid)
	if err != nil {
		t.Fatal(err)
	}
	md := in.Session.GetMetadata()
	wantState := "SESSION_STATE_" + strings.ToUpper(fx.ExpectedFinalState)
	if md.GetState().String() != wantState {
		t.Fatalf("final state %v, want %s", md.GetState(), wantState)
	}
	res := in.Session.GetResolution()
	wantRes := fx.ExpectedFinalState == "Resolved"
	if fx.ExpectResolutionPresent != nil {
		wantRes = *fx.ExpectResolutionPresent
	}
	if (res != nil) != wantRes {
		t.Fatalf("resolution present = %t, want %t", res != nil, wantRes)
	}
	if len(fx.ExpectedResolution) > 0 {
		got := protoAsJSON(t, res)
		if path, ok := subset(fx.ExpectedResolution, got); !ok {
			t.Fatalf("resolution differs at %s: got %v", path, got)
		}
	}
	// Replay equivalence: the log replayed through the pinned module and
	// policy reproduces the session exactly.
	rep, err := srv.Admin(fx.Initiator).ReplaySession(ctx, connect.NewRequest(&adminv1.ReplaySessionRequest{SessionId: sid}))
	if err != nil {
		t.Fatalf("replay: %v", err)
	}
	if !rep.Msg.GetExact() || rep.Msg.GetState() != md.GetState() || rep.Msg.GetEntries() != uint64(len(acceptedIDs)) {
		t.Fatalf("replay of %d entries (want %d) diverges: exact=%t state=%v %v", rep.Msg.GetEntries(), len(acceptedIDs), rep.Msg.GetExact(), rep.Msg.GetState(), rep.Msg.GetDivergences())
	}
	if len(fx.ExpectedModeState) > 0 {
		raw := in.ModeState
		var got any
		if err := json.Unmarshal(raw, &got); err != nil {
			t.Fatalf("mode state is not JSON: %v: %s", err, raw)
		}
		if path, ok := subset(fx.ExpectedModeState, got); !ok {
			t.Fatalf("mode state differs at %s: got %s", path, raw)
		}
	}
}

// buildPayload encodes a fixture payload as the protobuf message its
// payload_type names. Fixture bytes fields hold plain strings (their UTF-8
// bytes) or arrays of byte values.
func buildPayload(m message) (proto.Message, error) {
	mt, err := protoregistry.GlobalTypes.FindMessageByName(protoreflect.FullName(m.PayloadType))
	if err != nil {
		return nil, fmt.Errorf("payload type %s: %w", m.PayloadType, err)
	}
	msg := mt.New().Interface()
	fields := mt.Descriptor().Fields()
	obj := map[string]json.RawMessage{}
	for k, v := range m.Payload {
		if strings.HasPrefix(k, "_") {
			continue
		}
		obj[k] = v
		fd := fields.ByName(protoreflect.Name(k))
		if fd == nil || fd.Kind() != protoreflect.BytesKind {
			continue
		}
		var b []byte
		var s string
		var ints []int
		if json.Unmarshal(v, &s) == nil {
			b = []byte(s)
		} else if json.Unmarshal(v, &ints) == nil {
			for _, i := range ints {
				b = append(b, byte(i))
			}
		} else {
			return nil, fmt.Errorf("bytes field %s: unsupported value %s", k, v)
		}
		enc, _ := json.Marshal(base64.StdEncoding.EncodeToString(b))
		obj[k] = enc
	}
	if m.MessageType == "Commitment" {
		if _, ok := obj["outcome_positive"]; !ok {
			obj["outcome_positive"] = json.RawMessage("true")
		}
	}
	raw, _ := json.Marshal(obj)
	if err := protojson.Unmarshal(raw, msg); err != nil {
		return nil, fmt.Errorf("payload %s: %w", m.PayloadType, err)
	}
	return msg, nil
}

func protoAsJSON(t *testing.T, m proto.Message) any {
	t.Helper()
	b, err := protojson.MarshalOptions{UseProtoNames: true, EmitUnpopulated: true}.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	var v any
	_ = json.Unmarshal(b, &v)
	return v
}

// subset reports whether want is contained in got: objects by key, arrays by
// prefix, scalars by equality. On failure it returns the path that differs.
func subset(want, got any) (string, bool) {
	switch w := want.(type) {
	case map[string]any:
		g, ok := got.(map[string]any)
		if !ok {
			return "", false
		}
		for k, wv := range w {
			if strings.HasPrefix(k, "_") {
				continue
			}
			if p, ok := subset(wv, g[k]); !ok {
				return "." + k + p, false
			}
		}
		return "", true
	case []any:
		g, ok := got.([]any)
		if !ok || len(g) < len(w) {
			return "", false
		}
		for i := range w {
			if p, ok := subset(w[i], g[i]); !ok {
				return fmt.Sprintf("[%d]%s", i, p), false
			}
		}
		return "", true
	default:
		return "", reflect.DeepEqual(want, got)
	}
}

package ui_test

import (
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/concord-macp/concord/host/server"
	"github.com/concord-macp/concord/internal/servertest"
	decisionv1 "github.com/concord-macp/concord/proto/macp/modes/decision/v1"
	macpv1 "github.com/concord-macp/concord/proto/macp/v1"
)

const decision = "macp.mode.decision.v1"

// startServer starts a real server (dev auth on loopback: the console acts
// as the local operator).
func startServer(t *testing.T) *servertest.Server {
	t.Helper()
	return servertest.Start(t, server.Config{Memory: true, SweepInterval: -1})
}

// browser is a plain HTTP client with a cookie jar that does not follow
// redirects, so tests see every answer.
func browser(t *testing.T) *http.Client {
	t.Helper()
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	return &http.Client{Jar: jar, Timeout: 30 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

// get fetches path and returns the status and body.
func get(t *testing.T, c *http.Client, base, path string) (int, string) {
	t.Helper()
	res, err := c.Get(base + path)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(b)
}

// post submits a form as a same-origin browser would.
func post(t *testing.T, c *http.Client, base, path string, form url.Values) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, base+path, strings.NewReader(form.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", base)
	req.Header.Set("Sec-Fetch-Site", "same-origin")
	res, err := c.Do(req)
	if err != nil {
		t.Fatalf("POST %s: %v", path, err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(b)
}

func mustContain(t *testing.T, what, body string, wants ...string) {
	t.Helper()
	for _, w := range wants {
		if !strings.Contains(body, w) {
			t.Errorf("%s does not contain %q", what, w)
		}
	}
	if t.Failed() {
		t.Logf("%s:\n%.4000s", what, body)
		t.FailNow()
	}
}

// decisionSession runs a Decision session as coordinator, alice and bob up
// to (and, when commit is set, including) the Commitment, and returns its
// id.
func decisionSession(t *testing.T, srv *servertest.Server, policyVersion string, commit bool) string {
	t.Helper()
	id := servertest.NewSessionID()
	send := func(who, typ, msgID string, env *macpv1.Envelope) *macpv1.Ack {
		t.Helper()
		ack := srv.Send(t, who, env)
		if !ack.GetOk() {
			t.Fatalf("%s %s refused: %s %s", who, typ, ack.GetError().GetCode(), ack.GetError().GetMessage())
		}
		return ack
	}
	send("coordinator", "SessionStart", "m1", servertest.Envelope(decision, "SessionStart", "m1", id, &macpv1.SessionStartPayload{
		Intent: "pick a region", Participants: []string{"alice", "bob"}, ModeVersion: "1.0.0",
		ConfigurationVersion: "cfg-1", TtlMs: 600_000, PolicyVersion: policyVersion, ContextId: "ctx-" + id[:8],
	}))
	send("alice", "Proposal", "m2", servertest.Envelope(decision, "Proposal", "m2", id, &decisionv1.ProposalPayload{ProposalId: "p1", Option: "eu-west", Rationale: "closest"}))
	send("bob", "Evaluation", "m3", servertest.Envelope(decision, "Evaluation", "m3", id, &decisionv1.EvaluationPayload{ProposalId: "p1", Recommendation: "APPROVE", Confidence: 0.8, Reason: "latency is fine"}))
	send("alice", "Vote", "m4", servertest.Envelope(decision, "Vote", "m4", id, &decisionv1.VotePayload{ProposalId: "p1", Vote: "APPROVE"}))
	send("bob", "Vote", "m5", servertest.Envelope(decision, "Vote", "m5", id, &decisionv1.VotePayload{ProposalId: "p1", Vote: "APPROVE"}))
	if commit {
		send("coordinator", "Commitment", "m6", commitment(id, policyVersion))
	}
	return id
}

func commitment(id, policyVersion string) *macpv1.Envelope {
	return servertest.Envelope(decision, "Commitment", "m6", id, &macpv1.CommitmentPayload{
		CommitmentId: "c1", Action: "decision.selected", AuthorityScope: "deployment", Reason: "both approved",
		ModeVersion: "1.0.0", ConfigurationVersion: "cfg-1", PolicyVersion: policyVersion, OutcomePositive: true,
	})
}

// extModule builds the server tests' extension mode (ext.test.counter.v1)
// once per test binary.
var extModule = sync.OnceValues(func() ([]byte, error) {
	dir, err := os.MkdirTemp("", "concord-ui-extmode")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	file := filepath.Join(dir, "counter.wasm")
	cmd := exec.Command("go", "build", "-buildmode=c-shared", "-o", file, "../host/server/testdata/extmode")
	cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm")
	if out, err := cmd.CombinedOutput(); err != nil {
		return nil, &buildError{string(out), err}
	}
	return os.ReadFile(file)
})

type buildError struct {
	out string
	err error
}

func (e *buildError) Error() string { return "build the test mode: " + e.err.Error() + "\n" + e.out }

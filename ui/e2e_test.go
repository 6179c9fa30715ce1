package ui_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/concord-macp/concord/internal/servertest"
	decisionv1 "github.com/concord-macp/concord/proto/macp/modes/decision/v1"
	macpv1 "github.com/concord-macp/concord/proto/macp/v1"
	"github.com/concord-macp/concord/ui/login"
)

// chromiumPath is Debian's chromium, installed by .ci/run.
const chromiumPath = "/usr/bin/chromium"

// newBrowser starts headless Chromium with a fresh profile for the test.
func newBrowser(t *testing.T) context.Context {
	t.Helper()
	if _, err := exec.LookPath(chromiumPath); err != nil {
		t.Fatalf("the browser tests need Debian's chromium at %s (apt-get install -y chromium): %v", chromiumPath, err)
	}
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(chromiumPath),
		chromedp.Flag("headless", true),
		chromedp.Flag("no-sandbox", true),
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("no-first-run", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 1000),
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelCtx := chromedp.NewContext(actx)
	ctx, cancelTimeout := context.WithTimeout(ctx, 90*time.Second)
	t.Cleanup(func() { cancelTimeout(); cancelCtx(); cancelAlloc() })
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	return ctx
}

// artifacts is where screenshots go: $CONCORD_TEST_ARTIFACTS, or a folder
// in the system's temporary directory.
func artifacts(t *testing.T) string {
	dir := os.Getenv("CONCORD_TEST_ARTIFACTS")
	if dir == "" {
		dir = filepath.Join(os.TempDir(), "concord-ui-artifacts")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

func screenshot(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("screenshot %s: %v", name, err)
	}
	file := filepath.Join(artifacts(t), name+".png")
	if err := os.WriteFile(file, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s", file)
}

func run(t *testing.T, ctx context.Context, step string, actions ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	if err := chromedp.Do(ctx, actions...); err != nil {
		screenshot(t, ctx, "failed-"+strings.ReplaceAll(step, " ", "-"))
		t.Fatalf("%s: %v", step, err)
	}
}

// waitText waits until the element sel's text contains want.
func waitText(sel, want string) chromedp.Action[chromedp.Void] {
	return chromedp.Poll[chromedp.Void](`(() => { const e = document.querySelector(`+jsString(sel)+`); return !!e && e.textContent.includes(`+jsString(want)+`); })()`, chromedp.WithPollingTimeout(20*time.Second))
}

// submit sends a form's own fields (files included) from the page, as its
// submit button would, and shows the answer in place. chromedp v0.23 loses
// its target when a POST navigates the tab ("Not attached to an active
// page"), so the test does not let the browser navigate.
func submit(form, action string) chromedp.Action[chromedp.Void] {
	return chromedp.Evaluate[chromedp.Void](`(() => {
		const f = document.querySelector(` + jsString(form) + `);
		const data = new FormData(f);
		if (` + jsString(action) + ` !== "") { data.set("action", ` + jsString(action) + `); }
		fetch(f.getAttribute("action"), {method: "POST", body: data, credentials: "same-origin"})
			.then(r => r.text())
			.then(html => { document.open(); document.write(html); document.close(); });
	})()`)
}

func jsString(s string) string {
	r := strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`)
	return `"` + r.Replace(s) + `"`
}

func TestBrowserOperatorJourney(t *testing.T) {
	wasm, err := extModule()
	if err != nil {
		t.Fatal(err)
	}
	issuer := startIssuer(t)
	srv := startOIDCServer(t, issuer)
	ctx := newBrowser(t)
	issuer.QueueUser(operatorUser{sub: "ops-ann", scopes: login.Scopes{IsAdmin: true, IsObserver: true}})

	// Log in through the issuer and land on the overview.
	run(t, ctx, "log in", chromedp.Navigate(srv.URL+"/ui/"), waitText("h1", "Overview"), waitText("header .who", "ops-ann"))
	screenshot(t, ctx, "overview")

	// An agent opens a session over gRPC; its page shows the timeline
	// growing as the agents send.
	id := servertest.NewSessionID()
	send := func(who, typ, msgID string, env *macpv1.Envelope) {
		t.Helper()
		if ack := srv.Send(t, who, env); !ack.GetOk() {
			t.Fatalf("%s %s: %s", who, typ, ack.GetError().GetMessage())
		}
	}
	send("coordinator", "SessionStart", "m1", servertest.Envelope(decision, "SessionStart", "m1", id, &macpv1.SessionStartPayload{
		Intent: "pick a deployment region", Participants: []string{"alice", "bob"}, ModeVersion: "1.0.0",
		ConfigurationVersion: "cfg-1", TtlMs: 600_000, PolicyVersion: "policy.std.majority"}))
	send("alice", "Proposal", "m2", servertest.Envelope(decision, "Proposal", "m2", id, &decisionv1.ProposalPayload{ProposalId: "p1", Option: "eu-west", Rationale: "closest to our users"}))
	run(t, ctx, "open the session", chromedp.Navigate(srv.URL+"/ui/sessions/"+id), waitText("#timeline", "eu-west"), waitText("#live-status", "live"))
	send("bob", "Evaluation", "m3", servertest.Envelope(decision, "Evaluation", "m3", id, &decisionv1.EvaluationPayload{ProposalId: "p1", Recommendation: "APPROVE", Confidence: 0.8, Reason: "latency is fine"}))
	run(t, ctx, "see the evaluation arrive", waitText("#entry-3", "latency is fine"))
	send("alice", "Vote", "m4", servertest.Envelope(decision, "Vote", "m4", id, &decisionv1.VotePayload{ProposalId: "p1", Vote: "APPROVE"}))
	send("bob", "Vote", "m5", servertest.Envelope(decision, "Vote", "m5", id, &decisionv1.VotePayload{ProposalId: "p1", Vote: "APPROVE"}))
	send("coordinator", "Commitment", "m6", commitment(id, "policy.std.majority"))
	run(t, ctx, "see the commitment with its hash and decision",
		waitText("#entry-6", "decision.selected"), waitText("#commitment-hash", "sha256:"),
		waitText("#session-commitment", "allowed"), waitText("#session-summary", "RESOLVED"), waitText("#state-at", "#6 Commitment"))
	screenshot(t, ctx, "session-page")

	// Scrub back to before the votes: the bound policy would have denied.
	run(t, ctx, "reload at the end", chromedp.Navigate(srv.URL+"/ui/sessions/"+id), waitText("#state-at", "#6 Commitment"))
	run(t, ctx, "scrub back",
		chromedp.SetValue(chromedp.CSS("#scrub-at"), "3"),
		chromedp.Evaluate[chromedp.Void](`document.getElementById("scrub-at").dispatchEvent(new Event("change"))`),
		waitText("#state-at", "#3 Evaluation by bob"), waitText("#state-at", "would deny"))
	screenshot(t, ctx, "time-travel")

	// Upload a mode.
	module := filepath.Join(t.TempDir(), "counter.wasm")
	if err := os.WriteFile(module, wasm, 0o644); err != nil {
		t.Fatal(err)
	}
	run(t, ctx, "open the modes page", chromedp.Navigate(srv.URL+"/ui/modes"), waitText("h1", "Modes"))
	run(t, ctx, "upload a mode",
		chromedp.SetUploadFiles(chromedp.CSS(`input[name="module"]`), []string{module}),
		submit(`form[action="/ui/modes/upload"]`, ""))
	run(t, ctx, "see the upload accepted", waitText("#upload-ok", "ext.test.counter.v1"))
	screenshot(t, ctx, "mode-uploaded")

	// Push a policy whose shipped test fails: refused, with the test shown.
	failing := quorumOfTwo + "\ntest_two_pass if {\n\tgovern.allow with input as {\"state\": {\"votes\": {\"p1\": {\"a\": {\"vote\": \"APPROVE\"}, \"b\": {\"vote\": \"APPROVE\"}}}}}\n}\n"
	run(t, ctx, "open the policies page", chromedp.Navigate(srv.URL+"/ui/policies"), waitText("h1", "Policies"))
	run(t, ctx, "push a failing policy",
		chromedp.SetValue(chromedp.CSS(`input[name="policy_id"]`), "policy.acme.three-v1"),
		chromedp.SetValue(chromedp.CSS(`input[name="description"]`), "three approvals"),
		chromedp.SetValue(chromedp.CSS(`textarea[name="rego"]`), failing),
		submit(`form[action="/ui/policies/push"]`, "save"))
	run(t, ctx, "see the push refused", waitText("#push-error", "Not saved: 1 of 2 shipped test(s) failed."),
		waitText("#test-results", "test_two_pass"))
	screenshot(t, ctx, "policy-refused")
}

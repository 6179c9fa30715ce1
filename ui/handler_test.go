package ui_test

import (
	"bytes"
	"mime/multipart"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/concord-macp/concord/host/export"
	"github.com/concord-macp/concord/internal/servertest"
)

func TestEveryPageRendersForTheDevOperator(t *testing.T) {
	srv := startServer(t)
	id := decisionSession(t, srv, "", true)
	c := browser(t)
	pages := map[string][]string{
		"/ui/":                             {"<h1>Overview</h1>", "RESOLVED", "Messages per second", "<svg", "store size", "policy versions"},
		"/ui/sessions":                     {"<h1>Sessions</h1>", id, "coordinator"},
		"/ui/sessions/" + id:               {"Session <code>" + id, "Timeline", "APPROVE", "eu-west"},
		"/ui/modes":                        {"<h1>Modes</h1>", decision, "built-in", "Upload a mode"},
		"/ui/policies":                     {"<h1>Policies</h1>", "policy.default", "policy.std.majority", "Push a new version"},
		"/ui/policies/policy.std.majority": {"Policy <code>policy.std.majority", "supermajority", "Try it"},
		"/ui/audit":                        {"<h1>Audit</h1>", "commitment allowed", "session " + id},
	}
	for path, wants := range pages {
		status, body := get(t, c, srv.URL, path)
		if status != http.StatusOK {
			t.Errorf("GET %s: status %d", path, status)
			continue
		}
		mustContain(t, path, body, append(wants, `<main id="main">`, `operator`)...)
	}
	status, body := get(t, c, srv.URL, "/ui/assets/concord.css")
	if status != http.StatusOK || !strings.Contains(body, "prefers-color-scheme: dark") {
		t.Fatalf("stylesheet: %d", status)
	}
	if status, _ := get(t, c, srv.URL, "/ui/nowhere"); status != http.StatusNotFound {
		t.Fatalf("unknown page: %d, want 404", status)
	}
}

func TestSessionPageShowsCommitmentGovernanceAndTimeTravel(t *testing.T) {
	srv := startServer(t)
	id := decisionSession(t, srv, "policy.std.majority", true)
	c := browser(t)
	_, body := get(t, c, srv.URL, "/ui/sessions/"+id)
	mustContain(t, "session page", body,
		"decision.selected", "RFC-MACP-0013 hash", "sha256:", `badge ok">allowed`, "policy.std.majority",
		"macp.modes.decision.v1.VotePayload", "latency is fine", "initiator", "Vote ×1", "module digest",
		`max="6"`, "the recorded commitment")

	// Before any vote the majority profile's quorum (one voter) is not met:
	// the recorded commitment would have been denied there; after the
	// first APPROVE it would pass.
	status, panel := get(t, c, srv.URL, "/ui/sessions/"+id+"/at?at=3")
	if status != http.StatusOK {
		t.Fatalf("state at 3: %d\n%s", status, panel)
	}
	mustContain(t, "state after entry 3", panel, "#3 Evaluation by bob", "would deny", "&#34;votes&#34;: {}")
	_, panel = get(t, c, srv.URL, "/ui/sessions/"+id+"/at?at=5")
	mustContain(t, "state after entry 5", panel, "#5 Vote by bob", "would allow", "&#34;bob&#34;: {")
	for _, bad := range []string{"0", "7", "x", "-1"} {
		if status, _ := get(t, c, srv.URL, "/ui/sessions/"+id+"/at?at="+bad); status != http.StatusBadRequest {
			t.Errorf("at=%s: status %d, want 400", bad, status)
		}
	}
	if status, _ := get(t, c, srv.URL, "/ui/sessions/"+id+"?at=99"); status != http.StatusBadRequest {
		t.Errorf("page at=99: status %d, want 400", status)
	}

	status, body = post(t, c, srv.URL, "/ui/sessions/"+id+"/replay", nil)
	if status != http.StatusOK {
		t.Fatalf("replay: %d", status)
	}
	mustContain(t, "replay", body, "Replay is exact: 6 entries replayed to RESOLVED")

	res, err := c.Get(srv.URL + "/ui/sessions/" + id + "/export.json")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if cd := res.Header.Get("Content-Disposition"); !strings.Contains(cd, "attachment") {
		t.Fatalf("export Content-Disposition %q", cd)
	}
	f, err := export.Decode(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	if f.Session.GetMetadata().GetSessionId() != id || len(f.Entries) != 6 || f.Entries[5].GetCommitmentHash() == "" {
		t.Fatalf("export: session %s, %d entries", f.Session.GetMetadata().GetSessionId(), len(f.Entries))
	}
}

func TestSessionRefusals(t *testing.T) {
	srv := startServer(t)
	c := browser(t)
	if status, body := get(t, c, srv.URL, "/ui/sessions/"+servertest.NewSessionID()); status != http.StatusNotFound || !strings.Contains(body, "SESSION_NOT_FOUND") {
		t.Fatalf("unknown session: %d", status)
	}
	if status, _ := get(t, c, srv.URL, "/ui/sessions/"+strings.Repeat("a", 200)); status != http.StatusBadRequest {
		t.Fatalf("overlong id: %d, want 400", status)
	}
	if status, _ := post(t, c, srv.URL, "/ui/sessions/"+servertest.NewSessionID()+"/cancel", url.Values{"reason": {"x"}}); status != http.StatusNotFound {
		t.Fatalf("cancel of an unknown session: %d, want 404", status)
	}
}

func TestSessionListFiltersAndRefusesBadFilters(t *testing.T) {
	srv := startServer(t)
	resolved := decisionSession(t, srv, "", true)
	open := decisionSession(t, srv, "", false)
	c := browser(t)
	_, body := get(t, c, srv.URL, "/ui/sessions?state=RESOLVED")
	mustContain(t, "resolved filter", body, resolved)
	if strings.Contains(body, open) {
		t.Fatal("the RESOLVED filter lists an open session")
	}
	_, body = get(t, c, srv.URL, "/ui/sessions?state=OPEN&participant=alice&mode="+decision)
	mustContain(t, "open filter", body, open, `data-live="/ui/sessions/events?`)
	if strings.Contains(body, resolved) {
		t.Fatal("the OPEN filter lists a resolved session")
	}
	_, body = get(t, c, srv.URL, "/ui/sessions?initiator=nobody")
	mustContain(t, "initiator filter", body, "No sessions match")
	_, body = get(t, c, srv.URL, "/ui/sessions?context_id=ctx-"+open[:8])
	mustContain(t, "context filter", body, open)
	for _, q := range []string{"state=DONE", "from=yesterday", "offset=-3", "participant=" + strings.Repeat("x", 300)} {
		if status, _ := get(t, c, srv.URL, "/ui/sessions?"+q); status != http.StatusBadRequest {
			t.Errorf("%s: status %d, want 400", q, status)
		}
	}
}

func TestFormsRefuseCrossOriginSubmissions(t *testing.T) {
	srv := startServer(t)
	c := browser(t)
	for _, path := range []string{"/ui/policies/push", "/ui/modes/retire", "/ui/policies/unregister"} {
		req, _ := http.NewRequest(http.MethodPost, srv.URL+path, strings.NewReader("action=save&policy_id=p.x&mode=*&description=d&schema_version=1&rules={}"))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Sec-Fetch-Site", "cross-site")
		req.Header.Set("Origin", "https://evil.example")
		res, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != http.StatusForbidden {
			t.Errorf("cross-origin POST %s: %d, want 403", path, res.StatusCode)
		}
	}
	if status, body := get(t, c, srv.URL, "/ui/policies/p.x"); status != http.StatusNotFound {
		t.Fatalf("the cross-origin push registered something: %d\n%.500s", status, body)
	}
}

func TestModeUploadAndRetire(t *testing.T) {
	wasm, err := extModule()
	if err != nil {
		t.Fatal(err)
	}
	srv := startServer(t)
	c := browser(t)
	upload := func(name string, content []byte) (int, string) {
		t.Helper()
		var buf bytes.Buffer
		mw := multipart.NewWriter(&buf)
		fw, _ := mw.CreateFormFile("module", name)
		_, _ = fw.Write(content)
		_ = mw.Close()
		req, _ := http.NewRequest(http.MethodPost, srv.URL+"/ui/modes/upload", &buf)
		req.Header.Set("Content-Type", mw.FormDataContentType())
		req.Header.Set("Sec-Fetch-Site", "same-origin")
		res, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		var out bytes.Buffer
		_, _ = out.ReadFrom(res.Body)
		return res.StatusCode, out.String()
	}
	status, body := upload("junk.wasm", []byte("not a module"))
	if status != http.StatusBadRequest {
		t.Fatalf("junk upload: %d", status)
	}
	mustContain(t, "junk upload", body, `id="upload-error"`, "does not load as a Concord mode")
	status, body = upload("counter.wasm", wasm)
	if status != http.StatusOK {
		t.Fatalf("upload: %d\n%.2000s", status, body)
	}
	mustContain(t, "upload", body, `id="upload-ok"`, "ext.test.counter.v1", "uploaded", "Retire…")
	status, body = upload("counter.wasm", wasm)
	mustContain(t, "second upload", body, "already serves")
	if status != http.StatusBadRequest {
		t.Fatalf("second upload: %d", status)
	}
	// An empty form is refused too.
	req, _ := http.NewRequest(http.MethodPost, srv.URL+"/ui/modes/upload", strings.NewReader("x"))
	req.Header.Set("Content-Type", "text/plain")
	res, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusBadRequest {
		t.Fatalf("upload without a multipart form: %d", res.StatusCode)
	}

	_, body = get(t, c, srv.URL, "/ui/modes/retire?mode=ext.test.counter.v1")
	mustContain(t, "retire confirmation", body, "Retire ext.test.counter.v1?", `name="confirm" value="yes"`)
	if status, _ := get(t, c, srv.URL, "/ui/modes/retire?mode="+decision); status != http.StatusForbidden {
		t.Fatalf("retiring a built-in: %d, want 403", status)
	}
	// Without the confirmation nothing happens.
	if status, _ := post(t, c, srv.URL, "/ui/modes/retire", url.Values{"mode": {"ext.test.counter.v1"}}); status != http.StatusSeeOther {
		t.Fatalf("unconfirmed retire: %d, want a redirect to the confirmation", status)
	}
	_, body = get(t, c, srv.URL, "/ui/modes")
	mustContain(t, "modes before retiring", body, `id="mode-ext.test.counter.v1"`)
	status, body = post(t, c, srv.URL, "/ui/modes/retire", url.Values{"mode": {"ext.test.counter.v1"}, "confirm": {"yes"}})
	if status != http.StatusOK {
		t.Fatalf("retire: %d", status)
	}
	mustContain(t, "after retiring", body, "Retired ext.test.counter.v1", "Retired modes", "retired upload")
	if status, _ := post(t, c, srv.URL, "/ui/modes/retire", url.Values{"mode": {"ext.nope.v1"}, "confirm": {"yes"}}); status != http.StatusNotFound {
		t.Fatalf("retiring an unknown mode: %d, want 404", status)
	}
	_, body = get(t, c, srv.URL, "/ui/audit")
	// The trail names who retired it, from the console.
	mustContain(t, "audit", body, "console: modes/retire", "ext.test.counter.v1", "<td>operator</td>", "refused: invalid_argument")
}

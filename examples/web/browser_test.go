// Package web_test drives the built browser example (make web-example) in
// headless Chromium against a real Concord server on another origin.
package web_test

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/chromedp/chromedp"

	"github.com/concord-macp/concord/host/server"
	"github.com/concord-macp/concord/internal/browsertest"
	"github.com/concord-macp/concord/internal/servertest"
	macpv1 "github.com/concord-macp/concord/proto/macp/v1"
)

// pageServer serves the built example from its own origin (a second
// port), as a static host would.
func pageServer(t testing.TB) *httptest.Server {
	t.Helper()
	dist, err := filepath.Abs("dist")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dist, "app.js")); err != nil {
		t.Fatalf("the browser example is not built (%v): run make web-example", err)
	}
	page := httptest.NewServer(http.FileServer(http.Dir(dist)))
	t.Cleanup(page.Close)
	return page
}

// exampleURL is the page's address with the API and protocol it should use.
func exampleURL(page, api, protocol string) string {
	return page + "/index.html?" + url.Values{"api": {api}, "protocol": {protocol}}.Encode()
}

// waitText waits until the element's text contains want.
func waitText(sel, want string) chromedp.Action[chromedp.Void] {
	return chromedp.Poll[chromedp.Void](fmt.Sprintf(`(document.querySelector(%q)?.textContent ?? "").includes(%q)`, sel, want))
}

// waitFor waits until a JavaScript condition holds.
func waitFor(cond string) chromedp.Action[chromedp.Void] {
	return chromedp.Poll[chromedp.Void](cond)
}

func click(id string) chromedp.Action[chromedp.Void] {
	return chromedp.Steps(chromedp.WaitEnabled(chromedp.ID(id)), chromedp.Click(chromedp.ID(id)))
}

func TestBrowserRunsDecisionSession(t *testing.T) {
	page := pageServer(t)
	api := servertest.Start(t, server.Config{Memory: true, AllowedOrigins: []string{page.URL}})
	browser := browsertest.Start(t)

	for _, protocol := range []string{"grpc-web", "connect-json"} {
		t.Run(protocol, func(t *testing.T) {
			tab := browser.NewTab(t)
			tab.Run(
				chromedp.Navigate(exampleURL(page.URL, api.URL, protocol)),
				waitFor(fmt.Sprintf(`document.getElementById("runtime").dataset.connected === %q`, protocol)),
				waitText("#sessions-status", "live over"),
				click("start"),
				waitFor(`document.querySelector('#timeline li[data-type="SessionStart"]') !== null`),
			)
			sid, err := browsertest.Eval[string](tab, `document.getElementById("session-id").textContent`)
			if err != nil || len(sid) != 36 {
				t.Fatalf("session id %q, %v", sid, err)
			}
			tab.Run(
				waitFor(fmt.Sprintf(`document.querySelector('#sessions li[data-session=%q][data-event="CREATED"]') !== null`, sid)),
				click("propose"),
				waitFor(`document.querySelector('#timeline li[data-type="Proposal"]') !== null`),
				click("vote-alice"),
				click("vote-bob"),
				waitFor(`document.querySelectorAll('#timeline li[data-type="Vote"]').length === 2`),
				click("commit"),
				waitText("#session-state", "RESOLVED"),
				waitFor(fmt.Sprintf(`document.querySelector('#sessions li[data-session=%q][data-event="RESOLVED"]') !== null`, sid)),
			)
			timeline, err := browsertest.Eval[[]string](tab, `[...document.querySelectorAll("#timeline li")].map(li => li.dataset.type)`)
			if err != nil || strings.Join(timeline, " ") != "SessionStart Proposal Vote Vote Commitment" {
				t.Fatalf("timeline %v, %v", timeline, err)
			}

			// The server agrees, read over gRPC rather than through the page.
			req := connect.NewRequest(&macpv1.GetSessionRequest{SessionId: sid})
			req.Header().Set("Authorization", "Bearer coordinator")
			got, err := api.Client(servertest.GRPC, "").GetSession(context.Background(), req)
			if err != nil || got.Msg.GetMetadata().GetState() != macpv1.SessionState_SESSION_STATE_RESOLVED {
				t.Fatalf("GetSession: %v %v", got, err)
			}

			// WatchSessions delivers live events the page did not cause: a
			// session another agent starts with the coordinator in it.
			other := servertest.NewSessionID()
			start := servertest.Envelope("macp.mode.decision.v1", "SessionStart", "dave-start", other, &macpv1.SessionStartPayload{
				Intent: "from outside the page", Participants: []string{"coordinator", "alice"},
				ModeVersion: "1.0.0", ConfigurationVersion: "cfg-1", TtlMs: 60_000,
			})
			if ack := api.Send(t, "dave", start); !ack.GetOk() {
				t.Fatalf("dave's SessionStart: %v", ack)
			}
			tab.Run(waitFor(fmt.Sprintf(`document.querySelector('#sessions li[data-session=%q][data-event="CREATED"]') !== null`, other)))
			tab.Screenshot("resolved-" + protocol)
			if errs := pageErrors(tab); len(errs) > 0 {
				t.Fatalf("page errors: %v", errs)
			}
		})
	}
}

// pageErrors returns the uncaught exceptions and console errors of tab.
func pageErrors(tab *browsertest.Tab) []string {
	var errs []string
	for _, line := range tab.Console() {
		if strings.HasPrefix(line, "uncaught") || strings.HasPrefix(line, "console.error") {
			errs = append(errs, line)
		}
	}
	return errs
}

func TestBrowserRefusedFromUnlistedOrigin(t *testing.T) {
	page := pageServer(t)
	// The API allows another origin only: the page's calls must fail.
	api := servertest.Start(t, server.Config{Memory: true, AllowedOrigins: []string{"https://app.example.com"}})
	browser := browsertest.Start(t)
	for _, protocol := range []string{"grpc-web", "connect-json"} {
		t.Run(protocol, func(t *testing.T) {
			tab := browser.NewTab(t)
			tab.Run(
				chromedp.Navigate(exampleURL(page.URL, api.URL, protocol)),
				waitText("#runtime", "cannot connect"),
			)
			connected, err := browsertest.Eval[bool](tab, `"connected" in document.getElementById("runtime").dataset`)
			if err != nil || connected {
				t.Fatalf("page connected from an unlisted origin (%v)", err)
			}
			// The same call the page makes, made by the page's own script,
			// is refused by the browser (a TypeError from fetch), not by
			// the server's answer.
			msg, err := browsertest.Eval[string](tab, fmt.Sprintf(`fetch(%q, {method: "POST", headers: {"Content-Type": "application/json"}, body: "{}"}).then(() => "answered", e => e.name)`,
				api.URL+"/macp.v1.MACPRuntimeService/Initialize"))
			if err != nil || msg != "TypeError" {
				t.Fatalf("cross-origin fetch from an unlisted origin: %q, %v", msg, err)
			}
			tab.Screenshot("refused-" + protocol)
		})
	}
}

func TestBrowserCORSHeadersAndLatency(t *testing.T) {
	page := pageServer(t)
	api := servertest.Start(t, server.Config{Memory: true, AllowedOrigins: []string{page.URL}, AllowedHeaders: []string{"X-Tenant"}})
	tab := browsertest.Start(t).NewTab(t)
	tab.Run(
		chromedp.Navigate(exampleURL(page.URL, api.URL, "connect-binary")),
		waitFor(`document.getElementById("runtime").dataset.connected === "connect-binary"`),
	)
	// A preflighted call with the headers tracing and apps add, and a bearer
	// token: it passes, and the page can read the MACP error header.
	call := func(headers map[string]string) string {
		t.Helper()
		h, _ := json.Marshal(headers)
		res, err := browsertest.Eval[string](tab, fmt.Sprintf(`fetch(%q, {method: "POST", headers: %s, body: '{"sessionId":"nope"}'})
			.then(r => r.status + " " + (r.headers.get("macp-error-code") ?? "-"), e => e.name)`,
			api.URL+"/macp.v1.MACPRuntimeService/GetSession", h))
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	base := map[string]string{
		"Content-Type": "application/json", "Connect-Protocol-Version": "1", "Authorization": "Bearer alice",
		"X-Macp-Token": "alice", "Traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
		"Tracestate": "vendor=1", "X-Request-Id": "req-1", "X-User-Agent": "web-example",
	}
	if got := call(base); got != "404 SESSION_NOT_FOUND" {
		t.Fatalf("call with tracing headers: %s, want 404 SESSION_NOT_FOUND", got)
	}
	base["X-Tenant"] = "acme"
	if got := call(base); got != "404 SESSION_NOT_FOUND" {
		t.Fatalf("call with an --allowed-headers header: %s", got)
	}
	base["X-Unlisted"] = "1"
	if got := call(base); got != "TypeError" {
		t.Fatalf("call with an unlisted header: %s, want the browser to refuse it", got)
	}

	// Latency as the page sees it; logged, not asserted (see the benchmark).
	tab.Run(
		chromedp.SetValue(chromedp.ID("measure-n"), "20"),
		click("measure"),
		waitFor(`document.getElementById("latency").dataset.result !== undefined`),
	)
	raw, err := browsertest.Eval[string](tab, `document.getElementById("latency").dataset.result`)
	if err != nil {
		t.Fatal(err)
	}
	var r struct {
		Calls       int                `json:"calls"`
		StaticFetch float64            `json:"staticFetch"`
		Unary       map[string]float64 `json:"unary"`
	}
	if err := json.Unmarshal([]byte(raw), &r); err != nil || r.Calls != 20 || len(r.Unary) != 3 {
		t.Fatalf("latency result %s: %v", raw, err)
	}
	for name, v := range map[string]float64{"static": r.StaticFetch, "connect-json": r.Unary["connect-json"], "connect-binary": r.Unary["connect-binary"], "grpc-web": r.Unary["grpc-web"]} {
		if v <= 0 || math.IsNaN(v) || math.IsInf(v, 0) {
			t.Fatalf("%s median %v ms", name, v)
		}
	}
	t.Logf("median of 20 from the page: static %.2f ms, connect-json %.2f ms, connect-binary %.2f ms, grpc-web %.2f ms",
		r.StaticFetch, r.Unary["connect-json"], r.Unary["connect-binary"], r.Unary["grpc-web"])
	tab.Screenshot("latency")
}

// BenchmarkBrowserRoundTrip measures round trips made by the page in
// headless Chromium, one after the other: a same-origin static fetch (the
// baseline) and Initialize over each protocol to the API on another origin.
// Compare the sub-benchmarks' ns/op as ratios within one run.
func BenchmarkBrowserRoundTrip(b *testing.B) {
	page := pageServer(b)
	api := servertest.Start(b, server.Config{Memory: true, AllowedOrigins: []string{page.URL}})
	tab := browsertest.Start(b).NewTab(b)
	tab.Run(
		chromedp.Navigate(exampleURL(page.URL, api.URL, "connect-json")),
		waitFor(`document.getElementById("runtime").dataset.connected === "connect-json"`),
	)
	for _, probe := range []string{"static", "connect-json", "connect-binary", "grpc-web"} {
		b.Run(probe, func(b *testing.B) {
			// One evaluation makes all b.N calls, so the DevTools round
			// trip is paid once, not per call.
			ctx, cancel := context.WithTimeout(tab.Context(), 5*time.Minute)
			defer cancel()
			b.ResetTimer()
			times, err := chromedp.Run(ctx, chromedp.Evaluate[[]float64](fmt.Sprintf(`concordExample.roundTrips(%q, %d)`, probe, b.N), chromedp.EvalAwaitPromise))
			b.StopTimer()
			if err != nil || len(times) != b.N {
				b.Fatalf("roundTrips: %d times, %v", len(times), err)
			}
			b.ReportMetric(medianOf(times)*1e6, "median-ns")
		})
	}
}

func medianOf(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	return s[len(s)/2]
}

package server_test

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"github.com/concord-macp/concord/host/server"
	"github.com/concord-macp/concord/internal/servertest"
)

// preflight sends the OPTIONS request a browser sends before a call from
// origin that carries headers (lowercase and sorted, as browsers list them).
func preflight(t *testing.T, url, origin, headers string) http.Header {
	t.Helper()
	req, err := http.NewRequest(http.MethodOptions, url+"/macp.v1.MACPRuntimeService/Initialize", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Origin", origin)
	req.Header.Set("Access-Control-Request-Method", "POST")
	if headers != "" {
		req.Header.Set("Access-Control-Request-Headers", headers)
	}
	res, err := servertest.H2CClient().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode >= 300 {
		t.Fatalf("preflight from %s: status %d", origin, res.StatusCode)
	}
	return res.Header
}

// allowHeaders returns every Access-Control-Allow-* header present.
func allowHeaders(h http.Header) map[string]string {
	out := map[string]string{}
	for k, v := range h {
		if strings.HasPrefix(k, "Access-Control-Allow-") {
			out[k] = strings.Join(v, ", ")
		}
	}
	return out
}

// The headers Connect and gRPC-web clients send, with the bearer tokens and
// the tracing headers browser instrumentation adds.
const browserHeaders = "authorization,connect-protocol-version,connect-timeout-ms,content-type,grpc-timeout,traceparent,tracestate,x-grpc-web,x-macp-token,x-request-id,x-user-agent"

func TestCORSListedOriginsOnly(t *testing.T) {
	srv := servertest.Start(t, server.Config{Memory: true, AllowedOrigins: []string{
		"http://127.0.0.1:54111", "https://*.example.com",
	}})
	for _, origin := range []string{"http://127.0.0.1:54111", "https://app.example.com", "https://a.b.example.com"} {
		h := preflight(t, srv.URL, origin, browserHeaders)
		if got := h.Get("Access-Control-Allow-Origin"); got != origin {
			t.Errorf("%s: Access-Control-Allow-Origin = %q, want the origin echoed", origin, got)
		}
		if m := h.Get("Access-Control-Allow-Methods"); !strings.Contains(m, "POST") {
			t.Errorf("%s: Access-Control-Allow-Methods = %q, want POST", origin, m)
		}
		allowed := strings.ToLower(h.Get("Access-Control-Allow-Headers"))
		for want := range strings.SplitSeq(browserHeaders, ",") {
			if !strings.Contains(allowed, want) {
				t.Errorf("%s: %s missing from Access-Control-Allow-Headers %q", origin, want, allowed)
			}
		}
		if h.Get("Access-Control-Max-Age") == "" {
			t.Errorf("%s: no Access-Control-Max-Age", origin)
		}
	}
	// Unlisted origins, including near misses of the listed ones, get no
	// Access-Control-Allow-* header at all.
	for _, origin := range []string{
		"http://127.0.0.1:54112",  // another port
		"https://127.0.0.1:54111", // another scheme
		"https://example.com",     // the wildcard's parent domain
		"https://evilexample.com", // suffix without the dot
		"http://app.example.com",  // the wildcard's scheme is https
		"null",                    // sandboxed frames and file: pages
	} {
		if got := allowHeaders(preflight(t, srv.URL, origin, browserHeaders)); len(got) != 0 {
			t.Errorf("unlisted %s was answered %v", origin, got)
		}
	}
}

func TestCORSIssueReproduction(t *testing.T) {
	// The preflight of issue #12, which was answered without any
	// Access-Control-Allow-* header.
	srv := servertest.Start(t, server.Config{Memory: true, AllowedOrigins: []string{"http://127.0.0.1:54111"}})
	h := preflight(t, srv.URL, "http://127.0.0.1:54111", "connect-protocol-version,content-type")
	if h.Get("Access-Control-Allow-Origin") != "http://127.0.0.1:54111" || h.Get("Access-Control-Allow-Headers") == "" {
		t.Fatalf("preflight answered %v", allowHeaders(h))
	}
}

func TestCORSAnyOrigin(t *testing.T) {
	for name, origins := range map[string][]string{"unset": nil, "star": {"*"}, "star among others": {"https://a.example", "*"}} {
		t.Run(name, func(t *testing.T) {
			srv := servertest.Start(t, server.Config{Memory: true, AllowedOrigins: origins})
			for _, origin := range []string{"https://ui.example", "http://localhost:3000"} {
				if got := preflight(t, srv.URL, origin, browserHeaders).Get("Access-Control-Allow-Origin"); got != "*" {
					t.Errorf("%s: Access-Control-Allow-Origin = %q, want *", origin, got)
				}
			}
		})
	}
}

func TestCORSCustomHeaders(t *testing.T) {
	origin := "https://app.example.com"
	plain := servertest.Start(t, server.Config{Memory: true, AllowedOrigins: []string{origin}})
	if got := allowHeaders(preflight(t, plain.URL, origin, "content-type,x-tenant")); len(got) != 0 {
		t.Fatalf("an unlisted request header passed the preflight: %v", got)
	}
	listed := servertest.Start(t, server.Config{Memory: true, AllowedOrigins: []string{origin}, AllowedHeaders: []string{"X-Tenant", "x-feature-flags"}})
	h := preflight(t, listed.URL, origin, "content-type,x-feature-flags,x-tenant")
	if h.Get("Access-Control-Allow-Origin") != origin {
		t.Fatalf("listed request headers refused: %v", allowHeaders(h))
	}
	allowed := strings.ToLower(h.Get("Access-Control-Allow-Headers"))
	if !strings.Contains(allowed, "x-tenant") || !strings.Contains(allowed, "x-feature-flags") {
		t.Fatalf("Access-Control-Allow-Headers = %q", allowed)
	}
	if got := allowHeaders(preflight(t, listed.URL, origin, "content-type,x-other")); len(got) != 0 {
		t.Fatalf("a header outside --allowed-headers passed: %v", got)
	}
	// "*" allows any request header.
	anyHeader := servertest.Start(t, server.Config{Memory: true, AllowedOrigins: []string{origin}, AllowedHeaders: []string{"*"}})
	if h := preflight(t, anyHeader.URL, origin, "content-type,x-whatever"); h.Get("Access-Control-Allow-Origin") != origin {
		t.Fatalf("--allowed-headers '*' refused x-whatever: %v", allowHeaders(h))
	}
}

func TestCORSActualCallExposesErrorHeaders(t *testing.T) {
	origin := "https://app.example.com"
	srv := servertest.Start(t, server.Config{Memory: true, AllowedOrigins: []string{origin}})
	call := func(origin string) *http.Response {
		// GetSession without credentials: refused, with the MACP code header.
		req, _ := http.NewRequestWithContext(context.Background(), http.MethodPost, srv.URL+"/macp.v1.MACPRuntimeService/GetSession", strings.NewReader(`{"sessionId":"x"}`))
		req.Header.Set("Origin", origin)
		req.Header.Set("Content-Type", "application/json")
		res, err := servertest.H2CClient().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		return res
	}
	res := call(origin)
	if res.StatusCode != http.StatusUnauthorized || res.Header.Get("Macp-Error-Code") != "UNAUTHENTICATED" {
		t.Fatalf("unauthenticated call: %d %v", res.StatusCode, res.Header)
	}
	if res.Header.Get("Access-Control-Allow-Origin") != origin {
		t.Fatalf("call from a listed origin: Access-Control-Allow-Origin = %q", res.Header.Get("Access-Control-Allow-Origin"))
	}
	exposed := strings.ToLower(res.Header.Get("Access-Control-Expose-Headers"))
	for _, want := range []string{"macp-error-code", "macp-error-details-bin", "grpc-status", "grpc-message"} {
		if !strings.Contains(exposed, want) {
			t.Errorf("%s not exposed: %q", want, exposed)
		}
	}
	if got := allowHeaders(call("https://other.example.org").Header); len(got) != 0 {
		t.Fatalf("call from an unlisted origin carries %v", got)
	}
}

func TestCORSRefusesMalformedConfiguration(t *testing.T) {
	for _, cfg := range []server.Config{
		{AllowedOrigins: []string{"example.com"}},
		{AllowedOrigins: []string{"https://example.com/"}},
		{AllowedOrigins: []string{"https://example.com/app"}},
		{AllowedOrigins: []string{"https://user@example.com"}},
		{AllowedOrigins: []string{"https://*.*.example.com"}},
		{AllowedOrigins: []string{"https://app.*.com"}},
		{AllowedOrigins: []string{"https://example.com:port"}},
		{AllowedOrigins: []string{"https://"}},
		{AllowedHeaders: []string{"x tenant"}},
		{AllowedHeaders: []string{"x-tenant:1"}},
	} {
		cfg.Memory, cfg.Addr = true, "127.0.0.1:0"
		srv, err := server.New(context.Background(), cfg)
		if err == nil {
			_ = srv.Shutdown(context.Background())
		}
		if err == nil || !strings.Contains(err.Error(), "CORS") {
			t.Errorf("origins %q headers %q: err = %v, want a CORS configuration error", cfg.AllowedOrigins, cfg.AllowedHeaders, err)
		}
	}
}

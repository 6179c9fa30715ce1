package rpc

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"

	connectcors "connectrpc.com/cors"
	"github.com/rs/cors"
)

// CORS is the browser access policy of the API: which page origins may call
// it and which extra request headers their calls may carry. Credentials
// travel in headers (Authorization, X-Macp-Token), never in cookies, so
// cross-origin calls are allowed without credentials mode.
type CORS struct {
	// Origins lists the page origins allowed to call the API: exact origins
	// ("https://app.example.com", "http://127.0.0.1:5173"), "*" for any,
	// or a wildcard subdomain ("https://*.example.com", which matches
	// subdomains at any depth but not example.com itself). Empty allows
	// every origin.
	Origins []string
	// Headers lists request headers allowed beyond those Connect, gRPC-web,
	// bearer tokens and tracing need (see BrowserRequestHeaders); "*"
	// allows any.
	Headers []string
}

// BrowserRequestHeaders are the request headers every allowed origin may
// send: the protocols' own, the bearer tokens, and the tracing and request
// id headers that browser instrumentation commonly adds.
func BrowserRequestHeaders() []string {
	return append(connectcors.AllowedHeaders(),
		"Authorization", "X-Macp-Token",
		"Traceparent", "Tracestate", "X-Request-Id",
	)
}

// BrowserExposedHeaders are the response headers a page may read: the
// gRPC-web status trailers and the MACP error code and details.
func BrowserExposedHeaders() []string {
	return append(connectcors.ExposedHeaders(), CodeHeader, DetailsHeader)
}

// preflightMaxAge is how long, in seconds, a browser may cache a preflight.
const preflightMaxAge = 7200

// Validate reports the first malformed origin or header name, so that a
// typo in a flag fails at startup instead of refusing browsers silently.
func (c CORS) Validate() error {
	var errs []error
	for _, o := range c.Origins {
		if err := validateOrigin(o); err != nil {
			errs = append(errs, err)
		}
	}
	for _, h := range c.Headers {
		if h != "*" && !isToken(h) {
			errs = append(errs, fmt.Errorf("allowed header %q is not a header name", h))
		}
	}
	return errors.Join(errs...)
}

// validateOrigin accepts "*", scheme://host[:port], and a wildcard
// subdomain scheme://*.host[:port]; an origin never has a path, query,
// fragment or user.
func validateOrigin(o string) error {
	if o == "*" {
		return nil
	}
	bad := func(why string) error { return fmt.Errorf("allowed origin %q: %s", o, why) }
	scheme, host, ok := strings.Cut(o, "://")
	if !ok || scheme == "" {
		return bad("want scheme://host[:port], e.g. https://app.example.com")
	}
	host = strings.TrimPrefix(host, "*.")
	if strings.Contains(host, "*") {
		return bad("a wildcard may only stand for the leftmost labels, as in https://*.example.com")
	}
	u, err := url.Parse(scheme + "://" + host)
	if err != nil {
		return bad(err.Error())
	}
	if u.Host == "" || u.Host != host || u.Hostname() == "" {
		return bad("an origin is scheme://host[:port], with no user, path, query or fragment (no trailing slash)")
	}
	return nil
}

// isToken reports whether s is an HTTP token (RFC 9110 §5.6.2), the syntax
// of a header name.
func isToken(s string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		if r > 0x7e || r <= ' ' || strings.ContainsRune(`"(),/:;<=>?@[\]{}`, r) {
			return false
		}
	}
	return true
}

// withCORS answers preflights and adds the CORS response headers for the
// origins c allows; other origins get no Access-Control-Allow-* header at
// all, so browsers refuse them. c must be valid.
func withCORS(h http.Handler, c CORS) http.Handler {
	return cors.New(cors.Options{
		// An empty list is rs/cors's own "any origin" (answered with
		// Access-Control-Allow-Origin: *), and so is a list holding "*".
		AllowedOrigins: c.Origins,
		AllowedMethods: connectcors.AllowedMethods(),
		AllowedHeaders: append(BrowserRequestHeaders(), slices.DeleteFunc(slices.Clone(c.Headers), func(s string) bool { return s == "" })...),
		ExposedHeaders: BrowserExposedHeaders(),
		MaxAge:         preflightMaxAge,
	}).Handler(h)
}

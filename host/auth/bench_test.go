package auth_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/concord-macp/concord/host/auth"
	"github.com/concord-macp/concord/internal/oidctest"
)

// BenchmarkAuthenticate compares the cost of one authentication per
// resolver: dev auth, a static token among 1000, an RS256 and an ES256
// JWT. Compare the ratios of one run, not absolute numbers.
func BenchmarkAuthenticate(b *testing.B) {
	ctx := context.Background()
	doc := "["
	for i := range 1000 {
		if i > 0 {
			doc += ","
		}
		doc += fmt.Sprintf(`{"token": "bench-token-%04d-0123456789", "sender": "agent-%d"}`, i, i)
	}
	doc += "]"
	static, err := auth.New(ctx, auth.Config{TokensJSON: doc}, quiet)
	if err != nil {
		b.Fatal(err)
	}
	defer static.Close()
	iss := oidctest.New(b)
	jwt, err := auth.New(ctx, auth.Config{OIDC: auth.OIDCOptions{Issuer: iss.URL}}, quiet)
	if err != nil {
		b.Fatal(err)
	}
	defer jwt.Close()
	rs := bearer(iss.Token(iss.Claims("agent://alice", time.Hour)))
	es := bearer(iss.SignWith(iss.Published(jose.ES256)[0], iss.Claims("agent://alice", time.Hour)))
	cases := []struct {
		name string
		a    auth.Authenticator
		h    func() map[string][]string
	}{
		{"dev", auth.Dev{}, func() map[string][]string { return bearer("agent://alice") }},
		{"static", static, func() map[string][]string { return bearer("bench-token-0500-0123456789") }},
		{"jwt-rs256", jwt, func() map[string][]string { return rs }},
		{"jwt-es256", jwt, func() map[string][]string { return es }},
	}
	for _, c := range cases {
		h := c.h()
		if _, err := c.a.Authenticate(ctx, h); err != nil {
			b.Fatalf("%s: %v", c.name, err)
		}
		b.Run(c.name, func(b *testing.B) {
			for b.Loop() {
				if _, err := c.a.Authenticate(ctx, h); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

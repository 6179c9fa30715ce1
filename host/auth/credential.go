package auth

import (
	"net/http"
	"strings"
)

// MaxTokenLen bounds a presented bearer token (a JWT included).
const MaxTokenLen = 8192

// errMalformed is the one answer to a credential that cannot be a token:
// too long, not visible ASCII, an unknown scheme, or presented twice.
var errMalformed = reject(`malformed credentials: send "Authorization: Bearer <token>" or "x-macp-token: <token>", one token of at most 8192 visible ASCII characters`)

// errAgentID refuses the reference runtime's retired self-asserted header.
var errAgentID = reject("the x-macp-agent-id header is not a credential")

// credential returns the request's bearer token: an Authorization bearer
// token or, as MACP SDKs also send, an x-macp-token header. "" means no
// credential was presented; anything presented that cannot be a token is
// errMalformed.
func credential(h http.Header) (string, error) {
	if len(h.Values("X-Macp-Agent-Id")) > 0 {
		return "", errAgentID
	}
	authz, xtoken := h.Values("Authorization"), h.Values("X-Macp-Token")
	if len(authz) > 1 || len(xtoken) > 1 {
		return "", errMalformed
	}
	var token string
	if len(authz) == 1 {
		v := authz[0]
		if len(v) < 7 || !strings.EqualFold(v[:7], "bearer ") {
			return "", errMalformed
		}
		token = strings.TrimSpace(v[7:])
		if token == "" {
			return "", errMalformed
		}
	}
	if len(xtoken) == 1 {
		x := strings.TrimSpace(xtoken[0])
		if x == "" || (token != "" && x != token) {
			return "", errMalformed
		}
		token = x
	}
	if len(token) > MaxTokenLen {
		return "", errMalformed
	}
	for i := 0; i < len(token); i++ {
		if c := token[i]; c <= ' ' || c >= 0x7f {
			return "", errMalformed
		}
	}
	return token, nil
}

// jwtShaped reports whether a token goes to the JWT resolver: JWTs are
// dot-separated, opaque tokens never contain a dot (the reference
// runtime's rule).
func jwtShaped(token string) bool { return strings.Contains(token, ".") }

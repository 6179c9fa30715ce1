package jetstream

import (
	"encoding/base64"
	"encoding/hex"
	"errors"
	"strings"
)

// maxIDLen bounds the session ids the backend stores: longer ones are
// refused as invalid and never found (the kernel refuses them sooner).
const maxIDLen = 512

// sessionToken is session id as one subject token. Ids made only of
// [A-Za-z0-9_-] (every id the kernel accepts) are used as they are; any
// other is "=" and its unpadded base64url, which no plain id starts with.
func sessionToken(id string) (string, bool) {
	if id == "" || len(id) > maxIDLen {
		return "", false
	}
	if plainToken(id) {
		return id, true
	}
	return "=" + base64.RawURLEncoding.EncodeToString([]byte(id)), true
}

// sessionID reverses sessionToken.
func sessionID(token string) (string, error) {
	if b, ok := strings.CutPrefix(token, "="); ok {
		id, err := base64.RawURLEncoding.DecodeString(b)
		return string(id), err
	}
	if !plainToken(token) {
		return "", errors.New("malformed session token " + token)
	}
	return token, nil
}

func plainToken(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return s != ""
}

// recordKey is a record's key as the rest of a KV key: each part of the key between
// 0x00 bytes becomes one token, "x" and the part in hex. Hex keeps any
// byte legal in a KV key, and the tokens let a watch select one session's
// audit records ("<session id>\x00…") by its first token.
func recordKey(key string) string {
	parts := strings.Split(key, "\x00")
	var b strings.Builder
	for i, p := range parts {
		if i > 0 {
			b.WriteByte('.')
		}
		b.WriteByte('x')
		b.WriteString(hex.EncodeToString([]byte(p)))
	}
	return b.String()
}

// recordKeyOf reverses recordKey.
func recordKeyOf(kvKey string) (string, error) {
	tokens := strings.Split(kvKey, ".")
	parts := make([]string, len(tokens))
	for i, tok := range tokens {
		h, ok := strings.CutPrefix(tok, "x")
		if !ok {
			return "", errors.New("malformed record key " + kvKey)
		}
		p, err := hex.DecodeString(h)
		if err != nil {
			return "", errors.New("malformed record key " + kvKey)
		}
		parts[i] = string(p)
	}
	return strings.Join(parts, "\x00"), nil
}

// recordFilter is the KV watch filter that covers every key starting with
// prefix: the first token when the prefix ends a part, every key otherwise.
func recordFilter(prefix string) string {
	first, _, found := strings.Cut(prefix, "\x00")
	if !found {
		return ">"
	}
	return recordKey(first) + ".>"
}

package cmthash

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"unicode/utf8"

	macpv1 "github.com/concord-macp/concord/proto/macp/v1"
)

const (
	// Label names the hash construction this package implements. It is
	// followed by a colon at the start of every preimage.
	Label = "macp-commitment-hash/1"
	// HashPrefix starts every commitment hash; 64 lowercase hex digits
	// follow it.
	HashPrefix = "sha256:"
	// HashLen is the length of a commitment hash: the prefix and 64 digits.
	HashLen = len(HashPrefix) + 2*sha256.Size

	preimagePrefix = Label + ":"
)

// Sentinel errors. Every error returned by this package wraps one of
// ErrCannotVerify and ErrMismatch.
var (
	// ErrCannotVerify means the payload has no hash under Label: it carries
	// fields outside the frozen set (unknown fields of CommitmentPayload or
	// of its supersedes CommitmentRef), or it has no canonical form (see
	// ErrInvalidPayload). A claimed hash for such a payload can be neither
	// confirmed nor refuted.
	ErrCannotVerify = errors.New("cmthash: cannot verify commitment under " + Label)
	// ErrInvalidPayload means the payload has no canonical JSON form: it is
	// nil, or one of its strings is not valid UTF-8. It wraps
	// ErrCannotVerify.
	ErrInvalidPayload = fmt.Errorf("%w: payload has no canonical form", ErrCannotVerify)
	// ErrMismatch means the payload hashes to a value other than the one
	// claimed.
	ErrMismatch = errors.New("cmthash: commitment hash mismatch")
)

// Canonical returns the RFC 8785 canonical JSON bytes of p's projection (see
// the package documentation). It fails with an error wrapping
// ErrCannotVerify when p carries unknown fields, and with ErrInvalidPayload
// when p is nil or holds a string that is not valid UTF-8.
func Canonical(p *macpv1.CommitmentPayload) ([]byte, error) {
	b, err := appendCanonical(make([]byte, 0, sizeHint(p)), p)
	if err != nil {
		return nil, err
	}
	return b, nil
}

// Preimage returns the bytes that are hashed: Label, a colon, then the
// canonical bytes of p. It fails as Canonical does.
func Preimage(p *macpv1.CommitmentPayload) ([]byte, error) {
	b := make([]byte, 0, len(preimagePrefix)+sizeHint(p))
	b, err := appendCanonical(append(b, preimagePrefix...), p)
	if err != nil {
		return nil, err
	}
	return b, nil
}

// Hash returns p's commitment hash, "sha256:" followed by 64 lowercase hex
// digits. It fails as Canonical does.
func Hash(p *macpv1.CommitmentPayload) (string, error) {
	// Typical payloads fit in the array, which then stays on the stack.
	var scratch [512]byte
	pre, err := appendCanonical(append(scratch[:0], preimagePrefix...), p)
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(pre)
	var out [HashLen]byte
	copy(out[:], HashPrefix)
	hex.Encode(out[len(HashPrefix):], sum[:])
	return string(out[:]), nil
}

// Verify checks that p hashes to want. It returns nil on a match, an error
// wrapping ErrMismatch when p hashes to another value (a want that is not
// WellFormed never matches), and an error wrapping ErrCannotVerify when p has
// no hash under Label. The payload is examined first, so a payload with
// unknown fields is reported as unverifiable whatever want is.
func Verify(p *macpv1.CommitmentPayload, want string) error {
	got, err := Hash(p)
	if err != nil {
		return err
	}
	if got == want {
		return nil
	}
	if !WellFormed(want) {
		return fmt.Errorf("%w: claimed hash %q is not of the form sha256:<64 lowercase hex>", ErrMismatch, want)
	}
	return fmt.Errorf("%w: payload hashes to %s, claimed %s", ErrMismatch, got, want)
}

// WellFormed reports whether h has the form of a commitment hash: "sha256:"
// followed by exactly 64 lowercase hex digits.
func WellFormed(h string) bool {
	if len(h) != HashLen || h[:len(HashPrefix)] != HashPrefix {
		return false
	}
	for i := len(HashPrefix); i < len(h); i++ {
		if c := h[i]; (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// sizeHint estimates the canonical length of p: the fixed keys and
// punctuation plus the raw string lengths. Escapes can only add to it.
func sizeHint(p *macpv1.CommitmentPayload) int {
	if p == nil {
		return 0
	}
	n := 200 + len(p.CommitmentId) + len(p.Action) + len(p.AuthorityScope) + len(p.Reason) +
		len(p.ModeVersion) + len(p.PolicyVersion) + len(p.ConfigurationVersion)
	if s := p.Supersedes; s != nil {
		n += 64 + len(s.SessionId) + len(s.CommitmentHash)
	}
	return n
}

// checkHashable returns an error for the payloads that have no hash under
// Label: nil, carrying fields outside the frozen set, or holding a string
// that is not valid UTF-8. A payload it accepts always serializes.
func checkHashable(p *macpv1.CommitmentPayload) error {
	if p == nil {
		return fmt.Errorf("%w: nil CommitmentPayload", ErrInvalidPayload)
	}
	if n := len(p.ProtoReflect().GetUnknown()); n > 0 {
		return fmt.Errorf("%w: CommitmentPayload carries %d bytes of fields outside 1-9", ErrCannotVerify, n)
	}
	s := p.Supersedes
	if s != nil {
		if n := len(s.ProtoReflect().GetUnknown()); n > 0 {
			return fmt.Errorf("%w: supersedes carries %d bytes of fields outside 1-2", ErrCannotVerify, n)
		}
	}
	// RFC 8785 is defined over Unicode strings; a byte string that is not
	// UTF-8 (encoded surrogates and overlong forms included) has no JSON form.
	strs := [...]struct{ name, val string }{
		{"commitment_id", p.CommitmentId},
		{"action", p.Action},
		{"authority_scope", p.AuthorityScope},
		{"reason", p.Reason},
		{"mode_version", p.ModeVersion},
		{"policy_version", p.PolicyVersion},
		{"configuration_version", p.ConfigurationVersion},
		{"supersedes.session_id", s.GetSessionId()},
		{"supersedes.commitment_hash", s.GetCommitmentHash()},
	}
	for _, f := range strs {
		if !utf8.ValidString(f.val) {
			return fmt.Errorf("%w: %s is not valid UTF-8", ErrInvalidPayload, f.name)
		}
	}
	return nil
}

// appendCanonical appends the canonical bytes of p to b. On error b is
// returned unchanged.
func appendCanonical(b []byte, p *macpv1.CommitmentPayload) ([]byte, error) {
	if err := checkHashable(p); err != nil {
		return b, err
	}
	// Members in RFC 8785 order: by key, compared as UTF-16 code units,
	// which for these ASCII keys is plain byte order.
	b = appendMember(b, '{', "action", p.Action)
	b = appendMember(b, ',', "authority_scope", p.AuthorityScope)
	b = appendMember(b, ',', "commitment_id", p.CommitmentId)
	b = appendMember(b, ',', "configuration_version", p.ConfigurationVersion)
	b = appendMember(b, ',', "mode_version", p.ModeVersion)
	if p.OutcomePositive {
		b = append(b, `,"outcome_positive":true`...)
	} else {
		b = append(b, `,"outcome_positive":false`...)
	}
	b = appendMember(b, ',', "policy_version", p.PolicyVersion)
	b = appendMember(b, ',', "reason", p.Reason)
	if s := p.Supersedes; s != nil {
		b = append(b, `,"supersedes":`...)
		b = appendMember(b, '{', "commitment_hash", s.CommitmentHash)
		b = appendMember(b, ',', "session_id", s.SessionId)
		b = append(b, '}')
	}
	return append(b, '}'), nil
}

// appendMember appends sep, then key and val as a JSON object member. Keys
// are ASCII with nothing to escape, so they are copied as they are; val must
// be valid UTF-8.
func appendMember(b []byte, sep byte, key, val string) []byte {
	b = append(b, sep, '"')
	b = append(b, key...)
	b = append(b, '"', ':')
	return appendString(b, val)
}

const lowerHex = "0123456789abcdef"

// appendString appends s as a JSON string in the RFC 8785 form (section
// 3.2.2.2): '"' and '\\' and the bytes below 0x20 are escaped, with the
// short forms \b \t \n \f \r where JSON has them and \u00xx (lowercase hex)
// otherwise; every other byte, including every byte of a multi-byte
// sequence, is copied unchanged. s must be valid UTF-8, which checkHashable
// ensures; invalid input would be copied through as invalid output.
func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	done := 0 // s[:done] has been written
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 0x20 && c != '"' && c != '\\' {
			continue
		}
		b = append(b, s[done:i]...)
		switch c {
		case '"', '\\':
			b = append(b, '\\', c)
		case '\b':
			b = append(b, '\\', 'b')
		case '\t':
			b = append(b, '\\', 't')
		case '\n':
			b = append(b, '\\', 'n')
		case '\f':
			b = append(b, '\\', 'f')
		case '\r':
			b = append(b, '\\', 'r')
		default:
			b = append(b, '\\', 'u', '0', '0', lowerHex[c>>4], lowerHex[c&0xf])
		}
		done = i + 1
	}
	b = append(b, s[done:]...)
	return append(b, '"')
}

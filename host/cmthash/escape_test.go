package cmthash

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"unicode/utf8"

	macpv1 "github.com/concord-macp/concord/proto/macp/v1"
)

// escapeCases pins the JSON form of single strings. The right column is the
// exact output, quotes included.
var escapeCases = []struct {
	name, in, want string
}{
	{"empty", "", `""`},
	{"plain", "decision.approved", `"decision.approved"`},
	{"quote", `a"b`, `"a\"b"`},
	{"backslash", `a\b`, `"a\\b"`},
	{"backspace", "\b", `"\b"`},
	{"tab", "\t", `"\t"`},
	{"newline", "\n", `"\n"`},
	{"formfeed", "\f", `"\f"`},
	{"carriage return", "\r", `"\r"`},
	{"NUL", "\x00", `"\u0000"`},
	{"SOH", "\x01", `"\u0001"`},
	{"vertical tab", "\x0b", `"\u000b"`},
	{"ESC lowercase hex", "\x1b", `"\u001b"`},
	{"unit separator", "\x1f", `"\u001f"`},
	{"all controls", "\x00\x07\x08\x09\x0a\x0b\x0c\x0d\x0e\x1f", `"\u0000\u0007\b\t\n\u000b\f\r\u000e\u001f"`},
	{"space is raw", " ", `" "`},
	{"slash is raw", "a/b</script>", `"a/b</script>"`},
	{"html is raw", "<>&", `"<>&"`},
	{"DEL is raw", "\x7f", "\"\x7f\""},
	{"C1 control is raw", "\u0080\u009f", "\"\u0080\u009f\""},
	{"line separator is raw", "\u2028", "\"\xe2\x80\xa8\""},
	{"paragraph separator is raw", "\u2029", "\"\xe2\x80\xa9\""},
	{"BOM is raw", "\ufeff", "\"\xef\xbb\xbf\""},
	{"replacement char is raw", "\ufffd", "\"\xef\xbf\xbd\""},
	{"noncharacter is raw", "\uffff", "\"\xef\xbf\xbf\""},
	{"astral is raw", "\U0001F702", "\"\xf0\x9f\x9c\x82\""},
	{"last code point", "\U0010FFFF", "\"\xf4\x8f\xbf\xbf\""},
	{"non-ASCII", "café naïve —", "\"café naïve —\""},
	{"mixed", "r\u00e9\tsum\u00e9\n\u2014 \"q\" \\ \x01 \U0001F702", "\"r\u00e9\\tsum\u00e9\\n\u2014 \\\"q\\\" \\\\ \\u0001 \U0001F702\""},
	{"escape at both ends", "\n\"x\"\n", `"\n\"x\"\n"`},
	{"looks like an escape", `\u2028`, `"\\u2028"`},
}

func TestAppendString(t *testing.T) {
	for _, c := range escapeCases {
		t.Run(c.name, func(t *testing.T) {
			got := appendString([]byte("prefix"), c.in)
			if string(got) != "prefix"+c.want {
				t.Errorf("appendString(%q) = %q, want %q", c.in, got[len("prefix"):], c.want)
			}
		})
	}
}

// invalidUTF8 lists strings that are not valid UTF-8, so have no JSON form
// under RFC 8785 (which requires well-formed Unicode).
var invalidUTF8 = []struct{ name, in string }{
	{"stray continuation", "\x80"},
	{"0xff", "a\xffb"},
	{"truncated 3-byte", "\xe2\x80"},
	{"truncated 4-byte at end", "ok\xf0\x9f\x9c"},
	{"overlong slash", "\xc0\xaf"},
	{"overlong NUL", "\xc0\x80"},
	{"high surrogate", "\xed\xa0\x80"},
	{"low surrogate", "\xed\xbf\xbf"},
	{"surrogate pair as CESU-8", "\xed\xa0\xbd\xed\xbc\x82"},
	{"beyond U+10FFFF", "\xf4\x90\x80\x80"},
}

// TestInvalidUTF8Refused checks that such strings stop the payload before
// anything is written, in every string field.
func TestInvalidUTF8Refused(t *testing.T) {
	setters := map[string]func(p *macpv1.CommitmentPayload, s string){
		"commitment_id":              func(p *macpv1.CommitmentPayload, s string) { p.CommitmentId = s },
		"action":                     func(p *macpv1.CommitmentPayload, s string) { p.Action = s },
		"authority_scope":            func(p *macpv1.CommitmentPayload, s string) { p.AuthorityScope = s },
		"reason":                     func(p *macpv1.CommitmentPayload, s string) { p.Reason = s },
		"mode_version":               func(p *macpv1.CommitmentPayload, s string) { p.ModeVersion = s },
		"policy_version":             func(p *macpv1.CommitmentPayload, s string) { p.PolicyVersion = s },
		"configuration_version":      func(p *macpv1.CommitmentPayload, s string) { p.ConfigurationVersion = s },
		"supersedes.session_id":      func(p *macpv1.CommitmentPayload, s string) { p.Supersedes.SessionId = s },
		"supersedes.commitment_hash": func(p *macpv1.CommitmentPayload, s string) { p.Supersedes.CommitmentHash = s },
	}
	for _, c := range invalidUTF8 {
		for field, set := range setters {
			p := &macpv1.CommitmentPayload{Supersedes: &macpv1.CommitmentRef{}}
			set(p, c.in)
			got, err := appendCanonical([]byte("keep"), p)
			if !errors.Is(err, ErrInvalidPayload) || !strings.Contains(err.Error(), field) {
				t.Errorf("%s in %s: err = %v", c.name, field, err)
			}
			if string(got) != "keep" {
				t.Errorf("%s in %s: buffer changed to %q", c.name, field, got)
			}
		}
	}
}

// referenceString is an independent oracle for appendString: encoding/json
// with HTML escaping off, minus its one departure from RFC 8785 for valid
// UTF-8 input. With SetEscapeHTML(false) encoding/json escapes '"' and '\\',
// writes \b \f \n \r \t (since Go 1.22) and \u00xx with lowercase hex for the
// other bytes below 0x20, and copies everything else raw — exactly the JCS
// rules — except that it also writes U+2028 and U+2029 as \u2028 and \u2029
// (for JavaScript embedding). Those two escapes are turned back into raw
// UTF-8 here by walking the escapes, so an escaped backslash followed by
// "u2028" is left alone.
func referenceString(t testing.TB, s string) []byte {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(s); err != nil {
		t.Fatalf("encoding/json: %v", err)
	}
	in := bytes.TrimSuffix(buf.Bytes(), []byte("\n"))
	out := make([]byte, 0, len(in))
	for i := 0; i < len(in); {
		if in[i] != '\\' {
			out = append(out, in[i])
			i++
			continue
		}
		if in[i+1] == 'u' {
			switch string(in[i+2 : i+6]) {
			case "2028":
				out = append(out, "\u2028"...)
				i += 6
				continue
			case "2029":
				out = append(out, "\u2029"...)
				i += 6
				continue
			}
			out = append(out, in[i:i+6]...)
			i += 6
			continue
		}
		out = append(out, in[i:i+2]...)
		i += 2
	}
	return out
}

func TestReferenceAgreesOnCases(t *testing.T) {
	// The oracle itself must reproduce the pinned table, or the fuzz
	// comparison proves nothing.
	for _, c := range escapeCases {
		if got := referenceString(t, c.in); string(got) != c.want {
			t.Errorf("reference(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}

// FuzzAppendString checks the escaper on arbitrary input against independent
// expectations:
//   - input that is not valid UTF-8 is refused by the payload check before
//     the escaper sees it (the escaper's precondition);
//   - otherwise the output is a JSON string that encoding/json decodes back
//     to exactly the input (so every escape is correct and nothing is lost);
//   - and it is byte-identical to referenceString, so it is also the
//     minimal RFC 8785 form (no optional escapes, lowercase hex).
//
// Run with: go test -run '^$' -fuzz FuzzAppendString ./host/cmthash/
func FuzzAppendString(f *testing.F) {
	for _, c := range escapeCases {
		f.Add(c.in)
	}
	for _, c := range invalidUTF8 {
		f.Add(c.in)
	}
	f.Fuzz(func(t *testing.T, s string) {
		err := checkHashable(&macpv1.CommitmentPayload{Reason: s})
		if !utf8.ValidString(s) {
			if !errors.Is(err, ErrInvalidPayload) {
				t.Fatalf("invalid UTF-8 %q passed the payload check: %v", s, err)
			}
			return
		}
		if err != nil {
			t.Fatalf("valid UTF-8 %q refused: %v", s, err)
		}
		got := appendString(nil, s)
		var back string
		if err := json.Unmarshal(got, &back); err != nil {
			t.Fatalf("output %q for %q is not a JSON string: %v", got, s, err)
		}
		if back != s {
			t.Fatalf("round trip of %q through %q gave %q", s, got, back)
		}
		if want := referenceString(t, s); !bytes.Equal(got, want) {
			t.Fatalf("appendString(%q) = %q, reference %q", s, got, want)
		}
		// Structural check that does not rely on encoding/json: no raw byte
		// below 0x20 survives, and outside escapes the input is copied.
		for _, c := range got {
			if c < 0x20 {
				t.Fatalf("raw control byte %#x in %q", c, got)
			}
		}
		if !strings.ContainsAny(s, "\"\\") && !containsControl(s) && string(got) != `"`+s+`"` {
			t.Fatalf("string needing no escape was changed: %q -> %q", s, got)
		}
	})
}

func containsControl(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 {
			return true
		}
	}
	return false
}

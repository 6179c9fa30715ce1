package cmthash_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"strings"
	"testing"
	"unicode/utf8"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/concord-macp/concord/host/cmthash"
	macpv1 "github.com/concord-macp/concord/proto/macp/v1"
)

// sample is a well-formed payload with every field set.
func sample() *macpv1.CommitmentPayload {
	return &macpv1.CommitmentPayload{
		CommitmentId:         "c1",
		Action:               "decision.approved",
		AuthorityScope:       "seam",
		Reason:               "sealed by seam",
		ModeVersion:          "1.0.0",
		PolicyVersion:        "policy.default",
		ConfigurationVersion: "cfg-1",
		OutcomePositive:      true,
		Supersedes: &macpv1.CommitmentRef{
			SessionId:      "prior-sess",
			CommitmentHash: "sha256:" + strings.Repeat("ab", 32),
		},
	}
}

func mustCanonical(t *testing.T, p *macpv1.CommitmentPayload) string {
	t.Helper()
	b, err := cmthash.Canonical(p)
	if err != nil {
		t.Fatalf("Canonical: %v", err)
	}
	return string(b)
}

func mustHash(t *testing.T, p *macpv1.CommitmentPayload) string {
	t.Helper()
	h, err := cmthash.Hash(p)
	if err != nil {
		t.Fatalf("Hash: %v", err)
	}
	return h
}

func TestCanonicalZeroPayload(t *testing.T) {
	// Every string present as "", outcome_positive present although false,
	// supersedes absent (not null, not {}).
	const want = `{"action":"","authority_scope":"","commitment_id":"","configuration_version":"","mode_version":"",` +
		`"outcome_positive":false,"policy_version":"","reason":""}`
	if got := mustCanonical(t, &macpv1.CommitmentPayload{}); got != want {
		t.Errorf("Canonical(zero) =\n%s\nwant\n%s", got, want)
	}
}

func TestOutcomePositiveAlwaysEmitted(t *testing.T) {
	p := sample()
	for _, v := range []bool{false, true} {
		p.OutcomePositive = v
		got := mustCanonical(t, p)
		want := `"outcome_positive":false,`
		if v {
			want = `"outcome_positive":true,`
		}
		if !strings.Contains(got, want) || strings.Count(got, "outcome_positive") != 1 {
			t.Errorf("outcome %v: %s lacks %s", v, got, want)
		}
	}
	p.OutcomePositive = false
	f := mustHash(t, p)
	p.OutcomePositive = true
	if mustHash(t, p) == f {
		t.Error("outcome_positive does not change the hash")
	}
}

func TestSupersedesAbsentVersusEmpty(t *testing.T) {
	absent := sample()
	absent.Supersedes = nil
	empty := sample()
	empty.Supersedes = &macpv1.CommitmentRef{}

	a, e := mustCanonical(t, absent), mustCanonical(t, empty)
	if strings.Contains(a, "supersedes") || strings.Contains(a, "null") {
		t.Errorf("absent supersedes leaked into %s", a)
	}
	const tail = `,"supersedes":{"commitment_hash":"","session_id":""}}`
	if !strings.HasSuffix(e, tail) {
		t.Errorf("empty supersedes: %s does not end with %s", e, tail)
	}
	if strings.TrimSuffix(e, tail) != strings.TrimSuffix(a, "}") {
		t.Errorf("absent and empty differ beyond supersedes:\n%s\n%s", a, e)
	}
	if mustHash(t, absent) == mustHash(t, empty) {
		t.Error("absent and empty supersedes hash alike")
	}

	// Only one subfield set: both keys still present.
	half := sample()
	half.Supersedes = &macpv1.CommitmentRef{SessionId: "s"}
	if got := mustCanonical(t, half); !strings.HasSuffix(got, `,"supersedes":{"commitment_hash":"","session_id":"s"}}`) {
		t.Errorf("half-set supersedes: %s", got)
	}
}

// TestEmptySupersedesSurvivesTheWire checks that the absent/empty distinction
// is not an artefact of building structs by hand: proto3 encodes a set but
// empty message field, and decoding restores it.
func TestEmptySupersedesSurvivesTheWire(t *testing.T) {
	for _, sup := range []*macpv1.CommitmentRef{nil, {}, sample().Supersedes} {
		p := sample()
		p.Supersedes = sup
		wire, err := proto.Marshal(p)
		if err != nil {
			t.Fatal(err)
		}
		var back macpv1.CommitmentPayload
		if err := proto.Unmarshal(wire, &back); err != nil {
			t.Fatal(err)
		}
		if (back.Supersedes == nil) != (sup == nil) {
			t.Fatalf("supersedes %v decoded as %v", sup, back.Supersedes)
		}
		if a, b := mustHash(t, p), mustHash(t, &back); a != b {
			t.Errorf("hash changed across the wire: %s vs %s", a, b)
		}
	}
}

func TestEveryFieldMatters(t *testing.T) {
	base := mustHash(t, sample())
	edits := map[string]func(p *macpv1.CommitmentPayload){
		"commitment_id":              func(p *macpv1.CommitmentPayload) { p.CommitmentId = "c2" },
		"action":                     func(p *macpv1.CommitmentPayload) { p.Action += "x" },
		"authority_scope":            func(p *macpv1.CommitmentPayload) { p.AuthorityScope += "x" },
		"reason":                     func(p *macpv1.CommitmentPayload) { p.Reason += "x" },
		"mode_version":               func(p *macpv1.CommitmentPayload) { p.ModeVersion += "x" },
		"policy_version":             func(p *macpv1.CommitmentPayload) { p.PolicyVersion = "" },
		"configuration_version":      func(p *macpv1.CommitmentPayload) { p.ConfigurationVersion += "x" },
		"outcome_positive":           func(p *macpv1.CommitmentPayload) { p.OutcomePositive = false },
		"supersedes":                 func(p *macpv1.CommitmentPayload) { p.Supersedes = nil },
		"supersedes.session_id":      func(p *macpv1.CommitmentPayload) { p.Supersedes.SessionId += "x" },
		"supersedes.commitment_hash": func(p *macpv1.CommitmentPayload) { p.Supersedes.CommitmentHash = "" },
		// Moving a value between fields must change the hash too.
		"swap action and reason": func(p *macpv1.CommitmentPayload) { p.Action, p.Reason = p.Reason, p.Action },
		"swap supersedes fields": func(p *macpv1.CommitmentPayload) {
			p.Supersedes.SessionId, p.Supersedes.CommitmentHash = p.Supersedes.CommitmentHash, p.Supersedes.SessionId
		},
	}
	for name, edit := range edits {
		p := sample()
		edit(p)
		if mustHash(t, p) == base {
			t.Errorf("changing %s leaves the hash unchanged", name)
		}
	}
}

// TestCanonicalStructure decodes the output with encoding/json's tokenizer
// (independent of the writer) and checks the key order, the value of every
// member and that there is no insignificant whitespace.
func TestCanonicalStructure(t *testing.T) {
	p := sample()
	p.Reason = "line\nbreak \"quoted\" <b>&amp;</b> \u2028 \U0001F702 \x7f /"
	out := mustCanonical(t, p)
	checkStructure(t, p, []byte(out))
}

var topKeys = []string{
	"action", "authority_scope", "commitment_id", "configuration_version",
	"mode_version", "outcome_positive", "policy_version", "reason", "supersedes",
}

// checkStructure verifies that out is p's projection with members in RFC
// 8785 order, nothing else, and no whitespace outside strings. (The exact
// bytes of each string are the escaper's business, pinned in escape_test.)
func checkStructure(t *testing.T, p *macpv1.CommitmentPayload, out []byte) {
	t.Helper()
	wantVals := map[string]any{
		"action":                p.Action,
		"authority_scope":       p.AuthorityScope,
		"commitment_id":         p.CommitmentId,
		"configuration_version": p.ConfigurationVersion,
		"mode_version":          p.ModeVersion,
		"outcome_positive":      p.OutcomePositive,
		"policy_version":        p.PolicyVersion,
		"reason":                p.Reason,
	}
	dec := json.NewDecoder(bytes.NewReader(out))
	next := func() json.Token {
		t.Helper()
		tok, err := dec.Token()
		if err != nil {
			t.Fatalf("decoding %s: %v", out, err)
		}
		return tok
	}
	if tok := next(); tok != json.Delim('{') {
		t.Fatalf("starts with %v", tok)
	}
	var keys []string
	for dec.More() {
		k := next().(string)
		keys = append(keys, k)
		if k != "supersedes" {
			if v := next(); v != wantVals[k] {
				t.Errorf("member %s = %#v, want %#v", k, v, wantVals[k])
			}
			continue
		}
		if tok := next(); tok != json.Delim('{') {
			t.Fatalf("supersedes is %v, not an object", tok)
		}
		for _, sub := range [][2]string{{"commitment_hash", p.Supersedes.CommitmentHash}, {"session_id", p.Supersedes.SessionId}} {
			if k := next(); k != sub[0] {
				t.Fatalf("supersedes member %v, want %s", k, sub[0])
			}
			if v := next(); v != sub[1] {
				t.Errorf("supersedes.%s = %#v, want %q", sub[0], v, sub[1])
			}
		}
		if tok := next(); tok != json.Delim('}') {
			t.Fatalf("supersedes has extra members: %v", tok)
		}
	}
	if tok := next(); tok != json.Delim('}') {
		t.Fatalf("ends with %v", tok)
	}
	if _, err := dec.Token(); err != io.EOF {
		t.Fatalf("trailing data after object in %s", out)
	}
	want := topKeys
	if p.Supersedes == nil {
		want = topKeys[:len(topKeys)-1]
	}
	if strings.Join(keys, ",") != strings.Join(want, ",") {
		t.Errorf("keys %v, want %v", keys, want)
	}
	// JCS orders by UTF-16 code units; for ASCII keys that is byte order.
	for i := 1; i < len(want); i++ {
		if want[i-1] >= want[i] {
			t.Fatalf("test key table out of order at %s", want[i])
		}
	}
	if dec.InputOffset() != int64(len(out)) {
		t.Errorf("decoder stopped at %d of %d bytes", dec.InputOffset(), len(out))
	}
	inString := false
	for i := 0; i < len(out); i++ {
		switch c := out[i]; {
		case inString && c == '\\':
			i++ // skip the escaped byte
		case c == '"':
			inString = !inString
		case !inString && (c == ' ' || c == '\t' || c == '\n' || c == '\r'):
			t.Fatalf("whitespace at byte %d of %s", i, out)
		}
	}
}

func TestPreimageAndHashAgree(t *testing.T) {
	p := sample()
	c := mustCanonical(t, p)
	pre, err := cmthash.Preimage(p)
	if err != nil {
		t.Fatal(err)
	}
	if string(pre) != "macp-commitment-hash/1:"+c {
		t.Errorf("Preimage = %s", pre)
	}
	sum := sha256.Sum256(pre)
	want := "sha256:" + hex.EncodeToString(sum[:])
	if got := mustHash(t, p); got != want {
		t.Errorf("Hash = %s, want %s", got, want)
	}
	if len(want) != cmthash.HashLen || cmthash.HashLen != 71 {
		t.Errorf("HashLen = %d, hash length %d", cmthash.HashLen, len(want))
	}
}

func TestLongPayload(t *testing.T) {
	// Longer than Hash's stack scratch buffer, with escapes throughout.
	p := sample()
	p.Reason = strings.Repeat("x\"\x01\u2028", 500)
	pre, err := cmthash.Preimage(p)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(pre)
	if got, want := mustHash(t, p), "sha256:"+hex.EncodeToString(sum[:]); got != want {
		t.Errorf("Hash = %s, want %s", got, want)
	}
	checkStructure(t, p, pre[len("macp-commitment-hash/1:"):])
}

func TestCanonicalIsAFreshSlice(t *testing.T) {
	p := sample()
	a, _ := cmthash.Canonical(p)
	b, _ := cmthash.Canonical(p)
	a[0] = 'X'
	if b[0] != '{' {
		t.Error("Canonical results share memory")
	}
}

// withUnknown returns m's wire form followed by an extra field num, decoded
// back into a fresh message of the same type, so the extra field lands in
// the unknown-field set exactly as it would from a newer peer.
func withUnknown[M proto.Message](t *testing.T, m M, num protowire.Number) M {
	t.Helper()
	wire, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	wire = protowire.AppendTag(wire, num, protowire.BytesType)
	wire = protowire.AppendString(wire, "from the future")
	out := m.ProtoReflect().New().Interface().(M)
	if err := proto.Unmarshal(wire, out); err != nil {
		t.Fatal(err)
	}
	if len(out.ProtoReflect().GetUnknown()) == 0 {
		t.Fatal("test setup: field did not land in the unknown set")
	}
	return out
}

func TestUnknownFieldsCannotVerify(t *testing.T) {
	top := withUnknown(t, sample(), 10)

	inner := sample()
	inner.Supersedes = withUnknown(t, inner.Supersedes, 3)

	// A CommitmentPayload whose supersedes arrives with an unknown field
	// from the wire, not built in Go.
	ref := protowire.AppendTag(nil, 1, protowire.BytesType)
	ref = protowire.AppendString(ref, "s")
	ref = protowire.AppendTag(ref, 7, protowire.VarintType)
	ref = protowire.AppendVarint(ref, 1)
	wire := protowire.AppendTag(nil, 2, protowire.BytesType)
	wire = protowire.AppendString(wire, "decision.approved")
	wire = protowire.AppendTag(wire, 9, protowire.BytesType)
	wire = protowire.AppendBytes(wire, ref)
	var nested macpv1.CommitmentPayload
	if err := proto.Unmarshal(wire, &nested); err != nil {
		t.Fatal(err)
	}

	// Unknown field and empty supersedes at once.
	emptySup := &macpv1.CommitmentPayload{Supersedes: withUnknown(t, &macpv1.CommitmentRef{}, 99)}

	for name, p := range map[string]*macpv1.CommitmentPayload{
		"top level":            top,
		"in supersedes":        inner,
		"decoded nested":       &nested,
		"empty ref w/ unknown": emptySup,
	} {
		t.Run(name, func(t *testing.T) {
			calls := map[string]error{}
			var c, pre []byte
			var h string
			c, calls["Canonical"] = cmthash.Canonical(p)
			pre, calls["Preimage"] = cmthash.Preimage(p)
			h, calls["Hash"] = cmthash.Hash(p)
			if c != nil || pre != nil || h != "" {
				t.Errorf("results beside the error: %q %q %q", c, pre, h)
			}
			calls["Verify"] = cmthash.Verify(p, "sha256:"+strings.Repeat("0", 64))
			for fn, err := range calls {
				if !errors.Is(err, cmthash.ErrCannotVerify) {
					t.Errorf("%s: %v, want ErrCannotVerify", fn, err)
				}
				if errors.Is(err, cmthash.ErrMismatch) || errors.Is(err, cmthash.ErrInvalidPayload) {
					t.Errorf("%s: %v is not just cannot-verify", fn, err)
				}
			}
		})
	}

	// The same payload without the extra field verifies against its hash,
	// and the unknown field still wins over that correct hash.
	clean := sample()
	h := mustHash(t, clean)
	if err := cmthash.Verify(clean, h); err != nil {
		t.Fatalf("clean payload: %v", err)
	}
	if err := cmthash.Verify(top, h); !errors.Is(err, cmthash.ErrCannotVerify) {
		t.Errorf("unknown field with the known part's hash: %v, want ErrCannotVerify", err)
	}
}

func TestVerify(t *testing.T) {
	p := sample()
	h := mustHash(t, p)
	if err := cmthash.Verify(p, h); err != nil {
		t.Fatalf("Verify(own hash) = %v", err)
	}
	other := sample()
	other.CommitmentId = "c2"
	for name, want := range map[string]string{
		"other payload":    mustHash(t, other),
		"uppercase hex":    "sha256:" + strings.ToUpper(h[len("sha256:"):]),
		"empty":            "",
		"bare hex":         h[len("sha256:"):],
		"other algorithm":  "sha512:" + h[len("sha256:"):],
		"trailing newline": h + "\n",
		"truncated":        h[:len(h)-1],
	} {
		err := cmthash.Verify(p, want)
		if !errors.Is(err, cmthash.ErrMismatch) {
			t.Errorf("%s: Verify = %v, want ErrMismatch", name, err)
		}
		if errors.Is(err, cmthash.ErrCannotVerify) {
			t.Errorf("%s: mismatch also reads as cannot-verify: %v", name, err)
		}
	}
}

func TestInvalidPayload(t *testing.T) {
	cases := map[string]*macpv1.CommitmentPayload{
		"nil":                      nil,
		"bad reason":               {Reason: "ok\xff"},
		"surrogate in action":      {Action: "\xed\xa0\x80"},
		"bad supersedes hash":      {Supersedes: &macpv1.CommitmentRef{CommitmentHash: "\xc0\xaf"}},
		"bad supersedes session":   {Supersedes: &macpv1.CommitmentRef{SessionId: "\x80"}},
		"bad configuration (last)": {ConfigurationVersion: "\xf8"},
	}
	for name, p := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := cmthash.Canonical(p)
			if !errors.Is(err, cmthash.ErrInvalidPayload) || !errors.Is(err, cmthash.ErrCannotVerify) {
				t.Errorf("Canonical: %v, want ErrInvalidPayload wrapping ErrCannotVerify", err)
			}
			if _, err := cmthash.Hash(p); !errors.Is(err, cmthash.ErrInvalidPayload) {
				t.Errorf("Hash: %v", err)
			}
			if err := cmthash.Verify(p, ""); !errors.Is(err, cmthash.ErrInvalidPayload) || errors.Is(err, cmthash.ErrMismatch) {
				t.Errorf("Verify: %v", err)
			}
		})
	}
	// The error names the offending field.
	_, err := cmthash.Hash(&macpv1.CommitmentPayload{Supersedes: &macpv1.CommitmentRef{SessionId: "\x80"}})
	if err == nil || !strings.Contains(err.Error(), "supersedes.session_id") {
		t.Errorf("error %v does not name supersedes.session_id", err)
	}
}

func TestWellFormed(t *testing.T) {
	good := "sha256:" + strings.Repeat("0123456789abcdef", 4)
	if !cmthash.WellFormed(good) {
		t.Errorf("WellFormed(%s) = false", good)
	}
	for _, bad := range []string{
		"", "sha256:", good[:len(good)-1], good + "0",
		good[:7] + strings.ToUpper(good[7:]), good[:len(good)-1] + "F", good[:len(good)-1] + "g", "SHA256:" + good[7:], "sha256-" + good[7:],
		" " + good[1:], good[:70] + "\x00",
	} {
		if cmthash.WellFormed(bad) {
			t.Errorf("WellFormed(%q) = true", bad)
		}
	}
}

// TestFrozenFieldSet pins the generated types to the fields label /1
// covers. If this fails, the proto gained or changed a field: a known field
// outside the set would be silently left out of the hash, so this package
// must first treat it as cannot-verify (or move to a new label).
func TestFrozenFieldSet(t *testing.T) {
	check := func(md protoreflect.MessageDescriptor, want []string) {
		t.Helper()
		fields := md.Fields()
		if fields.Len() != len(want) {
			t.Errorf("%s has %d fields, label /1 covers %d", md.FullName(), fields.Len(), len(want))
		}
		for i, name := range want {
			fd := fields.ByNumber(protoreflect.FieldNumber(i + 1))
			if fd == nil || string(fd.Name()) != name {
				t.Errorf("%s field %d is %v, want %s", md.FullName(), i+1, fd, name)
			}
		}
		if md.ExtensionRanges().Len() != 0 || md.Oneofs().Len() != 0 {
			t.Errorf("%s gained extension ranges or oneofs", md.FullName())
		}
	}
	check((&macpv1.CommitmentPayload{}).ProtoReflect().Descriptor(), []string{
		"commitment_id", "action", "authority_scope", "reason", "mode_version",
		"policy_version", "configuration_version", "outcome_positive", "supersedes",
	})
	check((&macpv1.CommitmentRef{}).ProtoReflect().Descriptor(), []string{"session_id", "commitment_hash"})
}

// FuzzCanonical builds payloads from arbitrary strings and checks the whole
// serialization: invalid UTF-8 anywhere gives ErrInvalidPayload; otherwise
// the output decodes to the projection with keys in canonical order, and
// Hash is the SHA-256 of the labelled preimage.
//
// Run with: go test -run '^$' -fuzz FuzzCanonical ./host/cmthash/
func FuzzCanonical(f *testing.F) {
	f.Add("c1", "decision.approved", "seam", "sealed", "1.0.0", "", "cfg-1", true, true, "s", "sha256:00")
	f.Add("", "", "", "", "", "", "", false, false, "", "")
	f.Add("c5", "decision.\"appro\\ved\"", "café", "ré\tsumé\n— naïve \U0001F702", "\u2028", "<&>", "\x7f/", false, true, "\x00", "\x1f")
	f.Add("\xff", "a", "b", "c", "d", "e", "f", true, true, "\xed\xa0\x80", "x")
	f.Fuzz(func(t *testing.T, id, action, scope, reason, mode, policy, cfg string, outcome, hasSup bool, sess, hash string) {
		p := &macpv1.CommitmentPayload{
			CommitmentId: id, Action: action, AuthorityScope: scope, Reason: reason,
			ModeVersion: mode, PolicyVersion: policy, ConfigurationVersion: cfg, OutcomePositive: outcome,
		}
		all := []string{id, action, scope, reason, mode, policy, cfg}
		if hasSup {
			p.Supersedes = &macpv1.CommitmentRef{SessionId: sess, CommitmentHash: hash}
			all = append(all, sess, hash)
		}
		valid := true
		for _, s := range all {
			valid = valid && utf8.ValidString(s)
		}
		out, err := cmthash.Canonical(p)
		if !valid {
			if !errors.Is(err, cmthash.ErrInvalidPayload) {
				t.Fatalf("invalid UTF-8 accepted: %v %q", err, out)
			}
			return
		}
		if err != nil {
			t.Fatalf("Canonical: %v", err)
		}
		checkStructure(t, p, out)
		sum := sha256.Sum256(append([]byte("macp-commitment-hash/1:"), out...))
		if got, want := mustHash(t, p), "sha256:"+hex.EncodeToString(sum[:]); got != want || !cmthash.WellFormed(got) {
			t.Fatalf("Hash = %s, want %s", got, want)
		}
	})
}

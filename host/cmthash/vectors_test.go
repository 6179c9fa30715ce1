package cmthash_test

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/concord-macp/concord/host/cmthash"
	macpv1 "github.com/concord-macp/concord/proto/macp/v1"
)

// vectorDir holds the specification's commitment-hash vectors, relative to
// this package's directory.
const vectorDir = "../../../shared/macp-spec/conformance/cmt-hash"

// vector is one file of vectorDir, in the shape of its vector-schema.json.
// Pointers tell a missing key from an empty value.
type vector struct {
	Name           string        `json:"name"`
	Description    string        `json:"description"`
	Label          string        `json:"label"`
	Payload        vectorPayload `json:"payload"`
	JCSHex         string        `json:"jcs_utf8_hex"`
	PreimageHex    string        `json:"preimage_utf8_hex"`
	Hash           string        `json:"hash"`
	MustDifferFrom *string       `json:"must_differ_from"`
}

type vectorPayload struct {
	CommitmentID         *string    `json:"commitment_id"`
	Action               *string    `json:"action"`
	AuthorityScope       *string    `json:"authority_scope"`
	Reason               *string    `json:"reason"`
	ModeVersion          *string    `json:"mode_version"`
	PolicyVersion        *string    `json:"policy_version"`
	ConfigurationVersion *string    `json:"configuration_version"`
	OutcomePositive      *bool      `json:"outcome_positive"`
	Supersedes           *vectorRef `json:"supersedes"`
}

type vectorRef struct {
	SessionID      *string `json:"session_id"`
	CommitmentHash *string `json:"commitment_hash"`
}

// build turns the vector payload into the proto message, failing the test on
// a key the schema requires but the file lacks. Supersedes is set exactly
// when the key is present.
func (v vectorPayload) build(t *testing.T) *macpv1.CommitmentPayload {
	t.Helper()
	str := func(name string, s *string) string {
		t.Helper()
		if s == nil {
			t.Fatalf("payload lacks required key %q", name)
		}
		return *s
	}
	if v.OutcomePositive == nil {
		t.Fatalf("payload lacks required key %q", "outcome_positive")
	}
	p := &macpv1.CommitmentPayload{
		CommitmentId:         str("commitment_id", v.CommitmentID),
		Action:               str("action", v.Action),
		AuthorityScope:       str("authority_scope", v.AuthorityScope),
		Reason:               str("reason", v.Reason),
		ModeVersion:          str("mode_version", v.ModeVersion),
		PolicyVersion:        str("policy_version", v.PolicyVersion),
		ConfigurationVersion: str("configuration_version", v.ConfigurationVersion),
		OutcomePositive:      *v.OutcomePositive,
	}
	if r := v.Supersedes; r != nil {
		p.Supersedes = &macpv1.CommitmentRef{
			SessionId:      str("supersedes.session_id", r.SessionID),
			CommitmentHash: str("supersedes.commitment_hash", r.CommitmentHash),
		}
	}
	return p
}

// loadVectors reads every vector file; it fails the test when there are none.
func loadVectors(t *testing.T) []vector {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(vectorDir, "cmt_hash_*.json"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatalf("no vectors under %s", vectorDir)
	}
	var vs []vector
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		dec := json.NewDecoder(bytes.NewReader(raw))
		dec.DisallowUnknownFields() // the schema is closed at every level
		var v vector
		if err := dec.Decode(&v); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		if want := strings.TrimSuffix(filepath.Base(f), ".json"); v.Name != want {
			t.Fatalf("%s: name %q does not match the file name", f, v.Name)
		}
		vs = append(vs, v)
	}
	return vs
}

func mustHex(t *testing.T, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatalf("bad hex %q: %v", s, err)
	}
	return b
}

func TestVectors(t *testing.T) {
	vs := loadVectors(t)
	if len(vs) < 5 {
		t.Errorf("found %d vectors, want at least 5 (001-005)", len(vs))
	}
	computed := map[string]string{}
	for _, v := range vs {
		t.Run(v.Name, func(t *testing.T) {
			if v.Label != cmthash.Label {
				t.Fatalf("vector label %q, package label %q", v.Label, cmthash.Label)
			}
			p := v.Payload.build(t)

			wantJCS := mustHex(t, v.JCSHex)
			gotJCS, err := cmthash.Canonical(p)
			if err != nil {
				t.Fatalf("Canonical: %v", err)
			}
			if !bytes.Equal(gotJCS, wantJCS) {
				t.Errorf("JCS bytes differ\n got %s\nwant %s", gotJCS, wantJCS)
			}

			wantPre := mustHex(t, v.PreimageHex)
			gotPre, err := cmthash.Preimage(p)
			if err != nil {
				t.Fatalf("Preimage: %v", err)
			}
			if !bytes.Equal(gotPre, wantPre) {
				t.Errorf("preimage differs\n got %s\nwant %s", gotPre, wantPre)
			}

			got, err := cmthash.Hash(p)
			if err != nil {
				t.Fatalf("Hash: %v", err)
			}
			if got != v.Hash {
				t.Errorf("Hash = %s, want %s", got, v.Hash)
			}
			if !cmthash.WellFormed(got) {
				t.Errorf("Hash %s is not well formed", got)
			}
			if err := cmthash.Verify(p, v.Hash); err != nil {
				t.Errorf("Verify against the vector's hash: %v", err)
			}
			computed[v.Name] = got
		})
	}
	differs := 0
	for _, v := range vs {
		if v.MustDifferFrom == nil {
			continue
		}
		other, ok := computed[*v.MustDifferFrom]
		if !ok {
			t.Errorf("%s: must_differ_from names %q, which is not among the vectors", v.Name, *v.MustDifferFrom)
			continue
		}
		differs++
		if computed[v.Name] == other {
			t.Errorf("%s hashes like %s (%s), but must differ", v.Name, *v.MustDifferFrom, other)
		}
	}
	if differs == 0 {
		t.Error("no vector exercised must_differ_from (004 against 003 expected)")
	}
	// Pinned explicitly, whatever the files say.
	if a, b := computed["cmt_hash_003_all_empty"], computed["cmt_hash_004_empty_supersedes"]; a == "" || a == b {
		t.Errorf("vector 004 (%q) must hash differently from 003 (%q)", b, a)
	}
}

// TestVectorChain checks that vector 002 supersedes 001 by 001's own hash, as
// its description says.
func TestVectorChain(t *testing.T) {
	byName := map[string]vector{}
	for _, v := range loadVectors(t) {
		byName[v.Name] = v
	}
	v1, ok1 := byName["cmt_hash_001_minimal"]
	v2, ok2 := byName["cmt_hash_002_supersedes"]
	if !ok1 || !ok2 {
		t.Skip("vectors 001 and 002 not both present")
	}
	h1, err := cmthash.Hash(v1.Payload.build(t))
	if err != nil {
		t.Fatal(err)
	}
	p2 := v2.Payload.build(t)
	if p2.Supersedes == nil || p2.Supersedes.CommitmentHash != h1 {
		t.Errorf("002 supersedes %v, want commitment_hash %s", p2.Supersedes, h1)
	}
}

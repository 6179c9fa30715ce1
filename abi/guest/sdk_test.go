package guest

import (
	"reflect"
	"strings"
	"testing"

	"github.com/concord-macp/concord/macperr"
)

// TestObjectOptionalAndSkipped reads an object key by key with NextKey:
// optional strings, booleans and integers, and values of any shape kept raw.
func TestObjectOptionalAndSkipped(t *testing.T) {
	type got struct {
		S    *string
		B    *bool
		U    *uint64
		N    uint64
		Rest []string
	}
	decode := func(src string) (g got, err error) {
		o := NewObject(src)
		for {
			k, ok := o.NextKey()
			if !ok {
				break
			}
			switch k {
			case "s":
				o.StringPtr(&g.S)
			case "b":
				o.BoolPtr(&g.B)
			case "u":
				o.UintPtr(&g.U)
			case "n":
				o.Uint64(&g.N)
			default:
				g.Rest = append(g.Rest, k+"="+o.Raw())
			}
		}
		return g, o.Err()
	}
	g, err := decode(`{"s":"x","b":false,"u":7,"n":3,"deep":{"a":[1,{"b":null}],"c":"\u00e9"},"list":[true, -1.5e3]}`)
	if err != nil || *g.S != "x" || *g.B || *g.U != 7 || g.N != 3 ||
		!reflect.DeepEqual(g.Rest, []string{`deep={"a":[1,{"b":null}],"c":"\u00e9"}`, `list=[true, -1.5e3]`}) {
		t.Fatalf("%+v %v", g, err)
	}
	g, err = decode(`{"s":"x","s":null,"b":true,"b":null,"u":1,"u":null,"n":5,"n":null}`)
	if err != nil || g.S != nil || g.B != nil || g.U != nil || g.N != 5 {
		t.Fatalf("nulls: %+v %v", g, err)
	}
	for _, bad := range []string{
		`{"s":1}`, `{"b":"true"}`, `{"u":-1}`, `{"n":1.5}`, `{"x":[1,]}`, `{"x":{"a"}}`, `{"x":{1:2}}`, `{"x":tru}`,
		`{"x":` + strings.Repeat("[", 70) + strings.Repeat("]", 70) + `}`, `{"x":"\xff"}`, `{"x":[1 2]}`, `{"x":`,
	} {
		if _, err := decode(bad); err == nil {
			t.Errorf("%q decoded", bad)
		}
	}
}

func TestReadRules(t *testing.T) {
	for _, tc := range []struct {
		rules  string
		found  bool
		raw    string
		errHas string
	}{
		{"", false, "", ""},
		{" null ", false, "", ""},
		{`{}`, false, "", ""},
		{`{"mine":null}`, false, "", ""},
		{`{"other":{"deep":[1,2]},"mine":{"a":1}}`, true, `{"a":1}`, ""},
		{`{"mine":{"a":1},"mine":{"a":2}}`, true, `{"a":2}`, ""}, // the last one wins, as in encoding/json
		{`{"Mine":{"a":1}}`, false, "", ""},                      // the key is matched exactly
		{`[1]`, false, "", "policy rules"},
		{`{"mine":{"a":1}`, false, "", "policy rules"},
		{`{"mine":{"a":1}} x`, false, "", "policy rules"},
		{`{"mine":{"bad":1}}`, false, "", `policy rules "mine"`},
	} {
		var got rawDecoder
		found, err := ReadRules(tc.rules, "mine", &got)
		switch {
		case tc.errHas != "" && (err == nil || !strings.Contains(err.Error(), tc.errHas)):
			t.Errorf("%q: error %v, want one with %q", tc.rules, err, tc.errHas)
		case tc.errHas == "" && (err != nil || found != tc.found || string(got) != tc.raw):
			t.Errorf("%q: %v %q %v, want %v %q", tc.rules, found, got, err, tc.found, tc.raw)
		}
	}
}

// rawDecoder keeps the text it is asked to decode, refusing a "bad" key.
type rawDecoder string

func (r *rawDecoder) DecodePayload(src string) error {
	if strings.Contains(src, "bad") {
		return BlankError("bad")
	}
	*r = rawDecoder(src)
	return nil
}

// TestArena checks that slices decoded into an arena are capacity-limited
// windows: appending to one never overwrites another, and interleaved
// fields still come out whole.
func TestArena(t *testing.T) {
	var a Arena
	r := FieldReader{Arena: &a}
	var x, y []string
	x = r.AppendString(x, "x1")
	x = r.AppendString(x, "x2")
	y = r.AppendString(y, "y1")
	x = r.AppendString(x, "x3") // x is no longer the tail: moved
	y = r.AppendString(y, "y2")
	if !reflect.DeepEqual(x, []string{"x1", "x2", "x3"}) || !reflect.DeepEqual(y, []string{"y1", "y2"}) {
		t.Fatalf("x %q y %q", x, y)
	}
	if cap(x) != len(x) || cap(y) != len(y) {
		t.Fatalf("windows are not capacity-limited: %d/%d %d/%d", len(x), cap(x), len(y), cap(y))
	}
	x2 := append(x, "mine")
	if y[0] != "y1" || x2[3] != "mine" {
		t.Fatal("an append to a window wrote into the arena")
	}
	a.Reset()
	if z := r.AppendString(nil, "z"); !reflect.DeepEqual(z, []string{"z"}) || x[0] != "x1" {
		t.Fatalf("after Reset: %q (x %q)", z, x)
	}
}

func TestBegin(t *testing.T) {
	decode := func(b []byte) (string, error) {
		if string(b) == "bad" {
			return "", BlankError("state")
		}
		return string(b), nil
	}
	start := func(*Session) Result { return Accept([]byte("s0")) }
	committed := func(s string) bool { return s == "done" }
	for _, tc := range []struct {
		typ, state string
		ok         bool
		code       macperr.Code
		accepted   bool
	}{
		{"SessionStart", "", false, "", true},
		{"SessionStart", "s0", false, macperr.InvalidEnvelope, false},
		{"Vote", "", false, macperr.InternalError, false},
		{"Vote", "bad", false, macperr.InternalError, false},
		{"Vote", "done", false, macperr.InvalidEnvelope, false},
		{"Vote", "s1", true, "", false},
	} {
		s, res, ok := Begin(&StepRequest{State: []byte(tc.state), Envelope: Envelope{MessageType: tc.typ}}, start, decode, committed)
		if ok != tc.ok || res.Code != tc.code || res.Accepted != tc.accepted || (ok && s != tc.state) {
			t.Errorf("%s on %q: %q %+v %v", tc.typ, tc.state, s, res, ok)
		}
	}
}

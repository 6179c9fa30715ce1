package policy

import (
	"bytes"
	"testing"

	"github.com/open-policy-agent/opa/v1/ast"
)

func TestJSONToValueMatchesOPA(t *testing.T) {
	docs := []string{
		`{}`, `[]`, `""`, `0`, `-0`, `1.5e-3`, `-12E+4`, `true`, `false`, `null`,
		`{"a":[1,2,{"b":null}],"c":"x\"y\\z\/\b\f\n\r\t","d":"\u00e9\u4e2d\ud83d\ude00"}`,
		` { "k" : [ true , false ] } `,
		`{"votes":{"p1":{"agent://a":{"vote":"APPROVE","reason":""}}},"evaluations":[{"confidence":0.9}]}`,
		`"caf\u00e9 ☕"`,
		`12345678901234567890123`,
	}
	for _, d := range docs {
		got, err := jsonToValue([]byte(d))
		if err != nil {
			t.Errorf("%s: %v", d, err)
			continue
		}
		want, err := ast.ValueFromReader(bytes.NewReader([]byte(d)))
		if err != nil {
			t.Fatal(err)
		}
		if got.Compare(want) != 0 {
			t.Errorf("%s: got %v, want %v", d, got, want)
		}
	}
}

func TestJSONToValueRejects(t *testing.T) {
	for _, d := range []string{
		``, `{`, `{"a"}`, `{"a":}`, `{"a":1,}`, `[1,]`, `[1 2]`, `01`, `1.`, `-`, `1e`, `tru`, `nul`,
		`"abc`, "\"a\nb\"", `"\x"`, `"\u12"`, `{} x`, `{1:2}`,
	} {
		if v, err := jsonToValue([]byte(d)); err == nil {
			t.Errorf("%q parsed as %v", d, v)
		}
	}
	deep := bytes.Repeat([]byte("["), maxJSONDepth+2)
	if _, err := jsonToValue(deep); err == nil {
		t.Error("unbounded nesting accepted")
	}
}

func FuzzJSONToValue(f *testing.F) {
	f.Add([]byte(`{"a":[1,"x",null,true]}`))
	f.Add([]byte(`"\ud83d\ude00"`))
	f.Fuzz(func(t *testing.T, data []byte) {
		got, err := jsonToValue(data)
		want, werr := ast.ValueFromReader(bytes.NewReader(data))
		if werr != nil || err != nil {
			return // acceptance differences at the edges are fine; crashes are not
		}
		if got.Compare(want) != 0 {
			t.Errorf("%q: got %v, want %v", data, got, want)
		}
	})
}

func TestJSONToValueKeys(t *testing.T) {
	doc := `{"skip":{"deep":[1,"x\"y",{"z":null}],"e":"\u00e9"},"votes":{"p1":{"a":{"vote":"APPROVE"}}},"other":[true,false],"n":3}`
	got, err := jsonToValueKeys([]byte(doc), []string{"votes", "n"})
	if err != nil {
		t.Fatal(err)
	}
	want := ast.MustParseTerm(`{"votes":{"p1":{"a":{"vote":"APPROVE"}}},"n":3}`).Value
	if got.Compare(want) != 0 {
		t.Errorf("got %v, want %v", got, want)
	}
	for _, bad := range []string{
		`{"skip":[1,}`, `{"skip":{"a" 1}}`, `{"skip":"\q"}`, `{"skip":tru}`, `{"skip":"a`, `{"skip":{1:2}}`,
	} {
		if v, err := jsonToValueKeys([]byte(bad), []string{"votes"}); err == nil {
			t.Errorf("%s parsed as %v", bad, v)
		}
	}
	// A non-object top level is converted whole.
	if v, err := jsonToValueKeys([]byte(`[1,2]`), []string{"votes"}); err != nil || v.Compare(ast.MustParseTerm(`[1,2]`).Value) != 0 {
		t.Errorf("array: %v %v", v, err)
	}
}

package guest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"
)

// strictJSON is the behaviour Object reproduces, written with
// encoding/json: exactly one JSON object, valid UTF-8, no unknown keys,
// nothing after it.
func strictJSON(b []byte, v any) error {
	if len(bytes.TrimSpace(b)) == 0 {
		return errors.New("the payload is empty")
	}
	if !utf8.Valid(b) {
		return errors.New("the payload is not valid UTF-8")
	}
	if t := bytes.TrimLeft(b, " \t\r\n"); len(t) == 0 || t[0] != '{' {
		return errors.New("the payload is not a JSON object")
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("unexpected data after the JSON object")
	}
	return nil
}

// reference is the shape decoded with strictJSON (encoding/json), the
// behaviour Object must reproduce.
type reference struct {
	IntentID    string   `json:"intent_id"`
	Description string   `json:"description"`
	Keep        []string `json:"keep"`
	Watermark   *uint64  `json:"watermark"`
	Approved    bool     `json:"approved"`
}

var testNames = []string{"intent_id", "description", "keep", "watermark", "approved"}

// decoded is what either decoder made of a payload.
type decoded struct {
	IntentID, Description string
	Keep                  []string
	Watermark             OptUint
	Approved              bool
}

func viaJSON(b []byte) (decoded, error) {
	var r reference
	err := strictJSON(b, &r)
	d := decoded{IntentID: r.IntentID, Description: r.Description, Keep: r.Keep, Approved: r.Approved}
	if r.Watermark != nil {
		d.Watermark = OptUint{V: *r.Watermark, Set: true}
	}
	return d, err
}

func viaObject(b []byte) (decoded, error) { return decodeString(string(b), nil) }

// viaObjectIn decodes arrays into a buffer that already holds an element.
func viaObjectIn(b []byte) (decoded, error) {
	buf := []string{"before"}
	d, err := decodeString(string(b), &buf)
	if buf[0] != "before" || (err == nil && len(d.Keep) > 0 && !reflect.DeepEqual(buf[len(buf)-len(d.Keep):], d.Keep)) {
		return d, fmt.Errorf("StringsIn left the buffer %q for keep %q", buf, d.Keep)
	}
	return d, err
}

func decodeString(src string, reuse *[]string) (decoded, error) {
	var d decoded
	o := NewObject(src)
	for o.Next(testNames) {
		switch o.Field() {
		case 0:
			o.String(&d.IntentID)
		case 1:
			o.String(&d.Description)
		case 2:
			if reuse != nil {
				o.StringsIn(&d.Keep, reuse)
			} else {
				o.Strings(&d.Keep)
			}
		case 3:
			o.Uint(&d.Watermark)
		case 4:
			o.Bool(&d.Approved)
		}
	}
	return d, o.Err()
}

// same checks that Object and strictJSON agree on b: both refuse it, or
// both accept it with the same values (a nil and an empty keep differ).
func same(t *testing.T, b []byte) {
	t.Helper()
	want, wantErr := viaJSON(b)
	for _, decode := range []func([]byte) (decoded, error){viaObject, viaObjectIn} {
		got, err := decode(b)
		if (err == nil) != (wantErr == nil) {
			t.Fatalf("%q: Object error %v, encoding/json error %v", b, err, wantErr)
		}
		if err != nil {
			continue
		}
		if !reflect.DeepEqual(got, want) || (got.Keep == nil) != (want.Keep == nil) {
			t.Fatalf("%q:\nObject        %#v\nencoding/json %#v", b, got, want)
		}
	}
}

var objectCases = []string{
	// Accepted.
	`{}`, ` {} `, "\t\r\n{\n}\n", `{"intent_id":"i1"}`,
	`{"intent_id":"i1","description":"d","keep":["a","b"],"watermark":7,"approved":true}`,
	`{ "keep" : [ "a" , "b" ] , "watermark" : 0 }`,
	`{"keep":[]}`, `{"keep":[ ]}`, `{"keep":null}`, `{"keep":["a",null]}`, `{"keep":[null]}`,
	`{"watermark":null}`, `{"watermark":18446744073709551615}`, `{"approved":false}`, `{"approved":null}`,
	`{"intent_id":null}`, `{"intent_id":"a","intent_id":null}`, `{"intent_id":"a","intent_id":"b"}`,
	`{"keep":["a"],"keep":null}`, `{"keep":["a"],"keep":[]}`, `{"watermark":1,"watermark":null}`,
	`{"approved":true,"approved":null}`, `{"watermark":3,"watermark":4}`,
	`{"INTENT_ID":"x"}`, `{"Intent_Id":"x"}`, `{"intent_id":"a","INTENT_ID":"b"}`,
	`{"de\u017fcription":"long s"}`, `{"\u212aeep":["kelvin"]}`, "{\"de\u017fcription\":\"raw long s\"}",
	`{"intent_\u0069d":"escaped key"}`,
	`{"intent_id":"a\"b\\c\/d\be\ff\ng\rh\ti"}`, `{"intent_id":"\u00e9\u4e2d\u0000"}`, `{"intent_id":"\uD83D\uDE00"}`,
	`{"intent_id":"\ud800"}`, `{"intent_id":"\udc00"}`, `{"intent_id":"\ud800\u0041"}`, `{"intent_id":"\ud800\ud800"}`,
	`{"intent_id":"\ud800x"}`, `{"intent_id":"\ud800\\"}`, `{"intent_id":"\uDBFF\uDFFF"}`,
	`{"intent_id":"é中😀"}`, "{\"intent_id\":\"a\x7fb\"}", `{"keep":["\n","\u0022"]}`,

	// Refused: not an object, empty, bad UTF-8, trailing data.
	``, ` `, "\v", "\u00a0", `null`, `[]`, `"x"`, `1`, "\ufeff{}", "\v{}", `{} x`, `{}{}`, `{},`, "{}\v", "{}\u00a0",
	"{\"intent_id\":\"\xff\"}", "{\"intent_id\":\"\xed\xa0\x80\"}",
	"{\"intent_id\":\"a\\n\xff\"}", "{\"intent_id\":\"\xc0\x80\"}", "{\"intent_id\":\"\xe4\xb8\"}",
	"{\"intent_id\":\"\xf4\x90\x80\x80\"}", "{\"intent_id\":\"\xe4\xb8\xad\\u00e9\xe4\xb8\"}",
	"{\"intent_\xffid\":\"x\"}", "{\"ttl\xff\":1}", "{\"intent_id\":\"a\"}\xff", "\xff{}", "{\xff}",
	"{\"keep\":[\"\xff\"]}", "{\"keep\":[\"\xe4\xb8\xad\"]}", "{\"watermark\":1\xff}", "{\"approved\":t\xffue}",

	// Refused: syntax.
	`{`, `{"`, `{"intent_id"`, `{"intent_id":`, `{"intent_id":"a"`, `{"intent_id":"a",}`, `{,}`, `{"intent_id" "a"}`,
	`{"intent_id":"a" "description":"b"}`, `{intent_id:"a"}`, `{'intent_id':'a'}`, `{"intent_id":"a\x"}`,
	`{"intent_id":"\u12"}`, `{"intent_id":"\u12g4"}`, `{"intent_id":"\ud800\u12"}`, "{\"intent_id\":\"a\x01\"}",
	"{\"intent_id\":\"a\tb\"}", "{\"intent_id\":\"a\nb\"}", `{"intent_id":"a`, `{"intent_id":"a\`,
	`{"keep":["a",]}`, `{"keep":[,]}`, `{"keep":["a" "b"]}`, `{"keep":["a"}`, `{"keep":[`, `{"keep":["a",`,
	`{"approved":tru}`, `{"approved":truex}`, `{"approved":True}`, `{"watermark":nul}`, `{"watermark":nulll}`,
	`{"watermark":01}`, `{"watermark":-}`, `{"watermark":1.}`, `{"watermark":.5}`, `{"watermark":1e}`,
	`{"watermark":+1}`, `{"watermark":0x10}`, `{"watermark":1_000}`, `{"watermark":Infinity}`, `{"watermark":NaN}`,

	// Refused: wrong types, numbers that are not unsigned 64-bit integers.
	`{"intent_id":1}`, `{"intent_id":true}`, `{"intent_id":["a"]}`, `{"intent_id":{}}`,
	`{"keep":"a"}`, `{"keep":[1]}`, `{"keep":[true]}`, `{"keep":[["a"]]}`, `{"keep":[{}]}`, `{"keep":{}}`,
	`{"watermark":"1"}`, `{"watermark":true}`, `{"watermark":[1]}`, `{"watermark":-1}`, `{"watermark":-0}`,
	`{"watermark":1.0}`, `{"watermark":1e2}`, `{"watermark":1E2}`, `{"watermark":18446744073709551616}`,
	`{"watermark":99999999999999999999999}`, `{"approved":1}`, `{"approved":"true"}`, `{"approved":[]}`,

	// Refused: unknown keys.
	`{"ttl":5}`, `{"intent_id":"a","ttl":null}`, `{"intentid":"a"}`, `{"intent_id ":"a"}`, `{"":1}`,
	`{"INTENT_\u0130D":"x"}`, `{"intent_id\u0000":"x"}`, `{"ttl":{"deep":[[[[1]]]]}}`,
}

func TestObjectMatchesEncodingJSON(t *testing.T) {
	for _, c := range objectCases {
		same(t, []byte(c))
	}
}

func FuzzObjectMatchesEncodingJSON(f *testing.F) {
	for _, c := range objectCases {
		f.Add([]byte(c))
	}
	f.Fuzz(func(t *testing.T, b []byte) { same(t, b) })
}

func TestObjectValues(t *testing.T) {
	got, err := viaObject([]byte(`{"Intent_ID":"tab\there \u00e9 \ud83d\ude00 \ud800!","keep":["x/y","",null],"watermark":42,"approved":true}`))
	if err != nil {
		t.Fatal(err)
	}
	want := decoded{IntentID: "tab\there é 😀 \uFFFD!", Keep: []string{"x/y", "", ""}, Watermark: OptUint{V: 42, Set: true}, Approved: true}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %#v\nwant %#v", got, want)
	}
}

// TestObjectRefusals checks that each kind of bad payload is refused with an
// error that says what is wrong.
func TestObjectRefusals(t *testing.T) {
	for _, tc := range []struct{ payload, says string }{
		{``, "empty"},
		{"  \n", "empty"},
		{"{\"intent_id\":\"\xff\"}", "UTF-8"},
		{`["a"]`, "not a JSON object"},
		{`{"intent_id":"a"} {}`, "after the JSON object"},
		{`{"intent_id":"a",}`, "invalid character"},
		{`{"intent_id":"a`, "unexpected end"},
		{`{"intent_id":"a\q"}`, "escape"},
		{`{"ttl":5}`, `unknown field "ttl"`},
		{`{"intent_id":5}`, `field "intent_id": want a string, got a number`},
		{`{"keep":"a"}`, `field "keep": want an array of strings, got a string`},
		{`{"keep":[1]}`, `field "keep": want an array of strings, got a number`},
		{`{"watermark":-1}`, `field "watermark": -1 is not an unsigned integer`},
		{`{"watermark":2.5}`, "not an unsigned integer"},
		{`{"watermark":18446744073709551616}`, "does not fit"},
		{`{"approved":"yes"}`, `field "approved": want true or false, got a string`},
	} {
		_, err := viaObject([]byte(tc.payload))
		if err == nil || !strings.Contains(err.Error(), tc.says) {
			t.Errorf("%q: error %v, want one that says %q", tc.payload, err, tc.says)
		}
	}
}

// TestObjectMisuse checks that a caller that skips a value or stops early
// gets an error rather than a half-read payload taken as good.
func TestObjectMisuse(t *testing.T) {
	o := NewObject(`{"intent_id":"a","keep":[]}`)
	for o.Next(testNames) {
		if o.Field() == 0 {
			o.String(new(string))
		}
	}
	if o.Err() == nil {
		t.Fatal("an unread value was not reported")
	}
	o = NewObject(`{"intent_id":"a"}`)
	o.Next(testNames)
	o.String(new(string))
	if o.Err() == nil {
		t.Fatal("an object not read to its end was not reported")
	}
}

// TestObjectAllocations checks the point of Object: a payload without
// escapes costs one allocation per array, and the copy of the payload when
// the caller makes one.
func TestObjectAllocations(t *testing.T) {
	b := []byte(`{"intent_id":"cycle","description":"refactor","keep":["src/core","src/util"],"watermark":12}`)
	if n := testing.AllocsPerRun(100, func() { _, _ = viaObject(b) }); n > 2 {
		t.Fatalf("%v allocations per payload, want at most 2", n)
	}
	src := string(b)
	if n := testing.AllocsPerRun(100, func() { _, _ = decodeString(src, nil) }); n > 1 {
		t.Fatalf("%v allocations per payload held as a string, want 1", n)
	}
	buf := make([]string, 0, 8)
	if n := testing.AllocsPerRun(100, func() { buf = buf[:0]; _, _ = decodeString(src, &buf) }); n > 0 {
		t.Fatalf("%v allocations per payload held as a string, into a buffer, want 0", n)
	}
}

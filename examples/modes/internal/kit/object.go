package kit

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf16"
	"unicode/utf8"
)

// Object decodes a flat JSON object payload field by field, without
// encoding/json and without reflection: inside a WebAssembly guest,
// encoding/json costs tens of microseconds per payload, most of it
// reflection and allocation. Object accepts exactly the payloads that
// DecodePayload accepts into a struct whose fields are string, bool,
// *uint64 (here OptUint) and []string, and gives them the same values (the
// tests check this against encoding/json, by fuzzing too):
//
//   - the payload is valid UTF-8 holding exactly one JSON object, with
//     nothing but JSON white space after it; an empty payload is refused
//     (UTF-8 is checked as the payload is read, and the first problem met
//     is the one reported);
//   - a key names one of the fields the caller lists, matched the way
//     encoding/json matches keys (exactly, else under Unicode case folding,
//     so "Intent_ID" is intent_id); any other key is refused;
//   - a value has its field's type; a wrong type, an integer that is
//     negative, fractional, in exponent form or above 2^64-1, and any
//     syntax error are refused;
//   - null leaves a String or Bool field as it was, and clears a Uint or
//     Strings field; a null element of an array of strings is "";
//   - when a key appears twice the last value wins, as in encoding/json;
//   - escapes decode as in encoding/json, a lone UTF-16 surrogate as
//     U+FFFD.
//
// Nothing nests deeper than an array of strings, so a value of any other
// shape is refused where it starts, without reading it.
//
// Use it as a loop: Next reads a key and reports which of the listed names
// it is; exactly one value method (String, Strings or StringsIn, Uint,
// Bool) then reads its value. Err reports the first error once Next
// returns false.
//
//	o := kit.NewObject(string(payload))
//	for o.Next(names) { // names: []string{"intent_id", "scope"}
//		switch o.Field() {
//		case 0:
//			o.String(&p.IntentID)
//		case 1:
//			o.Strings(&p.Scope)
//		}
//	}
//	if err := o.Err(); err != nil { ... }
//
// Decoded strings without escapes are substrings of the payload, so
// decoding costs no allocation but the slices of Strings (none with
// StringsIn) and the strings that hold escapes. NewObject(string(b)) copies
// the payload once; a caller that knows b stays untouched while the strings
// are in use may pass a view of it instead, as the MPAC mode's Step does.
type Object struct {
	src   string // the payload
	i     int    // read position in src
	err   error
	field int    // index of the current key in the names given to Next
	name  string // the field's name (of names), for error messages
	state objectState
}

type objectState uint8

const (
	objectStart   objectState = iota // before the first key
	objectValue                      // a key was read, its value was not
	objectMembers                    // a value was read; ',' or '}' comes next
	objectDone                       // the object and what follows it were read
)

// NewObject starts decoding payload src. It checks at once that src is not
// empty (nothing but white space) and starts with an object; Next then
// reports false and Err the reason when it is not.
func NewObject(src string) Object {
	var o Object
	if strings.TrimSpace(src) == "" {
		o.err = errors.New("the payload is empty; send a JSON object")
		return o
	}
	o.src = src
	o.skipSpace()
	if o.i == len(o.src) || o.src[o.i] != '{' {
		o.err = errors.New("the payload is not a JSON object")
		return o
	}
	o.i++
	return o
}

// Next reads the next key of the object and reports true when it is one of
// names (its index is then Field). It reports false at the end of the
// object, or at the first error: an unknown key, bad syntax, or data after
// the object. names must be distinct under case folding.
func (o *Object) Next(names []string) bool {
	if o.err != nil {
		return false
	}
	switch o.state {
	case objectValue:
		o.err = fmt.Errorf("kit: the value of %q was not read", o.name) // a bug in the caller
		return false
	case objectDone:
		return false
	}
	src := o.src
	i := space(src, o.i)
	if i < len(src) && src[i] == '}' {
		o.i = i
		return o.end()
	}
	if o.state == objectMembers {
		if i >= len(src) || src[i] != ',' {
			o.i = i
			o.syntax("after object key:value pair")
			return false
		}
		i = space(src, i+1)
	}
	if i >= len(src) || src[i] != '"' {
		o.i = i
		o.syntax("looking for beginning of object key string")
		return false
	}
	var key string
	if j := plain(src, i+1); j < len(src) && src[j] == '"' {
		key, i = src[i+1:j], j+1
	} else {
		o.i = i
		var ok bool
		if key, ok = o.str(); !ok {
			return false
		}
		i = o.i
	}
	i = space(src, i)
	if i >= len(src) || src[i] != ':' {
		o.i = i
		o.syntax("after object key")
		return false
	}
	i = space(src, i+1)
	o.i = i
	if i >= len(src) {
		o.err = errUnexpectedEnd
		return false
	}
	o.field = -1
	for k := range names {
		if key == names[k] {
			o.field = k
			break
		}
	}
	if o.field < 0 {
		for k := range names {
			if strings.EqualFold(key, names[k]) {
				o.field = k
				break
			}
		}
	}
	if o.field < 0 {
		o.err = fmt.Errorf("unknown field %q", key)
		return false
	}
	o.name = names[o.field]
	o.state = objectValue
	return true
}

// space returns the index of the first byte at or after i in src that is
// not JSON white space.
func space(src string, i int) int {
	for i < len(src) && (src[i] == ' ' || src[i] == '\t' || src[i] == '\n' || src[i] == '\r') {
		i++
	}
	return i
}

// plain returns the index of the first byte at or after i in src that ends
// the plain ASCII run of a string: a quote, a backslash, a control
// character or a byte of a multi-byte (or invalid) UTF-8 sequence.
func plain(src string, i int) int {
	for i < len(src) && plainASCII[src[i]] {
		i++
	}
	return i
}

// plainASCII tells the bytes plain passes over, so that its loop tests one
// condition per byte (branches are what a WebAssembly guest pays for).
var plainASCII = func() (t [256]bool) {
	for c := 0x20; c < 0x80; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

var errUTF8 = errors.New("the payload is not valid UTF-8")

// utf8At checks the UTF-8 sequence at src[i] (a byte >= 0x80) and returns
// its length, or records errUTF8 and returns 0.
func (o *Object) utf8At(i int) int {
	if r, n := utf8.DecodeRuneInString(o.src[i:]); r != utf8.RuneError || n > 1 {
		return n
	}
	o.i, o.err = i, errUTF8
	return 0
}

var errUnexpectedEnd = errors.New("unexpected end of JSON input")

// Field returns the index in Next's names of the key Next just read.
func (o *Object) Field() int { return o.field }

// Err returns the first error met, or nil once the whole payload was read
// and found good. It must be checked after the loop.
func (o *Object) Err() error {
	if o.err == nil && o.state != objectDone {
		return errors.New("kit: the object was not read to its end") // a bug in the caller
	}
	return o.err
}

// String reads a string value into *dst; null leaves *dst alone.
func (o *Object) String(dst *string) {
	if !o.value() {
		return
	}
	src, i := o.src, o.i
	switch src[i] {
	case '"':
		if j := plain(src, i+1); j < len(src) && src[j] == '"' {
			*dst, o.i = src[i+1:j], j+1
		} else if s, ok := o.str(); ok {
			*dst = s
		}
	case 'n':
		o.null()
	default:
		o.wrongType("a string")
	}
}

// Bool reads true or false into *dst; null leaves *dst alone.
func (o *Object) Bool(dst *bool) {
	if !o.value() {
		return
	}
	switch o.src[o.i] {
	case 't':
		if o.literal("true") {
			*dst = true
		}
	case 'f':
		if o.literal("false") {
			*dst = false
		}
	case 'n':
		o.null()
	default:
		o.wrongType("true or false")
	}
}

// OptUint is an optional unsigned integer field: Set tells whether the
// payload gave it.
type OptUint struct {
	V   uint64
	Set bool
}

// Uint reads a non-negative integer below 2^64 into *dst; null clears it.
func (o *Object) Uint(dst *OptUint) {
	if !o.value() {
		return
	}
	src, i := o.src, o.i
	if c := src[i]; '1' <= c && c <= '9' || c == '0' && (i+1 == len(src) || src[i+1] < '0' || src[i+1] > '9') {
		// Up to 19 digits cannot overflow; a fraction or an exponent
		// takes the general path.
		var n uint64
		j := i
		for ; j < len(src) && '0' <= src[j] && src[j] <= '9'; j++ {
			n = n*10 + uint64(src[j]-'0')
		}
		if j-i <= 19 && (j == len(src) || src[j] != '.' && src[j] != 'e' && src[j] != 'E') {
			*dst, o.i = OptUint{V: n, Set: true}, j
			return
		}
	}
	switch c := src[i]; {
	case c == '-' || ('0' <= c && c <= '9'):
		start := o.i
		integer, ok := o.number()
		if !ok {
			return
		}
		lit := o.src[start:o.i]
		n, err := strconv.ParseUint(lit, 10, 64)
		switch {
		case !integer:
			o.err = fmt.Errorf("field %q: %s is not an unsigned integer", o.name, lit)
		case err != nil:
			o.err = fmt.Errorf("field %q: %s does not fit an unsigned 64-bit integer", o.name, lit)
		default:
			*dst = OptUint{V: n, Set: true}
		}
	case c == 'n':
		if o.null() {
			*dst = OptUint{}
		}
	default:
		o.wrongType("an unsigned integer")
	}
}

// Strings reads an array of strings into *dst, a new slice (not nil, even
// when the array is empty); a null element is "". null sets *dst to nil.
func (o *Object) Strings(dst *[]string) { o.strings(dst, nil) }

// StringsIn reads an array of strings like Strings, but appends the
// elements to *buf and sets *dst to the capacity-limited part of *buf that
// holds them, so that decoding into a buffer reused from call to call
// allocates nothing.
func (o *Object) StringsIn(dst, buf *[]string) { o.strings(dst, buf) }

func (o *Object) strings(dst, buf *[]string) {
	if !o.value() {
		return
	}
	switch o.src[o.i] {
	case '[':
	case 'n':
		if o.null() {
			*dst = nil
		}
		return
	default:
		o.wrongType("an array of strings")
		return
	}
	o.i++
	if buf == nil {
		out := make([]string, 0, o.count())
		buf = &out
	}
	start := len(*buf)
	if !o.elements(buf) {
		*buf = (*buf)[:start]
		return
	}
	if end := len(*buf); end > start {
		*dst = (*buf)[start:end:end]
	} else {
		*dst = []string{}
	}
}

// elements appends the elements of the array whose '[' was just read to
// *buf, and reads its ']'.
func (o *Object) elements(buf *[]string) bool {
	o.skipSpace()
	if c, ok := o.peek(); !ok {
		return false
	} else if c == ']' {
		o.i++
		return true
	}
	for {
		o.skipSpace()
		c, ok := o.peek()
		if !ok {
			return false
		}
		switch c {
		case '"':
			if j := plain(o.src, o.i+1); j < len(o.src) && o.src[j] == '"' {
				*buf = append(*buf, o.src[o.i+1:j])
				o.i = j + 1
				break
			}
			s, ok := o.str()
			if !ok {
				return false
			}
			*buf = append(*buf, s)
		case 'n':
			if !o.null() {
				return false
			}
			*buf = append(*buf, "")
		default:
			o.wrongType("an array of strings")
			return false
		}
		o.skipSpace()
		if c, ok = o.peek(); !ok {
			return false
		}
		switch c {
		case ']':
			o.i++
			return true
		case ',':
			o.i++
		default:
			o.syntax("after array element")
			return false
		}
	}
}

// count guesses the number of elements of the array starting at o.i, to
// size its slice: one more than the commas before the next ']', at most 64.
// A comma or bracket inside a string makes the guess wrong, which costs no
// more than append growing the slice.
func (o *Object) count() int {
	n := 1
	for i := o.i; i < len(o.src) && o.src[i] != ']' && n < 64; i++ {
		if o.src[i] == ',' {
			n++
		}
	}
	return n
}

// value checks that a value may be read now.
func (o *Object) value() bool {
	if o.err != nil {
		return false
	}
	if o.state != objectValue {
		o.err = errors.New("kit: a value was read without a key") // a bug in the caller
		return false
	}
	o.state = objectMembers
	return true
}

// end reads the closing '}' and checks that only white space follows.
func (o *Object) end() bool {
	o.i++
	o.skipSpace()
	if o.i != len(o.src) {
		o.err = errors.New("unexpected data after the JSON object")
		return false
	}
	o.state = objectDone
	return false
}

func (o *Object) skipSpace() {
	for o.i < len(o.src) {
		switch o.src[o.i] {
		case ' ', '\t', '\n', '\r':
			o.i++
		default:
			return
		}
	}
}

// peek returns the byte at the read position; at the end of the input it
// records the error and reports false.
func (o *Object) peek() (byte, bool) {
	if o.i >= len(o.src) {
		o.err = errUnexpectedEnd
		return 0, false
	}
	return o.src[o.i], true
}

func (o *Object) syntax(context string) {
	r, n := utf8.DecodeRuneInString(o.src[o.i:])
	if r == utf8.RuneError && n == 1 {
		o.err = errUTF8
		return
	}
	o.err = fmt.Errorf("invalid character %q %s at offset %d", r, context, o.i)
}

func (o *Object) wrongType(want string) {
	var got string
	switch c := o.src[o.i]; {
	case c == '"':
		got = "a string"
	case c == '[':
		got = "an array"
	case c == '{':
		got = "an object"
	case c == 't' || c == 'f':
		got = "a boolean"
	case c == 'n':
		got = "null"
	case c == '-' || ('0' <= c && c <= '9'):
		got = "a number"
	default:
		o.syntax("looking for beginning of value")
		return
	}
	o.err = fmt.Errorf("field %q: want %s, got %s", o.name, want, got)
}

// literal reads the literal word, which the input starts with a byte of.
func (o *Object) literal(word string) bool {
	if !strings.HasPrefix(o.src[o.i:], word) {
		if len(o.src)-o.i < len(word) && strings.HasPrefix(word, o.src[o.i:]) {
			o.err = errUnexpectedEnd
		} else {
			o.syntax("in literal " + word)
		}
		return false
	}
	o.i += len(word)
	return true
}

func (o *Object) null() bool { return o.literal("null") }

// number reads a JSON number and reports whether it is written as a
// non-negative integer (no sign, fraction or exponent).
func (o *Object) number() (integer, ok bool) {
	integer = true
	if o.src[o.i] == '-' {
		integer = false
		o.i++
	}
	if !o.digits(true) {
		return false, false
	}
	if o.i < len(o.src) && o.src[o.i] == '.' {
		integer = false
		o.i++
		if !o.digits(false) {
			return false, false
		}
	}
	if o.i < len(o.src) && (o.src[o.i] == 'e' || o.src[o.i] == 'E') {
		integer = false
		o.i++
		if o.i < len(o.src) && (o.src[o.i] == '+' || o.src[o.i] == '-') {
			o.i++
		}
		if !o.digits(false) {
			return false, false
		}
	}
	return integer, true
}

// digits reads one or more decimal digits; an integer part (intPart) is a
// single 0 or does not start with 0.
func (o *Object) digits(intPart bool) bool {
	start := o.i
	for o.i < len(o.src) && '0' <= o.src[o.i] && o.src[o.i] <= '9' {
		o.i++
		if intPart && o.i-start == 1 && o.src[start] == '0' {
			break
		}
	}
	if o.i == start {
		if _, ok := o.peek(); ok {
			o.syntax("in numeric literal")
		}
		return false
	}
	return true
}

// str reads the string starting at o.i (a '"').
func (o *Object) str() (string, bool) {
	start := o.i + 1
	for i := start; i < len(o.src); {
		switch c := o.src[i]; {
		case c == '"':
			o.i = i + 1
			return o.src[start:i], true
		case c == '\\':
			return o.unescape(start, i)
		case c < 0x20:
			o.i = i
			o.syntax("in string literal")
			return "", false
		case c >= 0x80:
			n := o.utf8At(i)
			if n == 0 {
				return "", false
			}
			i += n
			continue
		}
		i++
	}
	o.i = len(o.src)
	o.err = errUnexpectedEnd
	return "", false
}

// unescape decodes the rest of a string whose first escape is at i; the
// string's content starts at start.
func (o *Object) unescape(start, i int) (string, bool) {
	b := make([]byte, 0, len(o.src)-start)
	b = append(b, o.src[start:i]...)
	for i < len(o.src) {
		c := o.src[i]
		switch {
		case c == '"':
			o.i = i + 1
			return string(b), true
		case c < 0x20:
			o.i = i
			o.syntax("in string literal")
			return "", false
		case c >= 0x80:
			n := o.utf8At(i)
			if n == 0 {
				return "", false
			}
			b = append(b, o.src[i:i+n]...)
			i += n
			continue
		case c != '\\':
			b = append(b, c)
			i++
			continue
		}
		if i+1 >= len(o.src) {
			break
		}
		switch e := o.src[i+1]; e {
		case '"', '\\', '/':
			b = append(b, e)
		case 'b':
			b = append(b, '\b')
		case 'f':
			b = append(b, '\f')
		case 'n':
			b = append(b, '\n')
		case 'r':
			b = append(b, '\r')
		case 't':
			b = append(b, '\t')
		case 'u':
			r, ok := o.hex4(i + 2)
			if !ok {
				return "", false
			}
			i += 6
			if utf16.IsSurrogate(r) {
				// A high surrogate followed by an escaped low one is a pair;
				// anything else is U+FFFD, as in encoding/json.
				if r2, ok := hex4(o.src, i+2); ok && i+1 < len(o.src) && o.src[i] == '\\' && o.src[i+1] == 'u' {
					if p := utf16.DecodeRune(r, r2); p != utf8.RuneError {
						b = utf8.AppendRune(b, p)
						i += 6
						continue
					}
				}
				r = utf8.RuneError
			}
			b = utf8.AppendRune(b, r)
			continue
		default:
			o.i = i + 1
			o.syntax("in string escape code")
			return "", false
		}
		i += 2
	}
	o.i = len(o.src)
	o.err = errUnexpectedEnd
	return "", false
}

// hex4 reads the four hex digits of a \u escape at i.
func (o *Object) hex4(i int) (rune, bool) {
	if r, ok := hex4(o.src, i); ok {
		return r, true
	}
	for j := i; j < i+4; j++ {
		if j >= len(o.src) {
			o.i = len(o.src)
			o.err = errUnexpectedEnd
			return 0, false
		}
		if _, ok := unhex(o.src[j]); !ok {
			o.i = j
			o.syntax("in \\u hexadecimal character escape")
			return 0, false
		}
	}
	panic("unreachable")
}

func hex4(s string, i int) (rune, bool) {
	if i < 0 || i+4 > len(s) {
		return 0, false
	}
	var r rune
	for j := i; j < i+4; j++ {
		d, ok := unhex(s[j])
		if !ok {
			return 0, false
		}
		r = r<<4 | d
	}
	return r, true
}

func unhex(c byte) (rune, bool) {
	switch {
	case '0' <= c && c <= '9':
		return rune(c - '0'), true
	case 'a' <= c && c <= 'f':
		return rune(c - 'a' + 10), true
	case 'A' <= c && c <= 'F':
		return rune(c - 'A' + 10), true
	}
	return 0, false
}

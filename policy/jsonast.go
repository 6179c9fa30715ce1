package policy

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"unicode/utf16"
	"unicode/utf8"

	"github.com/open-policy-agent/opa/v1/ast"
)

// jsonToValue parses one JSON value straight into an OPA AST value. It is
// the hot path of every governance decision (the mode's state view is JSON)
// and several times faster than decoding into Go values and converting
// those. Numbers keep their JSON text, as OPA does.
func jsonToValue(data []byte) (ast.Value, error) {
	p := &jsonParser{b: data}
	p.space()
	v, err := p.value(0)
	if err != nil {
		return nil, err
	}
	p.space()
	if p.i != len(p.b) {
		return nil, p.errorf("unexpected data after the JSON value")
	}
	return v, nil
}

// jsonToValueKeys is jsonToValue for a JSON object of which only keys are
// needed: the other members are checked for syntax and skipped without
// being converted. A nil keys converts everything.
func jsonToValueKeys(data []byte, keys []string) (ast.Value, error) {
	if keys == nil {
		return jsonToValue(data)
	}
	p := &jsonParser{b: data, keep: keys}
	p.space()
	v, err := p.value(0)
	if err != nil {
		return nil, err
	}
	p.space()
	if p.i != len(p.b) {
		return nil, p.errorf("unexpected data after the JSON value")
	}
	return v, nil
}

// checkJSON checks data as jsonToValue does, converting nothing; empty
// data is accepted (an empty state view).
func checkJSON(data []byte) error {
	p := &jsonParser{b: data}
	p.space()
	if p.i == len(p.b) {
		return nil
	}
	if err := p.skip(0); err != nil {
		return err
	}
	p.space()
	if p.i != len(p.b) {
		return p.errorf("unexpected data after the JSON value")
	}
	return nil
}

// maxJSONDepth bounds nesting, so a hostile view cannot exhaust the stack.
const maxJSONDepth = 128

type jsonParser struct {
	b []byte
	i int
	// keep, when set, selects the members of the top-level object that
	// are converted; the others are skipped.
	keep []string
}

func (p *jsonParser) errorf(format string, args ...any) error {
	return fmt.Errorf("JSON offset %d: %s", p.i, fmt.Sprintf(format, args...))
}

func (p *jsonParser) space() {
	for p.i < len(p.b) {
		switch p.b[p.i] {
		case ' ', '\t', '\n', '\r':
			p.i++
		default:
			return
		}
	}
}

func (p *jsonParser) value(depth int) (ast.Value, error) {
	if depth > maxJSONDepth {
		return nil, p.errorf("nested too deeply")
	}
	if p.i >= len(p.b) {
		return nil, p.errorf("unexpected end of input")
	}
	switch c := p.b[p.i]; {
	case c == '{':
		return p.object(depth)
	case c == '[':
		return p.array(depth)
	case c == '"':
		s, err := p.str()
		if err != nil {
			return nil, err
		}
		return ast.String(s), nil
	case c == 't':
		return p.literal("true", ast.Boolean(true))
	case c == 'f':
		return p.literal("false", ast.Boolean(false))
	case c == 'n':
		return p.literal("null", ast.Null{})
	case c == '-' || c >= '0' && c <= '9':
		return p.number()
	default:
		return nil, p.errorf("unexpected character %q", c)
	}
}

// skip checks and steps over one value without converting it.
func (p *jsonParser) skip(depth int) error {
	if depth > maxJSONDepth {
		return p.errorf("nested too deeply")
	}
	if p.i >= len(p.b) {
		return p.errorf("unexpected end of input")
	}
	switch p.b[p.i] {
	case '"':
		return p.skipString()
	case '{', '[':
		closer := byte('}')
		if p.b[p.i] == '[' {
			closer = ']'
		}
		isObject := closer == '}'
		p.i++
		p.space()
		if p.i < len(p.b) && p.b[p.i] == closer {
			p.i++
			return nil
		}
		for {
			p.space()
			if isObject {
				if p.i >= len(p.b) || p.b[p.i] != '"' {
					return p.errorf("expected an object key")
				}
				if err := p.skipString(); err != nil {
					return err
				}
				p.space()
				if p.i >= len(p.b) || p.b[p.i] != ':' {
					return p.errorf("expected ':'")
				}
				p.i++
				p.space()
			}
			if err := p.skip(depth + 1); err != nil {
				return err
			}
			p.space()
			if p.i >= len(p.b) {
				return p.errorf("unterminated container")
			}
			switch p.b[p.i] {
			case ',':
				p.i++
			case closer:
				p.i++
				return nil
			default:
				return p.errorf("expected ',' or %q", closer)
			}
		}
	default:
		_, err := p.value(depth)
		return err
	}
}

// skipString steps over a string, checking its escapes.
func (p *jsonParser) skipString() error {
	p.i++
	for p.i < len(p.b) {
		switch c := p.b[p.i]; {
		case c == '"':
			p.i++
			return nil
		case c < 0x20:
			return p.errorf("control character in string")
		case c == '\\':
			p.i++
			if p.i >= len(p.b) {
				return p.errorf("%v", errBadEscape)
			}
			switch p.b[p.i] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				p.i++
			case 'u':
				p.i++
				if _, ok := p.hex4(); !ok {
					return p.errorf("%v", errBadEscape)
				}
			default:
				return p.errorf("%v", errBadEscape)
			}
		default:
			p.i++
		}
	}
	return p.errorf("unterminated string")
}

func (p *jsonParser) literal(word string, v ast.Value) (ast.Value, error) {
	if len(p.b)-p.i < len(word) || string(p.b[p.i:p.i+len(word)]) != word {
		return nil, p.errorf("invalid literal")
	}
	p.i += len(word)
	return v, nil
}

func (p *jsonParser) object(depth int) (ast.Value, error) {
	p.i++ // {
	var items [][2]*ast.Term
	p.space()
	if p.i < len(p.b) && p.b[p.i] == '}' {
		p.i++
		return ast.NewObject(), nil
	}
	for {
		p.space()
		if p.i >= len(p.b) || p.b[p.i] != '"' {
			return nil, p.errorf("expected an object key")
		}
		k, err := p.str()
		if err != nil {
			return nil, err
		}
		p.space()
		if p.i >= len(p.b) || p.b[p.i] != ':' {
			return nil, p.errorf("expected ':'")
		}
		p.i++
		p.space()
		if depth == 0 && p.keep != nil && !slices.Contains(p.keep, k) {
			if err := p.skip(depth + 1); err != nil {
				return nil, err
			}
		} else {
			v, err := p.value(depth + 1)
			if err != nil {
				return nil, err
			}
			items = append(items, [2]*ast.Term{ast.StringTerm(k), ast.NewTerm(v)})
		}
		p.space()
		if p.i >= len(p.b) {
			return nil, p.errorf("unterminated object")
		}
		switch p.b[p.i] {
		case ',':
			p.i++
		case '}':
			p.i++
			return ast.NewObject(items...), nil
		default:
			return nil, p.errorf("expected ',' or '}'")
		}
	}
}

func (p *jsonParser) array(depth int) (ast.Value, error) {
	p.i++ // [
	var elems []*ast.Term
	p.space()
	if p.i < len(p.b) && p.b[p.i] == ']' {
		p.i++
		return ast.NewArray(), nil
	}
	for {
		p.space()
		v, err := p.value(depth + 1)
		if err != nil {
			return nil, err
		}
		elems = append(elems, ast.NewTerm(v))
		p.space()
		if p.i >= len(p.b) {
			return nil, p.errorf("unterminated array")
		}
		switch p.b[p.i] {
		case ',':
			p.i++
		case ']':
			p.i++
			return ast.NewArray(elems...), nil
		default:
			return nil, p.errorf("expected ',' or ']'")
		}
	}
}

func (p *jsonParser) number() (ast.Value, error) {
	start := p.i
	if p.b[p.i] == '-' {
		p.i++
	}
	digits := func() int {
		n := 0
		for p.i < len(p.b) && p.b[p.i] >= '0' && p.b[p.i] <= '9' {
			p.i++
			n++
		}
		return n
	}
	intStart := p.i
	if digits() == 0 || p.b[intStart] == '0' && p.i-intStart > 1 {
		return nil, p.errorf("invalid number")
	}
	if p.i < len(p.b) && p.b[p.i] == '.' {
		p.i++
		if digits() == 0 {
			return nil, p.errorf("invalid number")
		}
	}
	if p.i < len(p.b) && (p.b[p.i] == 'e' || p.b[p.i] == 'E') {
		p.i++
		if p.i < len(p.b) && (p.b[p.i] == '+' || p.b[p.i] == '-') {
			p.i++
		}
		if digits() == 0 {
			return nil, p.errorf("invalid number")
		}
	}
	return ast.Number(string(p.b[start:p.i])), nil
}

var errBadEscape = errors.New("invalid escape")

// str reads a JSON string at p.i and returns its value; invalid UTF-8
// becomes U+FFFD, as encoding/json does.
func (p *jsonParser) str() (string, error) {
	p.i++ // opening quote
	start := p.i
	// Fast path: no escapes and plain ASCII or valid UTF-8.
	for p.i < len(p.b) {
		c := p.b[p.i]
		if c == '"' {
			s := p.b[start:p.i]
			p.i++
			if utf8.Valid(s) {
				return string(s), nil
			}
			return string([]rune(string(s))), nil
		}
		if c == '\\' || c < 0x20 {
			break
		}
		p.i++
	}
	buf := append([]byte(nil), p.b[start:p.i]...)
	for p.i < len(p.b) {
		c := p.b[p.i]
		switch {
		case c == '"':
			p.i++
			if utf8.Valid(buf) {
				return string(buf), nil
			}
			return string([]rune(string(buf))), nil
		case c < 0x20:
			return "", p.errorf("control character in string")
		case c == '\\':
			p.i++
			if p.i >= len(p.b) {
				return "", p.errorf("%v", errBadEscape)
			}
			e := p.b[p.i]
			p.i++
			switch e {
			case '"', '\\', '/':
				buf = append(buf, e)
			case 'b':
				buf = append(buf, '\b')
			case 'f':
				buf = append(buf, '\f')
			case 'n':
				buf = append(buf, '\n')
			case 'r':
				buf = append(buf, '\r')
			case 't':
				buf = append(buf, '\t')
			case 'u':
				r, ok := p.hex4()
				if !ok {
					return "", p.errorf("%v", errBadEscape)
				}
				if utf16.IsSurrogate(r) {
					r2 := unicode16Replacement
					if p.i+1 < len(p.b) && p.b[p.i] == '\\' && p.b[p.i+1] == 'u' {
						save := p.i
						p.i += 2
						if lo, ok := p.hex4(); ok {
							r2 = utf16.DecodeRune(r, lo)
						}
						if r2 == unicode16Replacement {
							p.i = save
						}
					}
					r = r2
				}
				buf = utf8.AppendRune(buf, r)
			default:
				return "", p.errorf("%v", errBadEscape)
			}
		default:
			buf = append(buf, c)
			p.i++
		}
	}
	return "", p.errorf("unterminated string")
}

const unicode16Replacement = '\uFFFD'

func (p *jsonParser) hex4() (rune, bool) {
	if len(p.b)-p.i < 4 {
		return 0, false
	}
	n, err := strconv.ParseUint(string(p.b[p.i:p.i+4]), 16, 32)
	if err != nil {
		return 0, false
	}
	p.i += 4
	return rune(n), true
}

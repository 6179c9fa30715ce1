package policy

import (
	"fmt"
	"math"
	"strconv"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/tester"
	"github.com/open-policy-agent/opa/v1/types"
)

// Rego computes with arbitrary-precision decimals, but MACP compares vote
// ratios, thresholds and confidences in IEEE 754 binary64 (RFC-MACP-0012
// §3: 2/3, 4/6, 20/30 and 67/100 meet 0.6666666666666666; 66/100 does not).
// These built-ins give the Rego modules binary64 arithmetic. They are
// passed to each query, never registered globally.

// float64Builtin is one custom built-in with its declaration.
type float64Builtin struct {
	fn  *rego.Function
	opt func(*rego.Rego)
}

func newFloat64Builtins() []float64Builtin {
	cmp := &rego.Function{
		Name:        "concord.float64_cmp",
		Description: "Compares two numbers as IEEE 754 binary64 values: -1, 0 or 1.",
		Decl:        types.NewFunction(types.Args(types.N, types.N), types.N),
	}
	div := &rego.Function{
		Name:        "concord.float64_div",
		Description: "Divides two numbers in IEEE 754 binary64; a zero divisor is an error.",
		Decl:        types.NewFunction(types.Args(types.N, types.N), types.N),
	}
	sum := &rego.Function{
		Name:        "concord.float64_sum",
		Description: "Sums an array of numbers in IEEE 754 binary64, in array order.",
		Decl:        types.NewFunction(types.Args(types.NewArray(nil, types.N)), types.N),
	}
	return []float64Builtin{
		{fn: cmp, opt: rego.Function2(cmp, float64Cmp)},
		{fn: div, opt: rego.Function2(div, float64Div)},
		{fn: sum, opt: rego.Function1(sum, float64Sum)},
	}
}

// builtinOptions returns the options that declare the built-ins on a query.
func builtinOptions() []func(*rego.Rego) {
	bs := newFloat64Builtins()
	opts := make([]func(*rego.Rego), len(bs))
	for i, b := range bs {
		opts[i] = b.opt
	}
	return opts
}

// testerBuiltins returns the built-ins in the form OPA's test runner takes.
func testerBuiltins() []*tester.Builtin {
	bs := newFloat64Builtins()
	out := make([]*tester.Builtin, len(bs))
	for i, b := range bs {
		out[i] = &tester.Builtin{
			Decl: &ast.Builtin{Name: b.fn.Name, Description: b.fn.Description, Decl: b.fn.Decl},
			Func: b.opt,
		}
	}
	return out
}

// builtinDecls returns the declarations, for compilers built by hand.
func builtinDecls() []*ast.Builtin {
	bs := newFloat64Builtins()
	out := make([]*ast.Builtin, len(bs))
	for i, b := range bs {
		out[i] = &ast.Builtin{Name: b.fn.Name, Description: b.fn.Description, Decl: b.fn.Decl}
	}
	return out
}

func toFloat64(t *ast.Term) (float64, error) {
	n, ok := t.Value.(ast.Number)
	if !ok {
		return 0, fmt.Errorf("operand must be a number, got %s", ast.ValueName(t.Value))
	}
	f, err := strconv.ParseFloat(string(n), 64)
	if err != nil {
		return 0, fmt.Errorf("number %s does not fit a binary64", n)
	}
	return f, nil
}

func float64Term(f float64) (*ast.Term, error) {
	if math.IsInf(f, 0) || math.IsNaN(f) {
		return nil, fmt.Errorf("result %v is not a finite number", f)
	}
	return ast.NewTerm(ast.Number(strconv.FormatFloat(f, 'g', -1, 64))), nil
}

func float64Cmp(_ rego.BuiltinContext, a, b *ast.Term) (*ast.Term, error) {
	x, err := toFloat64(a)
	if err != nil {
		return nil, err
	}
	y, err := toFloat64(b)
	if err != nil {
		return nil, err
	}
	switch {
	case x < y:
		return ast.IntNumberTerm(-1), nil
	case x > y:
		return ast.IntNumberTerm(1), nil
	default:
		return ast.IntNumberTerm(0), nil
	}
}

func float64Div(_ rego.BuiltinContext, a, b *ast.Term) (*ast.Term, error) {
	x, err := toFloat64(a)
	if err != nil {
		return nil, err
	}
	y, err := toFloat64(b)
	if err != nil {
		return nil, err
	}
	if y == 0 {
		return nil, fmt.Errorf("division by zero")
	}
	return float64Term(x / y)
}

func float64Sum(_ rego.BuiltinContext, a *ast.Term) (*ast.Term, error) {
	arr, ok := a.Value.(*ast.Array)
	if !ok {
		return nil, fmt.Errorf("operand must be an array, got %s", ast.ValueName(a.Value))
	}
	var sum float64
	for i := range arr.Len() {
		f, err := toFloat64(arr.Elem(i))
		if err != nil {
			return nil, err
		}
		sum += f
	}
	return float64Term(sum)
}

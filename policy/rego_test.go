package policy

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/tester"
)

// TestRegoModules runs the Rego unit tests (rego/*_test.rego) of the
// built-in modules through OPA's test runner, with Concord's built-ins.
func TestRegoModules(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("rego", "*.rego"))
	if err != nil {
		t.Fatal(err)
	}
	modules := map[string]*ast.Module{}
	tests := 0
	for _, f := range files {
		src, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		m, err := ast.ParseModuleWithOpts(f, string(src), ast.ParserOptions{RegoVersion: ast.RegoV1})
		if err != nil {
			t.Fatal(err)
		}
		modules[f] = m
		if strings.HasSuffix(f, "_test.rego") {
			tests++
		}
	}
	if tests == 0 {
		t.Fatal("no *_test.rego files")
	}
	ch, err := tester.NewRunner().
		SetDefaultRegoVersion(ast.RegoV1).
		AddCustomBuiltins(testerBuiltins()).
		SetModules(modules).
		RunTests(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for res := range ch {
		n++
		name := strings.TrimPrefix(res.Package, "data.") + "." + res.Name
		t.Run(name, func(t *testing.T) {
			switch {
			case res.Error != nil:
				t.Fatalf("%s: %v", res.Location, res.Error)
			case res.Skip:
				t.Skip("skipped")
			case res.Fail:
				t.Fatalf("%s: failed", res.Location)
			}
		})
	}
	if n == 0 {
		t.Fatal("the Rego test runner found no tests")
	}
	t.Logf("%d Rego tests", n)
}

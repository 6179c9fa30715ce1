package main

import (
	"bytes"
	"embed"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"text/template"

	"golang.org/x/mod/modfile"

	"github.com/concord-macp/concord/abi/guest/guestgen"
)

// modeTemplates are the files of a new mode module; each F.tmpl becomes F,
// but mode.go and mode_test.go are named after the mode.
//
//go:embed modetmpl
var modeTemplates embed.FS

const modeInitUsage = `Usage: concord mode init [--dir DIR] [--module PATH] --concord CHECKOUT NAME

Writes a new mode module NAME (a Go module on abi/guest, with a native unit
test, a wasm/ main and a conformance-format fixture), ready to build. The
Concord module is not published, so the new go.mod builds against a local
checkout of it (a replace directive): --concord names it, or
$CONCORD_SOURCE.
`

// modeName is what NAME may be: a Go package name that is also a segment
// of the mode id ext.NAME.v1.
var modeName = regexp.MustCompile(`^[a-z][a-z0-9_]{0,62}$`)

// modeInit runs `concord mode init`.
func modeInit(args []string, stdout, stderr io.Writer) int {
	fset := flag.NewFlagSet("concord mode init", flag.ContinueOnError)
	fset.SetOutput(stderr)
	fset.Usage = func() { fmt.Fprint(stderr, modeInitUsage); fset.PrintDefaults() }
	dir := fset.String("dir", "", "folder to write (default ./NAME); it must not exist or be empty")
	module := fset.String("module", "", "module path of the new module (default example.com/NAME)")
	concord := fset.String("concord", os.Getenv("CONCORD_SOURCE"), "local checkout of the Concord repository [CONCORD_SOURCE]")
	if err := fset.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fset.NArg() != 1 {
		fset.Usage()
		return 2
	}
	name := fset.Arg(0)
	if *dir == "" {
		*dir = name
	}
	if *module == "" {
		*module = "example.com/" + name
	}
	if err := writeMode(name, *dir, *module, *concord); err != nil {
		fmt.Fprintln(stderr, "concord mode init:", err)
		return 1
	}
	fmt.Fprintf(stdout, "wrote mode ext.%s.v1 in %s; next:\n  cd %s && go test ./...\n", name, *dir, *dir)
	return 0
}

// modeParams fill the templates.
type modeParams struct {
	Package, Mode, Module, Concord string
	GoVersion, ProtobufVersion     string
}

// writeMode writes the module for mode NAME into dir.
func writeMode(name, dir, module, checkout string) error {
	if !modeName.MatchString(name) {
		return fmt.Errorf("NAME %q must be lower case letters, digits and _, starting with a letter (it names the Go package and the mode ext.NAME.v1)", name)
	}
	if checkout == "" {
		return errors.New("--concord (or $CONCORD_SOURCE) must name a local checkout of the Concord repository")
	}
	p, err := paramsFromCheckout(checkout)
	if err != nil {
		return err
	}
	p.Package, p.Mode, p.Module = name, "ext."+name+".v1", module
	if entries, err := os.ReadDir(dir); err == nil && len(entries) > 0 {
		return fmt.Errorf("%s exists and is not empty", dir)
	}
	err = fs.WalkDir(modeTemplates, "modetmpl", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		src, err := modeTemplates.ReadFile(path)
		if err != nil {
			return err
		}
		rel := strings.TrimSuffix(strings.TrimPrefix(path, "modetmpl/"), ".tmpl")
		switch rel {
		case "mode.go":
			rel = name + ".go"
		case "mode_test.go":
			rel = name + "_test.go"
		}
		var out bytes.Buffer
		t, err := template.New(rel).Parse(string(src))
		if err != nil {
			return err
		}
		if err := t.Execute(&out, p); err != nil {
			return err
		}
		return writeFile(filepath.Join(dir, rel), out.Bytes())
	})
	if err != nil {
		return err
	}
	sum, err := os.ReadFile(filepath.Join(p.Concord, "go.sum"))
	if err != nil {
		return err
	}
	if err := writeFile(filepath.Join(dir, "go.sum"), sum); err != nil {
		return err
	}
	gen, err := guestgen.Generate(dir, "guest_gen.go")
	if err != nil {
		return err
	}
	return writeFile(filepath.Join(dir, "guest_gen.go"), gen)
}

// paramsFromCheckout reads what the new go.mod needs from the Concord
// checkout's: its absolute path, Go version and protobuf version.
func paramsFromCheckout(checkout string) (modeParams, error) {
	abs, err := filepath.Abs(checkout)
	if err != nil {
		return modeParams{}, err
	}
	raw, err := os.ReadFile(filepath.Join(abs, "go.mod"))
	if err != nil {
		return modeParams{}, fmt.Errorf("--concord %s: %w", checkout, err)
	}
	mf, err := modfile.ParseLax("go.mod", raw, nil)
	if err != nil {
		return modeParams{}, fmt.Errorf("--concord %s: %w", checkout, err)
	}
	if mf.Module == nil || mf.Module.Mod.Path != "github.com/concord-macp/concord" {
		return modeParams{}, fmt.Errorf("--concord %s is not a checkout of github.com/concord-macp/concord", checkout)
	}
	p := modeParams{Concord: abs, GoVersion: mf.Go.Version}
	for _, r := range mf.Require {
		if r.Mod.Path == "google.golang.org/protobuf" {
			p.ProtobufVersion = r.Mod.Version
		}
	}
	if p.ProtobufVersion == "" {
		return modeParams{}, fmt.Errorf("--concord %s: its go.mod requires no google.golang.org/protobuf", checkout)
	}
	return p, nil
}

func writeFile(path string, b []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return os.WriteFile(path, b, 0o644)
}

package wasm_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"

	"github.com/concord-macp/concord/host/wasm"
)

// The guest modules under testdata/ are built once per test binary, with the
// Go toolchain that runs the tests, into a temporary directory.
var (
	counterWasm []byte
	hostileWasm []byte
	// cacheDir is shared by the engines of all tests so that each module is
	// compiled once per engine configuration.
	cacheDir string
)

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	dir, err := os.MkdirTemp("", "concord-wasm-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	cacheDir = filepath.Join(dir, "cache")

	out := map[string]*[]byte{"counter": &counterWasm, "hostile": &hostileWasm}
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
	)
	for name, dst := range out {
		wg.Go(func() {
			b, err := buildGuest(dir, name)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, err)
				return
			}
			*dst = b
		})
	}
	wg.Wait()
	if len(errs) > 0 {
		fmt.Fprintln(os.Stderr, errs)
		return 1
	}
	return m.Run()
}

// buildGuest compiles testdata/<name> as a wasip1 reactor and returns the
// module bytes.
func buildGuest(dir, name string) ([]byte, error) {
	out := filepath.Join(dir, name+".wasm")
	cmd := exec.Command("go", "build", "-buildmode=c-shared", "-trimpath", "-o", out, "./testdata/"+name)
	cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm", "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("build testdata/%s: %v\n%s", name, err, b)
	}
	return os.ReadFile(out)
}

// newEngine returns an engine with opts, closed when the test ends; it uses
// the shared compilation cache unless opts names another.
func newEngine(tb testing.TB, opts wasm.Options) *wasm.Engine {
	tb.Helper()
	if opts.CacheDir == "" {
		opts.CacheDir = cacheDir
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	e, err := wasm.NewEngine(context.Background(), opts)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		if err := e.Close(context.Background()); err != nil {
			tb.Error(err)
		}
	})
	return e
}

// load loads wasm into e or fails the test.
func load(tb testing.TB, e *wasm.Engine, b []byte) *wasm.Module {
	tb.Helper()
	m, err := e.Load(context.Background(), b)
	if err != nil {
		tb.Fatal(err)
	}
	return m
}

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/concord-macp/concord/internal/loadgen"
)

// asConcord makes this test binary act as the concord binary when it is
// started with it set: the restart scenario starts `concord serve` from
// its own executable, which under `go test` is this binary.
const asConcord = "CONCORD_TEST_ACT_AS_BINARY"

func TestMain(m *testing.M) {
	if os.Getenv(asConcord) == "1" {
		main() // as the binary would, SIGTERM handling included
		return
	}
	os.Exit(m.Run())
}

// TestBenchRestart fills a data dir through a real `concord serve`
// process, restarts it twice and reads the JSON report: every restart
// found the filled sessions (the scenario checks one is still resolved).
func TestBenchRestart(t *testing.T) {
	t.Setenv(asConcord, "1")
	var out, errs bytes.Buffer
	cache := filepath.Join(os.TempDir(), "concord-test-wasm-cache")
	code := run(context.Background(), []string{"bench", "--scenario", "restart", "--fill", "40", "--session-messages", "10",
		"--clients", "2", "--restarts", "2", "--wasm-cache-dir", cache, "--json"}, &out, &errs)
	if code != 0 {
		t.Fatalf("bench exited %d: %s\n%s", code, errs.String(), out.String())
	}
	var r loadgen.Report
	if err := json.Unmarshal(out.Bytes(), &r); err != nil {
		t.Fatalf("JSON report: %v\n%s", err, out.String())
	}
	rr := r.Restart
	if rr == nil || rr.Filled != 40 || rr.FilledSessions != 4 || len(rr.Restarts) != 2 || rr.DataBytes <= 0 {
		t.Fatalf("restart report %+v", rr)
	}
	for i, s := range rr.Restarts {
		if s.ReadySeconds <= 0 || s.FirstAcceptSeconds <= 0 || s.FirstAcceptSeconds > s.ReadySeconds || s.RSSBytes <= 0 {
			t.Errorf("restart %d: %+v", i+1, s)
		}
	}
	if _, err := os.Stat(rr.DataDir); !os.IsNotExist(err) {
		t.Errorf("the temporary data dir %s is still there: %v", rr.DataDir, err)
	}
}

func TestBenchFlags(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--scenario", "nope", "--server", "http://127.0.0.1:1"}, "unknown scenario"},
		{[]string{"--token", "secret"}, "--as must name"},
		{[]string{"--checkpoints", "10,x"}, "not a number"},
		{[]string{"--mpac-wasm", "/does/not/exist.wasm"}, "--mpac-wasm"},
		{[]string{"extra"}, "unexpected argument"},
	} {
		var out, errs bytes.Buffer
		if code := run(context.Background(), append([]string{"bench"}, tc.args...), &out, &errs); code == 0 || !strings.Contains(errs.String(), tc.want) {
			t.Errorf("bench %v: exit %d, stderr %q; want a failure saying %q", tc.args, code, errs.String(), tc.want)
		}
	}
}

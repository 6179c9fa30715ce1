package guestgen

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestGeneratedCodeIsCurrent regenerates every package that commits
// guestgen's output and compares: generated code is reproducible, and
// stale code fails here (make check-gen checks the same).
func TestGeneratedCodeIsCurrent(t *testing.T) {
	dirs, err := filepath.Glob("../../../examples/modes/*/guest_gen.go")
	if err != nil {
		t.Fatal(err)
	}
	dirs = append(dirs, "../internal/poll/guest_gen.go")
	if len(dirs) < 7 {
		t.Fatalf("found only %v", dirs)
	}
	for _, file := range dirs {
		want, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		got, err := Generate(filepath.Dir(file), "guest_gen.go")
		if err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s is stale: run go generate", file)
		}
	}
}

func TestGenerateRefuses(t *testing.T) {
	for _, tc := range []struct{ src, says string }{
		{"type T struct{ A int64 `wire:\"1\"`; B int64 `wire:\"1\"` }", "share wire number 1"},
		{"type T struct{ A string `wire:\"0\"` }", "not a usable protobuf field number"},
		{"type T struct{ A string `wire:\"19500\"` }", "not a usable protobuf field number"},
		{"type T struct{ A map[string]string `wire:\"1\"` }", "cannot be encoded"},
		{"type T struct{ A [2]string `wire:\"1\"` }", "arrays are not supported"},
		{"type T struct{ A chan int `json:\"a\"` }", "not supported"},
		{"type T struct{ A, B string `json:\"a\"` }", "one name per field"},
		{"type T struct{ A Unknown `wire:\"1\"` }", "neither a struct nor a scalar"},
		{"type T struct{ A string `json:\"a\" guest:\"min=1\"` }", "min and max apply"},
		{"type T struct{ A uint64 `json:\"a\" guest:\"nonblank\"` }", "nonblank applies to strings"},
		{"type T struct{ A string `json:\"a\" guest:\"frob\"` }", "want nonblank"},
		{"type T struct{ A int }", "no struct with wire or json tags"},
	} {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, "t.go"), []byte("package p\n\n"+tc.src+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := Generate(dir, "guest_gen.go"); err == nil || !strings.Contains(err.Error(), tc.says) {
			t.Errorf("%s: error %v, want one with %q", tc.src, err, tc.says)
		}
	}
}

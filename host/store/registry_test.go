package store

import (
	"bytes"
	"context"
	"errors"
	"testing"

	"github.com/concord-macp/concord/host/storage"
)

func TestRegistryRecordsSurviveRestart(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	s := openDisk(t, dir)
	if err := s.Put(ctx, Policies, "policy.a", []byte("A")); err != nil {
		t.Fatal(err)
	}
	if err := s.Put(ctx, Policies, "policy.b", []byte("B")); err != nil {
		t.Fatal(err)
	}
	if err := s.Put(ctx, ModeBindings, "ext.x.v1", []byte("X")); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete(ctx, Policies, "policy.a"); err != nil {
		t.Fatal(err)
	}
	big := bytes.Repeat([]byte("0123456789abcdef"), (5*blobChunk)/16+7) // several chunks and a tail
	if err := s.PutBlob(ctx, storage.Modules, "digest1", big); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openDisk(t, dir)
	got := map[string]string{}
	if err := s.Each(ctx, Policies, func(k string, v []byte) error { got[k] = string(v); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got["policy.b"] != "B" {
		t.Fatalf("policies after restart = %v", got)
	}
	n := 0
	_ = s.Each(ctx, ModeBindings, func(k string, v []byte) error { n++; return nil })
	if n != 1 {
		t.Fatalf("mode bindings = %d, want 1 (registries must not mix)", n)
	}
	b, err := s.Blob(ctx, storage.Modules, "digest1")
	if err != nil || !bytes.Equal(b, big) {
		t.Fatalf("blob after restart: %d bytes, err %v; want %d bytes", len(b), err, len(big))
	}
	if _, err := s.Blob(ctx, storage.Modules, "nope"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("missing blob: %v", err)
	}
	if err := s.Put(ctx, Policies, "", nil); err == nil {
		t.Fatal("empty key accepted")
	}
}

func TestEachBeforeWalksBackwards(t *testing.T) {
	ctx := context.Background()
	s := openDisk(t, t.TempDir())
	defer s.Close()
	for _, k := range []string{"a", "b", "c", "d"} {
		if err := s.Put(ctx, GovernanceAudit, k, []byte(k)); err != nil {
			t.Fatal(err)
		}
	}
	// A neighbouring registry must not leak in.
	if err := s.Put(ctx, ModeDeclarations, "z", []byte("z")); err != nil {
		t.Fatal(err)
	}
	walk := func(before string, limit int) string {
		var got []byte
		err := s.EachBefore(ctx, GovernanceAudit, before, func(k string, _ []byte) error {
			got = append(got, k...)
			if len(got) == limit {
				return ErrStop
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		return string(got)
	}
	for _, tc := range []struct {
		before string
		limit  int
		want   string
	}{{"", 0, "dcba"}, {"c", 0, "ba"}, {"bb", 0, "ba"}, {"a", 0, ""}, {"", 2, "dc"}} {
		if got := walk(tc.before, tc.limit); got != tc.want {
			t.Fatalf("before %q limit %d: %q, want %q", tc.before, tc.limit, got, tc.want)
		}
	}
}

package store

import (
	"context"
	"errors"
	"slices"
	"testing"

	"github.com/dgraph-io/badger/v4"
	"google.golang.org/protobuf/proto"

	"github.com/concord-macp/concord/host/storage"
	storev1 "github.com/concord-macp/concord/proto/concord/store/v1"
)

// TestHeadsAndStateSnapshots: a commit without SaveState rewrites the head
// and keeps the previous state snapshot; heads never carry mode state.
func TestHeadsAndStateSnapshots(t *testing.T) {
	dir := t.TempDir()
	s := openDisk(t, dir)
	ctx := context.Background()
	commitRange(t, s, "s1", 1, 1)
	for seq := uint64(2); seq <= 5; seq++ {
		snap := open("s1", seq)
		snap.StateSequence = 1
		if err := s.Commit(ctx, storage.Commit{Session: snap, Entries: entries("s1", seq, seq)}); err != nil {
			t.Fatal(err)
		}
	}
	check := func(s *Store) {
		head, state, err := s.Load(ctx, "s1")
		if err != nil {
			t.Fatal(err)
		}
		if head.GetLastSequence() != 5 || head.GetStateSequence() != 1 || len(head.GetModeState()) != 0 {
			t.Fatalf("head at %d, state at %d, %d state bytes", head.GetLastSequence(), head.GetStateSequence(), len(head.GetModeState()))
		}
		if state.GetSequence() != 1 || string(state.GetModeState()) != "state of s1 at 1" {
			t.Fatalf("state snapshot %v", state)
		}
		n := 0
		if err := s.Heads(ctx, func(h *storev1.Session) error {
			n++
			if len(h.GetModeState()) != 0 {
				t.Errorf("Heads returned mode state")
			}
			return nil
		}); err != nil || n != 1 {
			t.Fatalf("Heads: %d, %v", n, err)
		}
	}
	check(s)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openDisk(t, dir)
	defer s.Close()
	check(s)
	checkEntries := collect(t, s, "s1", 0)
	if len(checkEntries) != 5 {
		t.Fatalf("%d entries", len(checkEntries))
	}
}

// TestCommitStateRules: the state sequence a head names must be coherent.
func TestCommitStateRules(t *testing.T) {
	s := openMem(t)
	ctx := context.Background()
	first := open("s", 1)
	if err := s.Commit(ctx, storage.Commit{Session: first, Entries: entries("s", 1, 1)}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("first commit without its state: %v", err)
	}
	commitRange(t, s, "s", 1, 1)
	bad := open("s", 2)
	bad.StateSequence = 1
	if err := s.Commit(ctx, storage.Commit{Session: bad, Entries: entries("s", 2, 2), SaveState: true}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("saved state naming an older sequence: %v", err)
	}
	ahead := open("s", 2)
	ahead.StateSequence = 3
	if err := s.Commit(ctx, storage.Commit{Session: ahead, Entries: entries("s", 2, 2)}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("state sequence past the log: %v", err)
	}
}

// TestDedupIndex: agent entries' message ids are indexed with their
// sequence, in the commit's transaction; runtime records are not.
func TestDedupIndex(t *testing.T) {
	dir := t.TempDir()
	s := openDisk(t, dir)
	ctx := context.Background()
	es := entries("s1", 1, 3)
	es[2].Origin = storev1.Origin_ORIGIN_RUNTIME
	es[2].Envelope.MessageId = "runtime:cancel:3"
	if err := s.commitFull(ctx, open("s1", 3), es...); err != nil {
		t.Fatal(err)
	}
	_ = s.Close()
	s = openDisk(t, dir)
	defer s.Close()
	for _, c := range []struct {
		id   string
		seq  uint64
		seen bool
	}{{"m-s1-1", 1, true}, {"m-s1-2", 2, true}, {"runtime:cancel:3", 0, false}, {"m-s1-9", 0, false}} {
		seq, ok, err := s.Seen(ctx, "s1", c.id)
		if err != nil || ok != c.seen || seq != c.seq {
			t.Errorf("Seen(%s) = %d %v %v, want %d %v", c.id, seq, ok, err, c.seq, c.seen)
		}
	}
	if _, ok, _ := s.Seen(ctx, "s2", "m-s1-1"); ok {
		t.Error("a message id is seen in another session")
	}
}

// TestMigrateFormat1: a store written in format 1 (mode state in the head,
// no dedup index) opens as format 2 with nothing lost, and the migration
// can run again after a crash half way.
func TestMigrateFormat1(t *testing.T) {
	dir := t.TempDir()
	db, err := badger.Open(badger.DefaultOptions(dir).WithLogger(nil))
	if err != nil {
		t.Fatal(err)
	}
	v1 := open("old", 2)
	v1.StateSequence = 0 // format 1 had none
	err = db.Update(func(txn *badger.Txn) error {
		if err := txn.Set(formatKey, []byte("1")); err != nil {
			return err
		}
		b, _ := proto.Marshal(v1)
		if err := txn.Set(sessionKey("old"), b); err != nil {
			return err
		}
		for _, e := range entries("old", 1, 2) {
			b, _ := proto.Marshal(e)
			if err := txn.Set(entryKey("old", e.GetSequence()), b); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := migrateFrom1(db); err != nil { // a first run that "crashed" before the format was set
		t.Fatal(err)
	}
	_ = db.Close()

	s := openDisk(t, dir)
	defer s.Close()
	got, err := s.sessionFull(context.Background(), "old")
	if err != nil {
		t.Fatal(err)
	}
	if got.GetStateSequence() != 2 || string(got.GetModeState()) != "state of old at 2" {
		t.Fatalf("migrated session %v", got)
	}
	if seq, ok, _ := s.Seen(context.Background(), "old", "m-old-2"); !ok || seq != 2 {
		t.Fatalf("dedup index not built: %d %v", seq, ok)
	}
	// The migrated session continues.
	commitRange(t, s, "old", 3, 3)
	checkLog(t, s, "old", 3)
}

// TestBlobKinds: modules and Rego sources live in separate namespaces.
func TestBlobKinds(t *testing.T) {
	s := openMem(t)
	ctx := context.Background()
	if err := s.PutBlob(ctx, storage.Modules, "d1", []byte("wasm")); err != nil {
		t.Fatal(err)
	}
	if err := s.PutBlob(ctx, storage.RegoSources, "d1", []byte("rego")); err != nil {
		t.Fatal(err)
	}
	for kind, want := range map[storage.BlobKind]string{storage.Modules: "wasm", storage.RegoSources: "rego"} {
		b, err := s.Blob(ctx, kind, "d1")
		if err != nil || string(b) != want {
			t.Fatalf("%s: %q %v", kind, b, err)
		}
		names, err := s.BlobNames(ctx, kind)
		if err != nil || !slices.Equal(names, []string{"d1"}) {
			t.Fatalf("%s names %v %v", kind, names, err)
		}
	}
	if err := s.PutBlob(ctx, storage.Modules, "a:b", nil); err == nil {
		t.Fatal("a module name with a colon was accepted")
	}
	// Source digests carry their algorithm; they never show up as modules.
	if err := s.PutBlob(ctx, storage.RegoSources, "sha256:d2", []byte("p")); err != nil {
		t.Fatal(err)
	}
	if names, _ := s.BlobNames(ctx, storage.Modules); !slices.Equal(names, []string{"d1"}) {
		t.Fatalf("module names %v", names)
	}
}

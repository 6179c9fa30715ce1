package audit_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/concord-macp/concord/host/audit"
	"github.com/concord-macp/concord/host/store"
	storev1 "github.com/concord-macp/concord/proto/concord/store/v1"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

func openStore(t *testing.T, dir string) *store.Store {
	t.Helper()
	st, err := store.Open(context.Background(), store.Options{Dir: filepath.Join(dir, "badger"), Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func TestTrailPagesNewestFirstAndSurvivesRestart(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	st := openStore(t, dir)
	// A clock that goes backwards must not reorder the trail.
	clock := []time.Time{time.UnixMilli(5000), time.UnixMilli(1000), time.UnixMilli(3000)}
	i := 0
	log, err := audit.Open(ctx, st, audit.Options{Now: func() time.Time { i++; return clock[(i-1)%3] }})
	if err != nil {
		t.Fatal(err)
	}
	for n := range 5 {
		if err := log.Record(ctx, &storev1.AuditAction{Actor: fmt.Sprint("op", n), Procedure: "/p", Ok: true}); err != nil {
			t.Fatal(err)
		}
	}
	page, next, err := log.List(ctx, 2, "")
	if err != nil || len(page) != 2 || page[0].GetActor() != "op4" || page[1].GetActor() != "op3" || next == "" {
		t.Fatalf("first page %v next %q err %v", page, next, err)
	}
	if page[0].GetAtUnixMs() != 1000 || page[1].GetAtUnixMs() != 5000 { // written later, stamped earlier
		t.Fatalf("time %d", page[0].GetAtUnixMs())
	}
	page, next, _ = log.List(ctx, 2, next)
	if len(page) != 2 || page[0].GetActor() != "op2" || page[1].GetActor() != "op1" || next == "" {
		t.Fatalf("second page %v next %q", page, next)
	}
	page, next, _ = log.List(ctx, 2, next)
	if len(page) != 1 || page[0].GetActor() != "op0" || next != "" {
		t.Fatalf("last page %v next %q", page, next)
	}
	for _, tc := range []struct {
		size  int
		token string
	}{{-1, ""}, {0, "zz"}, {0, "0000"}} {
		if _, _, err := log.List(ctx, tc.size, tc.token); !errors.Is(err, audit.ErrBadPage) {
			t.Fatalf("page %d %q: %v", tc.size, tc.token, err)
		}
	}

	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	st = openStore(t, dir)
	defer st.Close()
	log, err = audit.Open(ctx, st, audit.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := log.Record(ctx, &storev1.AuditAction{Actor: "after-restart"}); err != nil {
		t.Fatal(err)
	}
	page, _, _ = log.List(ctx, 0, "")
	if len(page) != 6 || page[0].GetActor() != "after-restart" || page[5].GetActor() != "op0" {
		t.Fatalf("after restart: %v", page)
	}
}

func TestTrailDropsTheOldestPastItsCap(t *testing.T) {
	ctx := context.Background()
	st := openStore(t, t.TempDir())
	defer st.Close()
	log, err := audit.Open(ctx, st, audit.Options{MaxRecords: 3})
	if err != nil {
		t.Fatal(err)
	}
	for n := range 5 {
		if err := log.Record(ctx, &storev1.AuditAction{Actor: fmt.Sprint("op", n)}); err != nil {
			t.Fatal(err)
		}
	}
	page, _, _ := log.List(ctx, 10, "")
	if len(page) != 3 || page[0].GetActor() != "op4" || page[2].GetActor() != "op2" {
		t.Fatalf("capped trail: %v", page)
	}
}

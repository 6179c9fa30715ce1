//go:build unix

package store

import (
	"github.com/concord-macp/concord/host/storage"

	"bytes"
	"context"
	"errors"
	"io/fs"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	storev1 "github.com/concord-macp/concord/proto/concord/store/v1"
)

// virtualDisk is a filesystem of size bytes holding only dir: its free
// space is size minus what the files under dir occupy (allocated blocks,
// since Badger's files are sparse). Tests grow or shrink it.
type virtualDisk struct {
	dir string
	mu  sync.Mutex
	sz  uint64
}

func (d *virtualDisk) resize(n uint64) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.sz = n
}

func (d *virtualDisk) space(string) (Space, error) {
	var used uint64
	err := filepath.WalkDir(d.dir, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		var st unix.Stat_t
		if err := unix.Stat(p, &st); err != nil {
			return err
		}
		used += uint64(st.Blocks) * 512
		return nil
	})
	if err != nil {
		return Space{}, err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if used > d.sz {
		return Space{Total: d.sz}, nil
	}
	return Space{Free: d.sz - used, Total: d.sz}, nil
}

func openVirtual(t *testing.T, d *virtualDisk) (*Store, error) {
	t.Helper()
	return Open(context.Background(), Options{Dir: d.dir, Logger: testLogger(t), Space: d.space})
}

// bigEntry is an entry whose envelope carries n bytes of payload.
func bigEntry(id string, seq uint64, n int) *storev1.Entry {
	e := entry(id, seq)
	e.Envelope.Payload = bytes.Repeat([]byte{byte(seq)}, n)
	return e
}

// TestFullDiskRefusesWritesAndResumes fills a 20 MiB disk with 60 KB
// entries: writes are refused with ErrDiskFull before Badger sees them,
// the store is not failed (reads work, nothing acknowledged is lost), and
// once the disk grows, writes resume on the same sessions by themselves.
func TestFullDiskRefusesWritesAndResumes(t *testing.T) {
	d := &virtualDisk{dir: t.TempDir(), sz: 20 * mib}
	s, err := openVirtual(t, d)
	if err != nil {
		t.Fatal(err)
	}
	changed, full := s.Writable()
	if full != nil || changed == nil {
		t.Fatalf("fresh store: Writable() = %v, %v; want nil error and a change channel", changed, full)
	}
	ctx := context.Background()
	acked := map[string]uint64{}
	ids := []string{"s-a", "s-b", "s-c", "s-d"}
	var refusal error
	for i := 0; refusal == nil; i++ {
		if i > 1000 {
			t.Fatal("20 MiB took 1000 commits of 60 KB without refusing one")
		}
		id := ids[i%len(ids)]
		seq := acked[id] + 1
		err := s.commitFull(ctx, open(id, seq), bigEntry(id, seq, 60_000))
		switch {
		case err == nil:
			acked[id] = seq
		case errors.Is(err, ErrDiskFull):
			refusal = err
		default:
			t.Fatalf("commit %s/%d: %v", id, seq, err)
		}
	}
	if errors.Is(refusal, ErrFailed) || !strings.Contains(refusal.Error(), "free") {
		t.Fatalf("refusal %q: want a disk-full error naming the free space, not a failed store", refusal)
	}
	if _, full := s.Writable(); !errors.Is(full, ErrDiskFull) {
		t.Fatalf("Writable() on a full disk = %v, want ErrDiskFull", full)
	}
	<-changed // the flip to full was announced
	// Registry writes are refused too; reads keep working.
	if err := s.Put(ctx, Policies, "p", []byte("x")); !errors.Is(err, ErrDiskFull) {
		t.Fatalf("Put on a full disk: %v, want ErrDiskFull", err)
	}
	for id, last := range acked {
		if got := collect(t, s, id, 0); uint64(len(got)) != last {
			t.Fatalf("%s: %d entries readable, %d acknowledged", id, len(got), last)
		}
		if snap, err := s.Head(ctx, id); err != nil || snap.GetLastSequence() != last {
			t.Fatalf("%s: snapshot %v %v, want last sequence %d", id, snap, err, last)
		}
	}

	// Space returns: the store notices without a write trying.
	_, _ = s.Writable()
	changed, _ = s.Writable()
	d.resize(64 * mib)
	select {
	case <-changed:
	case <-time.After(10 * time.Second):
		t.Fatal("the store did not notice the freed space within 10 s")
	}
	if _, full := s.Writable(); full != nil {
		t.Fatalf("Writable() after the disk grew = %v", full)
	}
	for _, id := range ids {
		seq := acked[id] + 1
		if err := s.commitFull(ctx, open(id, seq), bigEntry(id, seq, 60_000)); err != nil {
			t.Fatalf("commit %s/%d after space returned: %v", id, seq, err)
		}
		acked[id] = seq
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s, err = openVirtual(t, d)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for id, last := range acked {
		if got := collect(t, s, id, 0); uint64(len(got)) != last {
			t.Fatalf("%s after reopening: %d entries, %d acknowledged", id, len(got), last)
		}
	}
}

// TestOpenOnFullDisk: Open refuses a disk without room for Badger's own
// writes, with an error that says so, and opens once space is back.
func TestOpenOnFullDisk(t *testing.T) {
	d := &virtualDisk{dir: t.TempDir(), sz: 2 * mib}
	_, err := openVirtual(t, d)
	if !errors.Is(err, ErrDiskFull) || !strings.Contains(err.Error(), "free some space") {
		t.Fatalf("Open on a 2 MiB disk: %v, want ErrDiskFull asking to free space", err)
	}
	d.resize(20 * mib)
	s, err := openVirtual(t, d)
	if err != nil {
		t.Fatalf("Open after the disk grew: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestBlobOnFullDisk: a blob that does not fit is refused before its
// first chunk, so no half-written blob is left behind.
func TestBlobOnFullDisk(t *testing.T) {
	d := &virtualDisk{dir: t.TempDir(), sz: 20 * mib}
	s, err := openVirtual(t, d)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	err = s.PutBlob(ctx, storage.Modules, "big", bytes.Repeat([]byte{7}, 18*mib))
	if !errors.Is(err, ErrDiskFull) {
		t.Fatalf("PutBlob of 18 MiB on a 20 MiB disk: %v, want ErrDiskFull", err)
	}
	var chunks int
	if err := s.eachPrefix(ctx, kindBlob, "", func(string, []byte) error { chunks++; return nil }); err != nil {
		t.Fatal(err)
	}
	if names, err := s.BlobNames(ctx, storage.Modules); err != nil || len(names) != 0 || chunks != 0 {
		t.Fatalf("after a refused blob: names %v, %d chunks, err %v; want nothing stored", names, chunks, err)
	}
	if err := s.PutBlob(ctx, storage.Modules, "small", []byte("module")); err != nil {
		t.Fatalf("a small blob after the refusal: %v", err)
	}
}

// TestGuardHysteresis: once full, the guard refuses even small writes until
// the free space is back above the reserve by its margin.
func TestGuardHysteresis(t *testing.T) {
	var free uint64
	geo := geometryFor(64 * mib)
	g := newGuard("d", func(string) (Space, error) { return Space{Free: free, Total: 64 * mib}, nil }, geo, 0, testLogger(t))
	reserve := geo.reserve(0)
	free = reserve + 10<<10
	if err := g.admit(100 << 10); !errors.Is(err, ErrDiskFull) {
		t.Fatalf("100 KiB with 10 KiB above the reserve: %v, want ErrDiskFull", err)
	}
	g.poll()
	if err := g.admit(1 << 10); !errors.Is(err, ErrDiskFull) {
		t.Fatalf("a small write right after a refusal: %v, want ErrDiskFull (hysteresis)", err)
	}
	free = reserve + g.resumeMargin() + 1<<10
	g.poll()
	if _, full := g.state(); full != nil {
		t.Fatalf("state with the margin free again: %v", full)
	}
	if err := g.admit(1 << 10); err != nil {
		t.Fatalf("a small write with the margin free: %v", err)
	}
	// Admitted bytes count until the next measurement, written or not.
	if err := g.admit(g.resumeMargin() + 1); !errors.Is(err, ErrDiskFull) {
		t.Fatalf("admitting past what is free: %v, want ErrDiskFull", err)
	}
}

// TestGeometry: large disks get Badger's defaults; small ones a sizing
// Badger accepts, whose reserve leaves most of the disk, and whose LSM
// batches hold a commit of two values just under the value threshold.
func TestGeometry(t *testing.T) {
	for _, total := range []uint64{2 * mib, 20 * mib, 64 * mib, 1 << 30, 2 << 30, 1 << 40} {
		g := geometryFor(total)
		if total >= 2<<30 && (g.memTable != defaultMemTable || g.valueThreshold != defaultValueThreshold || g.valueLogFile != defaultValueLogFile) {
			t.Errorf("%d: %+v, want Badger's defaults", total, g)
		}
		maxBatch := g.memTable * 15 / 100
		if 2*g.valueThreshold+4*perKeyOverhead > maxBatch/2 {
			t.Errorf("%d: value threshold %d does not fit two values in half of Badger's batch %d", total, g.valueThreshold, maxBatch)
		}
		if total >= 20*mib && g.reserve(0) > total/3 {
			t.Errorf("%d: an empty store reserves %d", total, g.reserve(0))
		}
		if g.compactionNeed(total) > total && total >= 2<<30 {
			t.Errorf("%d: compaction bound %d exceeds the disk", total, g.compactionNeed(total))
		}
	}
	// Badger accepts the small sizing.
	d := &virtualDisk{dir: t.TempDir(), sz: 20 * mib}
	s, err := openVirtual(t, d)
	if err != nil {
		t.Fatalf("open with the 20 MiB geometry: %v", err)
	}
	if err := s.commitFull(context.Background(), open("g", 1), bigEntry("g", 1, int(geometryFor(20*mib).valueThreshold)-200)); err != nil {
		t.Fatalf("a commit just under the value threshold: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
}

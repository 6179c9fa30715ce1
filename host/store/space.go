package store

import (
	"errors"
	"fmt"
	"github.com/concord-macp/concord/host/storage"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// ErrDiskFull: the store's filesystem has too little free space to take a
// write safely, so the write was refused before Badger saw it. Nothing of it
// was written and the store stays usable: reads keep working and writes are
// admitted again once enough space is free.
var ErrDiskFull = storage.ErrNoSpace

// DiskFullMessage is what clients are told when a write is refused with
// ErrDiskFull; the details (sizes, paths) stay in the server's log.
const DiskFullMessage = storage.NoSpaceMessage

// Space is what a filesystem reports about its capacity, in bytes.
type Space struct {
	// Free is what an unprivileged writer may still use.
	Free uint64
	// Total is the filesystem's size.
	Total uint64
}

// SpaceFunc measures the filesystem holding dir. Options.Space replaces the
// real measurement in tests that cannot mount a small filesystem.
type SpaceFunc func(dir string) (Space, error)

// geometry is the Badger sizing the store uses on a filesystem of a given
// size.
//
// Badger writes its write-ahead log, its tables and its value log through
// memory maps of sparse files; a page that cannot be backed because the
// filesystem is full faults (SIGBUS) and takes the process down. Every byte
// Badger writes must therefore find free space, including the writes it
// makes on its own: the flush of a full memtable into a table, compactions
// (which write their output before they delete their input), the flush at
// Close, and the flush of leftover write-ahead logs when it opens. The
// store keeps a reserve of free space for those (see guard) and refuses a
// write that would eat into it.
type geometry struct {
	memTable       int64 // Badger MemTableSize
	baseTable      int64 // Badger BaseTableSize
	baseLevel      int64 // Badger BaseLevelSize
	valueThreshold int64 // Badger ValueThreshold: larger values go to the value log
	valueLogFile   int64 // Badger ValueLogFileSize
}

const (
	mib = 1 << 20
	// Badger's defaults, used on filesystems of 2 GiB and more.
	defaultMemTable       = 64 * mib
	defaultBaseTable      = 2 * mib
	defaultBaseLevel      = 10 * mib
	defaultValueThreshold = 1 * mib
	defaultValueLogFile   = 1<<30 - 1
)

// geometryFor sizes Badger for a filesystem of total bytes. Large
// filesystems get Badger's defaults. On small ones the memtable and the
// tables shrink with the disk, so that a flush and a compaction fit in a
// reserve that leaves most of the disk usable, and values too large for
// the smaller memtable's batches go to the value log.
func geometryFor(total uint64) geometry {
	g := geometry{memTable: defaultMemTable, baseTable: defaultBaseTable, baseLevel: defaultBaseLevel,
		valueThreshold: defaultValueThreshold, valueLogFile: defaultValueLogFile}
	if mt := int64(total / 32); mt < g.memTable {
		g.memTable = max(mt, 2*mib)
		g.baseTable = min(g.baseTable, g.memTable/4)
		g.baseLevel = min(g.baseLevel, 2*g.memTable)
		// Badger's largest batch is 15% of the memtable; keep every value
		// that lives in the LSM well below it.
		g.valueThreshold = min(defaultValueThreshold, g.memTable*15/100/8)
		g.valueLogFile = max(int64(total/8), 4*mib)
	}
	return g
}

// reserve is the free space kept for Badger's own writes while the LSM's
// tables take lsm bytes: two memtable flushes (the one that may be running
// and the one at Close), the compactions (see compactionNeed), and a
// margin for Badger's small files (manifest, discard stats).
func (g geometry) reserve(lsm uint64) uint64 {
	return uint64(2*g.memTable) + g.compactionNeed(lsm) + mib
}

// openNeed is the free space Open requires: the flush of the write-ahead
// logs left behind (backlog), one memtable flush, the compactions, and the
// margin. A store stopped while it still took writes has it whenever its
// write-ahead logs held no more than one memtable: a flush replaces its
// log by a table of about the same size, so the reserve's second memtable
// is still free.
func (g geometry) openNeed(backlog, lsm uint64) uint64 {
	return backlog + uint64(g.memTable) + g.compactionNeed(lsm) + mib
}

// compactionNeed bounds what compactions may write before they delete
// their input: never more than the whole LSM, since concurrent compactions
// work on disjoint tables, and on a large store no more than a level-0
// compaction at Badger's stall size into a full base level plus one
// compaction further down.
func (g geometry) compactionNeed(lsm uint64) uint64 {
	return min(lsm, uint64(16*g.memTable+10*g.baseLevel))
}

// guard admits writes while the filesystem keeps the reserve free after
// them. It measures the filesystem at most every refreshEvery; between
// measurements it subtracts what it admitted since, written or pending.
type guard struct {
	dir     string
	measure SpaceFunc
	geo     geometry
	// lsm reports Badger's levels (nil before the database is open).
	lsm func() []badger.LevelInfo
	// lsmAtOpen is the size of the tables before the database opened.
	lsmAtOpen uint64
	log       *slog.Logger

	mu         sync.Mutex
	space      Space
	reserve    uint64
	measured   time.Time
	pending    uint64 // admitted, not yet written
	unmeasured uint64 // written since the last measurement
	full       error  // non-nil while writes are refused
	changed    chan struct{}
}

// refreshEvery bounds how old a measurement may be when a write is
// admitted or refused, and so how soon writes resume once space is free.
const refreshEvery = 100 * time.Millisecond

func newGuard(dir string, measure SpaceFunc, geo geometry, lsm uint64, log *slog.Logger) *guard {
	return &guard{dir: dir, measure: measure, geo: geo, log: log, lsmAtOpen: lsm, reserve: geo.reserve(lsm), changed: make(chan struct{})}
}

// start takes the first measurement once the database is open (lsm
// reports its levels): a store opened on a disk already short of its
// reserve is full from the start, not from its first refused write.
func (g *guard) start(lsm func() []badger.LevelInfo) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.lsm = lsm
	g.refreshLocked()
	if free := g.freeLocked(); free < g.reserve {
		g.setFullLocked(fmt.Errorf("store: %w: %s free on the filesystem of %s, %s kept in reserve for Badger",
			ErrDiskFull, bytesText(free), g.dir, bytesText(g.reserve)))
	}
}

// free is the space left once what was admitted since the last
// measurement is written.
func (g *guard) freeLocked() uint64 {
	used := g.pending + g.unmeasured
	if g.space.Free < used {
		return 0
	}
	return g.space.Free - used
}

// admit reserves n bytes for a write, or refuses it with an error wrapping
// ErrDiskFull. Once it refuses one, it refuses every write until the free
// space is back above the reserve by a margin (resumeMargin), so that a
// disk on the edge is not reported full and usable in turn.
func (g *guard) admit(n uint64) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if time.Since(g.measured) >= refreshEvery {
		g.refreshLocked()
	}
	need := g.reserve + n
	if g.full != nil {
		need = max(need, g.reserve+g.resumeMargin())
	}
	if free := g.freeLocked(); free < need {
		g.setFullLocked(fmt.Errorf("store: %w: %s free on the filesystem of %s, a write of %s needs %s (%s kept in reserve for Badger)",
			ErrDiskFull, bytesText(free), g.dir, bytesText(n), bytesText(need), bytesText(g.reserve)))
		return g.full
	}
	g.pending += n
	g.setFullLocked(nil)
	return nil
}

// resumeMargin is how far above the reserve the free space must be before
// a full store takes writes again.
func (g *guard) resumeMargin() uint64 {
	return max(g.reserve/8, mib)
}

// landed gives back n admitted bytes once their write ended; they count as
// written until the next measurement.
func (g *guard) landed(n uint64) {
	g.mu.Lock()
	defer g.mu.Unlock()
	n = min(n, g.pending)
	g.pending -= n
	g.unmeasured += n
}

// poll measures the filesystem now, so that a full store notices freed
// space without a write having to try.
func (g *guard) poll() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.refreshLocked()
	if g.full != nil && g.freeLocked() >= g.reserve+g.resumeMargin() {
		g.setFullLocked(nil)
	}
}

// state reports a channel closed at the next change and why writes are
// refused (nil when they are admitted).
func (g *guard) state() (<-chan struct{}, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.changed, g.full
}

// roomFor reports whether n bytes beyond the reserve are free now.
func (g *guard) roomFor(n uint64) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.refreshLocked()
	return g.freeLocked() >= g.reserve+n
}

func (g *guard) refreshLocked() {
	sp, err := g.measure(g.dir)
	if err != nil {
		// Without a measurement, keep the last one: refusing every write
		// because statfs failed once would be worse.
		g.log.Warn("cannot measure free disk space", "err", err)
		return
	}
	g.space, g.measured, g.unmeasured = sp, time.Now(), 0
	lsm := g.lsmAtOpen
	if g.lsm != nil {
		lsm = 0
		for _, l := range g.lsm() {
			lsm += uint64(l.Size)
		}
	}
	g.reserve = g.geo.reserve(lsm)
}

func (g *guard) setFullLocked(err error) {
	if (g.full == nil) == (err == nil) {
		if err != nil {
			g.full = err
		}
		return
	}
	if err != nil {
		g.log.Error("disk full: refusing writes until space is freed", "free", bytesText(g.freeLocked()),
			"reserve", bytesText(g.reserve), "dir", g.dir)
	} else {
		g.log.Info("disk space available again: accepting writes", "free", bytesText(g.freeLocked()))
	}
	g.full = err
	close(g.changed)
	g.changed = make(chan struct{})
}

// walBacklog is the disk space the write-ahead logs Badger left in dir
// occupy; opening the store flushes each of them into a table of about
// that size.
func walBacklog(dir string) (uint64, error) {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	var n uint64
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), ".mem") {
			continue
		}
		size, err := allocated(filepath.Join(dir, e.Name()))
		if err != nil {
			return 0, err
		}
		n += size
	}
	return n, nil
}

func bytesText(n uint64) string {
	switch {
	case n >= 10*mib:
		return fmt.Sprintf("%d MiB", n/mib)
	case n >= 10<<10:
		return fmt.Sprintf("%d KiB", n>>10)
	default:
		return fmt.Sprintf("%d B", n)
	}
}

// admit reserves n bytes of disk for a write (see guard.admit); an
// in-memory store admits everything.
func (s *Store) admit(n int) error {
	if s.disk == nil {
		return nil
	}
	return s.disk.admit(uint64(n))
}

// release gives back what admit reserved once the write ended.
func (s *Store) release(n int) {
	if s.disk != nil {
		s.disk.landed(uint64(n))
	}
}

// tableBytes is the size of the LSM tables in dir.
func tableBytes(dir string) (uint64, error) {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	var n uint64
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), ".sst") {
			continue
		}
		info, err := e.Info()
		if err != nil {
			return 0, fmt.Errorf("stat %s: %w", e.Name(), err)
		}
		n += uint64(info.Size())
	}
	return n, nil
}

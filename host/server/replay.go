package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/concord-macp/concord/host/access"
	"github.com/concord-macp/concord/host/kernel"
	"github.com/concord-macp/concord/host/rpc"
	"github.com/concord-macp/concord/host/store"
	adminv1 "github.com/concord-macp/concord/proto/concord/admin/v1"
)

// ReplayExport replays an exported session (concord replay --file) through
// this server's modes (built-ins, and uploads in its data directory) and
// policy engine, without touching its sessions: the export is loaded into
// a scratch in-memory kernel, read there as an operator and replayed.
func (s *Server) ReplayExport(ctx context.Context, exp *adminv1.SessionExport) (*kernel.ReplayResult, error) {
	if f := exp.GetFormat(); f != rpc.ExportFormat {
		return nil, fmt.Errorf("server: replay export: format %.64q, want %q", f, rpc.ExportFormat)
	}
	rec, entries := exp.GetSession(), exp.GetEntries()
	if rec == nil || len(entries) == 0 {
		return nil, errors.New("server: replay export: it holds no session or no log entries")
	}
	sid := rec.GetMetadata().GetSessionId()
	if _, ok := s.modes.Pinned(rec.GetModuleDigest()); !ok {
		return nil, fmt.Errorf("server: replay export: the session's module %.64s is not available (an uploaded module? give the data directory of the server that ran it)", rec.GetModuleDigest())
	}
	discard := slog.New(slog.NewTextHandler(io.Discard, nil))
	scratch, err := store.Open(ctx, store.Options{InMemory: true, Logger: discard, GCInterval: -1})
	if err != nil {
		return nil, fmt.Errorf("server: replay export: scratch store: %w", err)
	}
	defer func() { _ = scratch.Close() }()
	// The store checks what a hostile file could get wrong: the id, and a
	// log that starts at 1, has no gaps and ends at the snapshot.
	if err := scratch.Commit(ctx, rec, entries...); err != nil {
		return nil, fmt.Errorf("server: replay export: the export is not a consistent session log: %w", err)
	}
	// Read the session at the time of its last entry, so that the read
	// neither expires it nor fires its timers.
	at := time.UnixMilli(entries[len(entries)-1].GetAcceptedAtUnixMs())
	k, err := kernel.New(ctx, kernel.Options{
		Store: scratch, Catalog: s.modes, Governor: s.governor, Logger: discard,
		Now: func() time.Time { return at }, SweepInterval: -1, MaxPayloadBytes: 1 << 30,
	})
	if err != nil {
		return nil, fmt.Errorf("server: replay export: %w", err)
	}
	defer k.Close()
	return k.As(access.Operator("replay")).Replay(ctx, sid)
}

package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/concord-macp/concord/host/access"
	"github.com/concord-macp/concord/host/export"
	"github.com/concord-macp/concord/host/kernel"
	"github.com/concord-macp/concord/host/storage"
	"github.com/concord-macp/concord/host/storage/memory"
	"github.com/concord-macp/concord/policy"
	adminv1 "github.com/concord-macp/concord/proto/concord/admin/v1"
)

// ReplayExport replays an exported session (concord replay --file) through
// this server's modes (built-ins, and uploads in its data directory) and
// policy engine, without touching its sessions: the export is loaded into
// a scratch in-memory kernel, read there as an operator and replayed.
func (s *Server) ReplayExport(ctx context.Context, exp *adminv1.SessionExport) (*kernel.ReplayResult, error) {
	if err := export.Check(exp); err != nil {
		return nil, fmt.Errorf("server: replay export: %w", err)
	}
	rec, entries := exp.GetSession(), exp.GetEntries()
	if len(entries) == 0 {
		return nil, errors.New("server: replay export: it holds no log entries")
	}
	if src := exp.GetPolicySource(); src != "" {
		// The uploaded Rego the session was bound to travels with the file;
		// the engine finds it by digest, as the descriptor names it.
		if err := (policyStore{s.store}).PutSource(ctx, policy.SourceDigest([]byte(src)), []byte(src)); err != nil {
			return nil, fmt.Errorf("server: replay export: keep the policy source: %w", err)
		}
	}
	sid := rec.GetMetadata().GetSessionId()
	if _, ok := s.modes.Pinned(rec.GetModuleDigest()); !ok {
		return nil, fmt.Errorf("server: replay export: the session's module %.64s is not available (an uploaded module? give the data directory of the server that ran it)", rec.GetModuleDigest())
	}
	discard := slog.New(slog.DiscardHandler)
	scratch := memory.New()
	// The store checks what a hostile file could get wrong: the id, and a
	// log that starts at 1, has no gaps and ends at the snapshot.
	snap := proto.CloneOf(rec)
	snap.StateSequence = snap.GetLastSequence()
	if _, err := scratch.Enqueue(ctx, storage.Commit{Session: snap, Entries: entries, SaveState: true}); err != nil {
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

package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"connectrpc.com/connect"

	"github.com/concord-macp/concord/host/access"
	"github.com/concord-macp/concord/host/export"
	"github.com/concord-macp/concord/host/kernel"
	"github.com/concord-macp/concord/host/server"
	"github.com/concord-macp/concord/host/store"
	adminv1 "github.com/concord-macp/concord/proto/concord/admin/v1"
	"github.com/concord-macp/concord/proto/concord/admin/v1/adminv1connect"
)

// replay runs `concord replay`: it replays one session's log through the
// module and policy the session is pinned to, from a data directory (no
// server may be using it) or through a running server's admin API, prints
// the outcome and every divergence, and exits 1 when the replay is not
// exact.
func replay(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("concord replay", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dataDir := fs.String("data-dir", "", "replay from this data directory (the server must be stopped)")
	serverURL := fs.String("server", "", "replay through a running server, e.g. http://127.0.0.1:50051")
	var creds clientFlags
	creds.registerCredentials(fs)
	file := fs.String("file", "", "replay a session exported by `concord session export`, offline; --data-dir adds the uploaded modules and policies kept there")
	wasmCache := fs.String("wasm-cache-dir", "", "the compiled-module cache (default: DATA_DIR/wasm-cache with --data-dir, the user cache otherwise)")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "Usage: concord replay (--data-dir DIR [--wasm-cache-dir DIR] | --server URL [--token TOKEN | --as ID]) SESSION_ID\n       concord replay --file FILE [--data-dir DIR]")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if *file != "" {
		if fs.NArg() != 0 || *serverURL != "" {
			fs.Usage()
			return 2
		}
		cache := *wasmCache
		if cache == "" && *dataDir == "" {
			cache = defaultWasmCache()
		}
		sid, res, err := replayFile(ctx, *file, *dataDir, cache)
		if err != nil {
			fmt.Fprintln(stderr, "concord replay:", err)
			return 1
		}
		printReplay(stdout, sid, res)
		if !res.GetExact() {
			return 1
		}
		return 0
	}
	if fs.NArg() != 1 || (*dataDir == "") == (*serverURL == "") {
		fs.Usage()
		return 2
	}
	sid := fs.Arg(0)
	var (
		res *adminv1.ReplaySessionResponse
		err error
	)
	if *serverURL != "" {
		res, err = replayRemote(ctx, *serverURL, creds.bearer(), sid)
	} else {
		res, err = replayLocal(ctx, *dataDir, *wasmCache, sid)
	}
	if err != nil {
		fmt.Fprintln(stderr, "concord replay:", err)
		return 1
	}
	printReplay(stdout, sid, res)
	if !res.GetExact() {
		return 1
	}
	return 0
}

func replayLocal(ctx context.Context, dataDir, wasmCache, sid string) (*adminv1.ReplaySessionResponse, error) {
	srv, err := server.New(ctx, server.Config{
		Addr: "127.0.0.1:0", DataDir: dataDir, WasmCacheDir: wasmCache, SweepInterval: -1,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		if errors.Is(err, store.ErrLocked) {
			return nil, fmt.Errorf("%w (is a server using %s? stop it or use --server)", err, dataDir)
		}
		return nil, err
	}
	defer func() { _ = srv.Shutdown(context.WithoutCancel(ctx)) }()
	// Whoever may open the data directory may read every session in it.
	r, err := srv.Kernel().As(access.Operator("replay")).Replay(ctx, sid)
	if err != nil {
		return nil, err
	}
	return replayResponse(r), nil
}

// replayFile replays an exported session through the built-in modes, and
// the uploads and policies of dataDir when given (no server may be using
// it).
func replayFile(ctx context.Context, file, dataDir, cache string) (string, *adminv1.ReplaySessionResponse, error) {
	fh, err := os.Open(file)
	if err != nil {
		return "", nil, err
	}
	defer func() { _ = fh.Close() }()
	exp, err := export.Decode(fh)
	if err != nil {
		return "", nil, fmt.Errorf("%s: %w", file, err)
	}
	sid := exp.GetSession().GetMetadata().GetSessionId()
	cfg := server.Config{Addr: "127.0.0.1:0", DataDir: dataDir, Memory: dataDir == "", WasmCacheDir: cache,
		SweepInterval: -1, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	srv, err := server.New(ctx, cfg)
	if err != nil {
		if errors.Is(err, store.ErrLocked) {
			return "", nil, fmt.Errorf("%w (is a server using %s? stop it first)", err, dataDir)
		}
		return "", nil, err
	}
	defer func() { _ = srv.Shutdown(context.WithoutCancel(ctx)) }()
	r, err := srv.ReplayExport(ctx, exp)
	if err != nil {
		return "", nil, err
	}
	return sid, replayResponse(r), nil
}

// replayResponse renders a replay as the admin API does.
func replayResponse(r *kernel.ReplayResult) *adminv1.ReplaySessionResponse {
	out := &adminv1.ReplaySessionResponse{Entries: uint64(r.Entries), Exact: len(r.Divergences) == 0,
		Divergences: r.Divergences, ModeStateJson: string(r.ModeState)}
	if r.Session != nil {
		out.State = r.Session.GetMetadata().GetState()
		out.Resolution = r.Session.GetResolution()
	}
	return out
}

// defaultWasmCache is where offline replays keep the built-in modes'
// machine code, so that only the first one compiles them.
func defaultWasmCache() string {
	if dir, err := os.UserCacheDir(); err == nil {
		return filepath.Join(dir, "concord", "wasm-cache")
	}
	return ""
}

func replayRemote(ctx context.Context, url, bearer, sid string) (*adminv1.ReplaySessionResponse, error) {
	client := adminv1connect.NewAdminServiceClient(clientHTTP(time.Minute), url)
	req := connect.NewRequest(&adminv1.ReplaySessionRequest{SessionId: sid})
	if bearer != "" {
		req.Header().Set("Authorization", "Bearer "+bearer)
	}
	res, err := client.ReplaySession(ctx, req)
	if err != nil {
		return nil, err
	}
	return res.Msg, nil
}

func printReplay(w io.Writer, sid string, r *adminv1.ReplaySessionResponse) {
	fmt.Fprintf(w, "session %s: replayed %d log entries, final state %s\n", sid, r.GetEntries(), r.GetState())
	if c := r.GetResolution(); c != nil {
		fmt.Fprintf(w, "resolution: %s (%s), outcome_positive=%t\n", c.GetAction(), c.GetCommitmentId(), c.GetOutcomePositive())
	}
	if s := r.GetModeStateJson(); s != "" {
		var v any
		if json.Unmarshal([]byte(s), &v) == nil {
			if b, err := json.MarshalIndent(v, "", "  "); err == nil {
				s = string(b)
			}
		}
		fmt.Fprintf(w, "mode state: %s\n", s)
	}
	if r.GetExact() {
		fmt.Fprintln(w, "replay is exact: same acceptances, state bytes, resolution and dedup memory")
		return
	}
	fmt.Fprintf(w, "replay DIVERGES (%d):\n", len(r.GetDivergences()))
	for _, d := range r.GetDivergences() {
		fmt.Fprintln(w, "  -", d)
	}
}

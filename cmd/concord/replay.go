package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"connectrpc.com/connect"

	"github.com/concord-macp/concord/host/server"
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
	identity := fs.String("as", "", "identity to authenticate as with --server (dev auth bearer token)")
	wasmCache := fs.String("wasm-cache-dir", "", "with --data-dir: the compiled-module cache the server used (default: DATA_DIR/wasm-cache)")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "Usage: concord replay (--data-dir DIR [--wasm-cache-dir DIR] | --server URL --as ID) SESSION_ID")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
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
		res, err = replayRemote(ctx, *serverURL, *identity, sid)
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
		if strings.Contains(err.Error(), "lock") {
			return nil, fmt.Errorf("%w (is a server using %s? stop it or use --server)", err, dataDir)
		}
		return nil, err
	}
	defer func() { _ = srv.Shutdown(context.WithoutCancel(ctx)) }()
	r, err := srv.Kernel().ReplaySession(ctx, sid)
	if err != nil {
		return nil, err
	}
	out := &adminv1.ReplaySessionResponse{Entries: uint64(r.Entries), Exact: len(r.Divergences) == 0, Divergences: r.Divergences}
	if r.Session != nil {
		out.State = r.Session.GetMetadata().GetState()
		out.Resolution = r.Session.GetResolution()
		if v, err := srv.Kernel().ViewOf(ctx, r.Session); err == nil {
			out.ModeStateJson = string(v)
		}
	}
	return out, nil
}

func replayRemote(ctx context.Context, url, identity, sid string) (*adminv1.ReplaySessionResponse, error) {
	p := new(http.Protocols)
	p.SetHTTP1(true)
	p.SetUnencryptedHTTP2(true)
	client := adminv1connect.NewAdminServiceClient(&http.Client{Transport: &http.Transport{Protocols: p}, Timeout: time.Minute}, url)
	req := connect.NewRequest(&adminv1.ReplaySessionRequest{SessionId: sid})
	if identity != "" {
		req.Header().Set("Authorization", "Bearer "+identity)
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

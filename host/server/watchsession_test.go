package server_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/concord-macp/concord/host/auth"
	"github.com/concord-macp/concord/host/server"
	"github.com/concord-macp/concord/internal/servertest"
	adminv1 "github.com/concord-macp/concord/proto/concord/admin/v1"
	"github.com/concord-macp/concord/proto/concord/admin/v1/adminv1connect"
	macpv1 "github.com/concord-macp/concord/proto/macp/v1"
)

// http1Admin is an admin client speaking the Connect protocol over
// HTTP/1.1, as a browser's fetch does.
func http1Admin(srv *servertest.Server, identity string) adminv1connect.AdminServiceClient {
	return adminv1connect.NewAdminServiceClient(&http.Client{Timeout: 20 * time.Second}, srv.URL, connect.WithInterceptors(auth.Bearer(identity)))
}

func TestWatchSessionBackfillThenLive(t *testing.T) {
	srv := servertest.Start(t, server.Config{Memory: true})
	client := srv.Client(servertest.GRPC, "")
	sid := servertest.NewSessionID()
	script := decisionScript()
	for _, st := range script[:3] {
		send(t, client, sid, st)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	from0, err := http1Admin(srv, "alice").WatchSession(ctx, connect.NewRequest(&adminv1.WatchSessionRequest{SessionId: sid}))
	if err != nil {
		t.Fatal(err)
	}
	defer from0.Close()
	from2, err := srv.Admin("bob").WatchSession(ctx, connect.NewRequest(&adminv1.WatchSessionRequest{SessionId: sid, AfterSequence: 2}))
	if err != nil {
		t.Fatal(err)
	}
	defer from2.Close()
	read := func(st *connect.ServerStreamForClient[adminv1.WatchSessionResponse], n int) string {
		t.Helper()
		var got []string
		for range n {
			if !st.Receive() {
				t.Fatalf("stream ended after %v: %v", got, st.Err())
			}
			m := st.Msg()
			got = append(got, fmt.Sprintf("%d:%s", m.GetSequence(), m.GetEnvelope().GetMessageId()))
			if m.GetAcceptedAtUnixMs() == 0 || m.GetStateAfter() == macpv1.SessionState_SESSION_STATE_UNSPECIFIED {
				t.Fatalf("entry %d lacks its time or state: %v", m.GetSequence(), m)
			}
		}
		return fmt.Sprint(got)
	}
	if got := read(from0, 3); got != "[1:m0 2:m1 3:m2]" {
		t.Fatalf("backfill from 0 = %s", got)
	}
	if got := read(from2, 1); got != "[3:m2]" {
		t.Fatalf("backfill after 2 = %s", got)
	}
	for _, st := range script[3:] {
		send(t, client, sid, st)
	}
	// Accepted live: m3, m4, m6, m8 (m5 and m7 are refused).
	if got := read(from0, 4); got != "[4:m3 5:m4 6:m6 7:m8]" {
		t.Fatalf("live = %s", got)
	}
	if got := read(from2, 4); got != "[4:m3 5:m4 6:m6 7:m8]" {
		t.Fatalf("live after 2 = %s", got)
	}
}

func TestWatchSessionRefusals(t *testing.T) {
	srv := servertest.Start(t, server.Config{Memory: true})
	sid := servertest.NewSessionID()
	send(t, srv.Client(servertest.GRPC, ""), sid, decisionScript()[0])
	watch := func(c adminv1connect.AdminServiceClient, sessionID string) error {
		st, err := c.WatchSession(context.Background(), connect.NewRequest(&adminv1.WatchSessionRequest{SessionId: sessionID}))
		if err != nil {
			return err
		}
		defer st.Close()
		if st.Receive() {
			return nil
		}
		return st.Err()
	}
	anonymous := adminv1connect.NewAdminServiceClient(&http.Client{Timeout: 20 * time.Second}, srv.URL)
	for name, c := range map[string]struct {
		err  error
		code connect.Code
		macp string
	}{
		"outsider":        {watch(http1Admin(srv, "mallory"), sid), connect.CodePermissionDenied, "FORBIDDEN"},
		"unknown session": {watch(http1Admin(srv, "alice"), servertest.NewSessionID()), connect.CodeNotFound, "SESSION_NOT_FOUND"},
		"no credentials":  {watch(anonymous, sid), connect.CodeUnauthenticated, "UNAUTHENTICATED"},
		"no session id":   {watch(http1Admin(srv, "alice"), ""), connect.CodeInvalidArgument, ""},
	} {
		if connect.CodeOf(c.err) != c.code {
			t.Errorf("%s: %v, want %v", name, c.err, c.code)
			continue
		}
		var ce *connect.Error
		if c.macp != "" && (!errors.As(c.err, &ce) || ce.Meta().Get("macp-error-code") != c.macp) {
			t.Errorf("%s: MACP code %q, want %s", name, ce.Meta().Get("macp-error-code"), c.macp)
		}
	}
}

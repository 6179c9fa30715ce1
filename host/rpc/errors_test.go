package rpc

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"connectrpc.com/connect"

	"github.com/concord-macp/concord/host/kernel"
	"github.com/concord-macp/concord/host/modes"
	"github.com/concord-macp/concord/macperr"
)

// TestEveryCodeHasAStatus: the status table covers the whole registry.
func TestEveryCodeHasAStatus(t *testing.T) {
	for _, c := range macperr.Codes() {
		if StatusCode(c) == connect.CodeUnknown {
			t.Errorf("%s has no status", c)
		}
	}
}

// TestStatusError: coded errors keep their code and message, sentinels get
// their status, and anything else is logged and answered "internal error"
// without its text.
func TestStatusError(t *testing.T) {
	cases := []struct {
		err      error
		status   connect.Code
		macpCode string
		shows    string
		hides    string
	}{
		{macperr.New(macperr.SessionNotFound, "session %q does not exist", "x"), connect.CodeNotFound, "SESSION_NOT_FOUND", `session "x" does not exist`, ""},
		{fmt.Errorf("wrapped: %w", macperr.New(macperr.Forbidden, "no")), connect.CodePermissionDenied, "FORBIDDEN", "no", "wrapped"},
		{macperr.Wrap(macperr.InternalError, errors.New("disk at /var/secret"), "could not write"), connect.CodeInternal, "INTERNAL_ERROR", "could not write", "/var/secret"},
		{errors.Join(kernel.ErrBadPage, errors.New("page_size must not be negative")), connect.CodeInvalidArgument, "", "page_size", ""},
		{kernel.ErrLagging, connect.CodeResourceExhausted, "", "behind", ""},
		{fmt.Errorf("%w: the module is empty", modes.ErrRefused), connect.CodeInvalidArgument, "", "module is empty", ""},
		{fmt.Errorf("open /var/secret/db: %w", context.DeadlineExceeded), connect.CodeDeadlineExceeded, "", "", ""},
		{errors.New("badger: /var/secret is corrupt"), connect.CodeInternal, "INTERNAL_ERROR", "internal error", "/var/secret"},
	}
	for _, c := range cases {
		var logged bytes.Buffer
		got := statusError(slog.New(slog.NewTextHandler(&logged, nil)), "/test/Proc", c.err)
		var ce *connect.Error
		if !errors.As(got, &ce) {
			t.Fatalf("%v: not a connect error", c.err)
		}
		if ce.Code() != c.status || ce.Meta().Get(CodeHeader) != c.macpCode {
			t.Errorf("%v: status %v code %q, want %v %q", c.err, ce.Code(), ce.Meta().Get(CodeHeader), c.status, c.macpCode)
		}
		if !strings.Contains(ce.Message(), c.shows) || (c.hides != "" && strings.Contains(ce.Message(), c.hides)) {
			t.Errorf("%v: message %q (must show %q, hide %q)", c.err, ce.Message(), c.shows, c.hides)
		}
		if c.hides != "" && c.status == connect.CodeInternal && !strings.Contains(logged.String(), c.hides) {
			t.Errorf("%v: the hidden detail was not logged: %s", c.err, logged.String())
		}
	}
}

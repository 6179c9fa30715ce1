package ui

import (
	"context"
	"errors"
	"strings"

	"github.com/concord-macp/concord/host/access"
	"github.com/concord-macp/concord/host/audit"
	"github.com/concord-macp/concord/host/modes"
	"github.com/concord-macp/concord/macperr"
	storev1 "github.com/concord-macp/concord/proto/concord/store/v1"
)

// Procedures of the console's changes, as the audit trail names them beside
// the API's RPCs.
const (
	actUploadMode       = "/ui/modes/upload"
	actRetireMode       = "/ui/modes/retire"
	actPushPolicy       = "/ui/policies/push"
	actUnregisterPolicy = "/ui/policies/unregister"
	actCancelSession    = "/ui/sessions/cancel"
)

// record writes one console change to the audit trail, if there is one.
// A failure to record is logged: the change itself has happened.
func (h *Handler) record(ctx context.Context, caller access.Caller, procedure, target string, err error) {
	if h.opts.Trail == nil {
		return
	}
	a := &storev1.AuditAction{Actor: caller.ID, Procedure: procedure, Target: target, Ok: err == nil}
	switch {
	case errors.Is(err, modes.ErrRefused):
		a.ErrorCode, a.ErrorMessage = "invalid_argument", err.Error()
	case err != nil:
		e := macperr.As(err)
		a.ErrorCode, a.ErrorMessage = string(e.Code), e.Message
	}
	if rerr := h.opts.Trail.Record(context.WithoutCancel(ctx), a); rerr != nil {
		h.log.Error("admin console: could not record a change in the audit trail", "procedure", procedure, "err", rerr)
	}
}

// TrailAudit reads the audit trail of governance actions — module uploads
// and retirements, registry changes, policy pushes, admin calls, from the
// API and from the console, each with who acted — and adds the governance
// decisions on recent sessions that RegistryAudit reads.
type TrailAudit struct {
	Trail    *audit.Log
	Registry RegistryAudit
}

// Describe implements AuditSource.
func (TrailAudit) Describe() string {
	return "The audit trail of governance actions (API and console, with who acted) and the policy decisions on recent sessions."
}

// Records implements AuditSource.
func (a TrailAudit) Records(ctx context.Context, caller access.Caller, limit int) ([]AuditRecord, error) {
	page, _, err := a.Trail.List(ctx, min(limit, audit.MaxPageSize), "")
	if err != nil {
		return nil, err
	}
	out := make([]AuditRecord, 0, len(page))
	for _, r := range page {
		action := strings.TrimPrefix(r.GetProcedure()[strings.LastIndexByte(r.GetProcedure(), '/')+1:], "/")
		if strings.HasPrefix(r.GetProcedure(), "/ui/") {
			action = "console: " + strings.TrimPrefix(r.GetProcedure(), "/ui/")
		}
		detail := "ok"
		if !r.GetOk() {
			detail = "refused: " + r.GetErrorCode() + " " + r.GetErrorMessage()
		}
		out = append(out, AuditRecord{AtUnixMs: r.GetAtUnixMs(), Actor: r.GetActor(), Action: action, Subject: r.GetTarget(), Detail: detail})
	}
	decisions, err := a.Registry.decisions(ctx, caller)
	if err != nil {
		return nil, err
	}
	return newestFirst(append(out, decisions...), limit), nil
}

package ui

import (
	"context"
	"net/http"
	"sort"
	"strings"

	"github.com/concord-macp/concord/host/access"
	"github.com/concord-macp/concord/host/kernel"
	"github.com/concord-macp/concord/host/modes"
	"github.com/concord-macp/concord/policy"
	macpv1 "github.com/concord-macp/concord/proto/macp/v1"
	"github.com/concord-macp/concord/ui/views"
)

// AuditRecord is one governance action: who did what, when.
type AuditRecord struct {
	AtUnixMs int64
	// Actor is who acted; "" when the record does not say.
	Actor, Action, Subject, Detail string
}

// AuditSource is where the audit page reads. The identity work's audit
// records plug in here.
type AuditSource interface {
	// Describe says in a sentence where the records come from.
	Describe() string
	// Records returns up to limit records, newest first, that caller may
	// see.
	Records(ctx context.Context, caller access.Caller, limit int) ([]AuditRecord, error)
}

// RegistryAudit reads what the registries and sessions already record:
// mode bindings (uploads and retirements with their time), policy
// registrations, and the governance decisions of recent sessions. None of
// them names who acted.
type RegistryAudit struct {
	Kernel   *kernel.Kernel
	Modes    *modes.Registry
	Policies *policy.Registry
}

// auditSessions bounds how many recent sessions' decisions are read.
const auditSessions = 200

// Describe implements AuditSource.
func (RegistryAudit) Describe() string {
	return "From what the store records today: mode uploads and retirements, policy registrations and governance decisions. These records do not say who acted."
}

// Records implements AuditSource.
func (a RegistryAudit) Records(ctx context.Context, caller access.Caller, limit int) ([]AuditRecord, error) {
	var out []AuditRecord
	bindings, err := a.Modes.Bindings(ctx)
	if err != nil {
		return nil, err
	}
	for _, b := range bindings {
		r := AuditRecord{AtUnixMs: b.GetRegisteredAtUnixMs(), Action: "mode uploaded", Subject: b.GetMode(), Detail: "module " + b.GetModuleDigest()}
		if !b.GetActive() {
			r.Action = "mode retired"
		} else if b.GetPromoted() {
			r.Action = "mode promoted"
		}
		out = append(out, r)
	}
	for _, d := range a.Policies.List("") {
		if builtinPolicy(d.GetPolicyId()) {
			continue
		}
		out = append(out, AuditRecord{AtUnixMs: d.GetRegisteredAtUnixMs(), Action: "policy registered", Subject: d.GetPolicyId(), Detail: "for " + d.GetMode()})
	}
	decisions, err := a.decisions(ctx, caller)
	if err != nil {
		return nil, err
	}
	return newestFirst(append(out, decisions...), limit), nil
}

// decisions returns the governance decisions on the caller's most recent
// sessions.
func (a RegistryAudit) decisions(ctx context.Context, caller access.Caller) ([]AuditRecord, error) {
	view := a.Kernel.As(caller)
	var recent []*macpv1.SessionMetadata
	if err := eachSession(ctx, view, kernel.SessionFilter{}, func(md *macpv1.SessionMetadata) bool { recent = append(recent, md); return true }); err != nil {
		return nil, err
	}
	sort.Slice(recent, func(i, j int) bool { return recent[i].GetStartedAtUnixMs() > recent[j].GetStartedAtUnixMs() })
	var out []AuditRecord
	for _, md := range recent[:min(len(recent), auditSessions)] {
		gov, err := view.Governance(ctx, md.GetSessionId())
		if err != nil {
			continue
		}
		for _, g := range gov {
			verdict := "commitment allowed"
			if !g.GetAllow() {
				verdict = "commitment denied"
			}
			out = append(out, AuditRecord{AtUnixMs: g.GetDecidedAtUnixMs(), Actor: g.GetSender(), Action: verdict,
				Subject: "session " + md.GetSessionId(), Detail: g.GetPolicyId() + ": " + strings.Join(g.GetReasons(), "; ")})
		}
	}
	return out, nil
}

// newestFirst sorts records newest first and keeps at most limit.
func newestFirst(out []AuditRecord, limit int) []AuditRecord {
	sort.SliceStable(out, func(i, j int) bool { return out[i].AtUnixMs > out[j].AtUnixMs })
	if len(out) > limit {
		out = out[:limit]
	}
	return out
}

// auditLimit is how many records the page shows.
const auditLimit = 500

func (h *Handler) auditPage(w http.ResponseWriter, r *http.Request, p page) {
	recs, err := h.audit.Records(r.Context(), p.caller, auditLimit)
	if err != nil {
		h.failErr(w, r, err)
		return
	}
	p.frame.Title, p.frame.Nav = "Audit", "audit"
	a := views.Audit{Page: p.frame, Source: h.audit.Describe()}
	for _, rec := range recs {
		actor := rec.Actor
		if actor == "" {
			actor = "not recorded"
		}
		a.Rows = append(a.Rows, views.AuditRow{At: formatMs(rec.AtUnixMs), Actor: actor, Action: rec.Action, Subject: rec.Subject, Detail: rec.Detail})
	}
	h.render(w, r, http.StatusOK, views.AuditPage(a))
}

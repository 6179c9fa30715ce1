package ui

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"sort"
	"strconv"
	"strings"

	udiff "github.com/aymanbagabas/go-udiff"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/concord-macp/concord/host/kernel"
	"github.com/concord-macp/concord/macperr"
	"github.com/concord-macp/concord/policy"
	storev1 "github.com/concord-macp/concord/proto/concord/store/v1"
	macpv1 "github.com/concord-macp/concord/proto/macp/v1"
	"github.com/concord-macp/concord/ui/views"
)

// versionSuffix is the family convention: a policy id ending in .vN or
// -vN is version N of the policy named by the rest (RATIONALE "Policy
// families in the console").
var versionSuffix = regexp.MustCompile(`^(.+?)[.-]v([0-9]+)$`)

// familyOf returns the policy a version id belongs to.
func familyOf(id string) string {
	if m := versionSuffix.FindStringSubmatch(id); m != nil {
		return m[1]
	}
	return id
}

// families groups descriptors by family, each family's versions by
// registration time (then id), families by name.
func families(ds []*macpv1.PolicyDescriptor) map[string][]*macpv1.PolicyDescriptor {
	out := map[string][]*macpv1.PolicyDescriptor{}
	for _, d := range ds {
		f := familyOf(d.GetPolicyId())
		out[f] = append(out[f], d)
	}
	for _, vs := range out {
		sort.SliceStable(vs, func(i, j int) bool {
			a, b := vs[i], vs[j]
			return a.GetRegisteredAtUnixMs() < b.GetRegisteredAtUnixMs() ||
				a.GetRegisteredAtUnixMs() == b.GetRegisteredAtUnixMs() && versionOrder(a.GetPolicyId(), b.GetPolicyId())
		})
	}
	return out
}

func versionOrder(a, b string) bool {
	na, nb := versionNumber(a), versionNumber(b)
	if na != nb {
		return na < nb
	}
	return a < b
}

func versionNumber(id string) int {
	if m := versionSuffix.FindStringSubmatch(id); m != nil {
		n, _ := strconv.Atoi(m[2])
		return n
	}
	return 0
}

// builtinPolicy reports ids that ship with the runtime.
func builtinPolicy(id string) bool {
	return id == policy.DefaultID || strings.HasPrefix(id, "policy.std.")
}

func (h *Handler) policyRow(ctx context.Context, d *macpv1.PolicyDescriptor) views.PolicyRow {
	row := views.PolicyRow{ID: d.GetPolicyId(), Mode: d.GetMode(), Description: d.GetDescription(),
		Registered: formatMs(d.GetRegisteredAtUnixMs()), Builtin: builtinPolicy(d.GetPolicyId()), Kind: "declarative rules"}
	if _, custom, _ := h.opts.PolicyEngine.Source(ctx, d); custom {
		row.Kind = "uploaded Rego"
	}
	if row.Builtin {
		row.Kind += ", built in"
	}
	return row
}

func (h *Handler) policiesModel(ctx context.Context, p page) views.Policies {
	p.frame.Title, p.frame.Nav = "Policies", "policies"
	out := views.Policies{Page: p.frame, Modes: h.opts.Modes.Names(),
		Push: views.Push{Form: views.Candidate{Mode: "macp.mode.decision.v1", Schema: "3", Rules: "{}"}}}
	fams := families(h.opts.Policies.List(""))
	names := make([]string, 0, len(fams))
	for n := range fams {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		f := views.Family{Name: n}
		for _, d := range fams[n] {
			f.Versions = append(f.Versions, h.policyRow(ctx, d))
		}
		out.Families = append(out.Families, f)
	}
	return out
}

func (h *Handler) policies(w http.ResponseWriter, r *http.Request, p page) {
	h.render(w, r, http.StatusOK, views.PoliciesPage(h.policiesModel(r.Context(), p)))
}

// maxRegoBytes caps the source and rules a form may carry.
const maxRegoBytes = 256 << 10

// candidateForm reads the push form.
func candidateForm(r *http.Request) (views.Candidate, *macpv1.PolicyDescriptor, []byte, error) {
	var c views.Candidate
	var errs []string
	get := func(name string, limit int) string {
		v := r.PostFormValue(name)
		if len(v) > limit {
			errs = append(errs, fmt.Sprintf("%s is longer than %d bytes", name, limit))
			return ""
		}
		return v
	}
	c.ID = strings.TrimSpace(get("policy_id", maxFieldLen))
	c.Mode = strings.TrimSpace(get("mode", maxFieldLen))
	c.Description = strings.TrimSpace(get("description", 4000))
	c.Schema = strings.TrimSpace(get("schema_version", 8))
	c.Rules = get("rules", maxRegoBytes)
	c.Rego = get("rego", maxRegoBytes)
	schema, err := strconv.ParseUint(c.Schema, 10, 32)
	if err != nil {
		errs = append(errs, "schema_version must be a whole number (1, 2 or 3)")
	}
	if len(errs) > 0 {
		return c, nil, nil, errors.New(strings.Join(errs, "; "))
	}
	d := &macpv1.PolicyDescriptor{PolicyId: c.ID, Mode: c.Mode, Description: c.Description, Rules: c.Rules, SchemaVersion: uint32(schema)}
	return c, d, []byte(c.Rego), nil
}

// policyPush runs a candidate's tests, its impact, or tests and saves it.
// Viewers may test and measure; only admins save.
func (h *Handler) policyPush(w http.ResponseWriter, r *http.Request, p page) {
	r.Body = http.MaxBytesReader(w, r.Body, 3*maxRegoBytes)
	m := h.policiesModel(r.Context(), p)
	parse := r.ParseForm
	if strings.HasPrefix(r.Header.Get("Content-Type"), "multipart/form-data") {
		parse = func() error { return r.ParseMultipartForm(3 * maxRegoBytes) }
	}
	if err := parse(); err != nil {
		m.Push.Error = "The form could not be read: it is too large or malformed."
		h.render(w, r, http.StatusBadRequest, views.PoliciesPage(m))
		return
	}
	action := r.PostFormValue("action")
	m.Push.Action = action
	if action != "test" && action != "impact" && action != "save" {
		m.Push.Error = "Unknown action; use Run tests, Impact or Test and save."
		h.render(w, r, http.StatusBadRequest, views.PoliciesPage(m))
		return
	}
	if action == "save" && !mayChange(p.caller) {
		h.fail(w, r, http.StatusForbidden, string(macperr.Forbidden), p.caller.ID+" is a viewer: viewers may test a policy but not save it")
		return
	}
	form, d, source, err := candidateForm(r)
	m.Push.Form = form
	if err != nil {
		m.Push.Error = err.Error()
		h.render(w, r, http.StatusBadRequest, views.PoliciesPage(m))
		return
	}
	custom := len(strings.TrimSpace(form.Rego)) > 0
	if custom {
		results, err := h.opts.PolicyEngine.TestCustom(r.Context(), d, source)
		if err != nil {
			m.Push.Error = "Refused: " + macperr.As(err).Message
			h.render(w, r, http.StatusBadRequest, views.PoliciesPage(m))
			return
		}
		failed := 0
		for _, t := range results {
			m.Push.Tests = append(m.Push.Tests, views.TestRow{Name: t.Name, Passed: t.Passed, Skipped: t.Skipped, Error: t.Error})
			if !t.Passed && !t.Skipped {
				failed++
			}
		}
		if action == "save" && failed > 0 {
			m.Push.Error = fmt.Sprintf("Not saved: %d of %d shipped test(s) failed.", failed, len(results))
			h.render(w, r, http.StatusUnprocessableEntity, views.PoliciesPage(m))
			return
		}
	}
	switch action {
	case "impact":
		limit := parseLimit(r.PostFormValue("limit"))
		cand, err := h.opts.PolicyEngine.NewCandidate(d, source)
		if err != nil {
			m.Push.Error = "Refused: " + macperr.As(err).Message
			h.render(w, r, http.StatusBadRequest, views.PoliciesPage(m))
			return
		}
		imp := h.impact(r.Context(), p, cand.Descriptor(), cand.Decide, limit)
		m.Push.Impact = &imp
	case "save":
		var saved *macpv1.PolicyDescriptor
		if custom {
			saved, err = h.opts.PolicyEngine.RegisterCustom(r.Context(), d, source)
		} else {
			saved, err = h.opts.Policies.Register(r.Context(), d)
		}
		h.record(r.Context(), p.caller, actPushPolicy, d.GetPolicyId(), err)
		if err != nil {
			if macperr.CodeOf(err) == macperr.InternalError {
				h.failErr(w, r, err)
				return
			}
			m.Push.Error = "Refused: " + macperr.As(err).Message
			h.render(w, r, http.StatusBadRequest, views.PoliciesPage(m))
			return
		}
		h.log.Info("admin console: policy pushed", "by", p.caller.ID, "policy_id", saved.GetPolicyId())
		fresh := h.policiesModel(r.Context(), p)
		fresh.Push.Tests, fresh.Push.Saved = m.Push.Tests, saved.GetPolicyId()
		m = fresh
	}
	h.render(w, r, http.StatusOK, views.PoliciesPage(m))
}

// Impact bounds.
const (
	defaultImpact = 50
	maxImpact     = 500
)

func parseLimit(v string) int {
	n, err := strconv.Atoi(strings.TrimSpace(v))
	if err != nil || n <= 0 {
		return defaultImpact
	}
	return min(n, maxImpact)
}

// recorded is one accepted commitment of the log and the point before it.
type recorded struct {
	md       *macpv1.SessionMetadata
	entry    *storev1.Entry
	payload  *macpv1.CommitmentPayload
	sequence uint64
}

// recentCommitments returns the last limit accepted commitments of mode,
// newest first.
func (h *Handler) recentCommitments(ctx context.Context, v kernel.View, mode string, limit int) ([]recorded, error) {
	filter := kernel.SessionFilter{States: []macpv1.SessionState{macpv1.SessionState_SESSION_STATE_RESOLVED}}
	if mode != policy.AnyMode {
		filter.Mode = mode
	}
	var out []recorded
	var sessions []*macpv1.SessionMetadata
	if err := eachSession(ctx, v, filter, func(md *macpv1.SessionMetadata) bool { sessions = append(sessions, md); return true }); err != nil {
		return nil, err
	}
	for _, md := range sessions {
		rec, entries, err := v.Export(ctx, md.GetSessionId())
		if err != nil || rec.GetResolution() == nil {
			continue
		}
		for _, e := range entries {
			if e.GetCommitmentHash() != "" {
				out = append(out, recorded{md: rec.GetMetadata(), entry: e, payload: rec.GetResolution(), sequence: e.GetSequence()})
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].entry.GetAcceptedAtUnixMs() > out[j].entry.GetAcceptedAtUnixMs() })
	if len(out) > limit {
		out = out[:limit]
	}
	return out, nil
}

// decideFunc is a policy deciding an input: a registered version through
// the engine, or a candidate.
type decideFunc func(context.Context, *policy.Input) (policy.Verdict, error)

// inputBefore rebuilds the governance input of a recorded commitment: the
// session as it was just before it, recomputed by replay.
func inputBefore(ctx context.Context, v kernel.View, c recorded) (*policy.Input, error) {
	before, err := v.StateAt(ctx, c.md.GetSessionId(), c.sequence-1)
	if err != nil {
		return nil, err
	}
	state := before.ModeState
	return &policy.Input{
		Policy: before.Session.GetPolicy(), Session: before.Session.GetMetadata(), Sender: c.entry.GetEnvelope().GetSender(),
		Commitment: c.payload, NowUnixMs: c.entry.GetAcceptedAtUnixMs(),
		ModeState: func(context.Context) ([]byte, error) { return state, nil },
	}, nil
}

func (h *Handler) impact(ctx context.Context, p page, d *macpv1.PolicyDescriptor, decide decideFunc, limit int) views.Impact {
	imp := views.Impact{Policy: d.GetPolicyId(), Mode: d.GetMode(), Limit: limit}
	view := h.opts.Kernel.As(p.caller)
	cs, err := h.recentCommitments(ctx, view, d.GetMode(), limit)
	if err != nil {
		imp.Errors = append(imp.Errors, "could not list the recorded commitments: "+macperr.As(err).Message)
		return imp
	}
	for _, c := range cs {
		in, err := inputBefore(ctx, view, c)
		if err != nil {
			imp.Errors = append(imp.Errors, c.md.GetSessionId()+": "+macperr.As(err).Message)
			continue
		}
		v, err := decide(ctx, in)
		if err != nil {
			imp.Errors = append(imp.Errors, c.md.GetSessionId()+": "+macperr.As(err).Message)
			continue
		}
		imp.Checked++
		if v.Allowed() {
			imp.Unchanged++
			continue
		}
		row := views.ImpactRow{SessionID: c.md.GetSessionId(), At: formatMs(c.entry.GetAcceptedAtUnixMs()),
			Recorded: "allowed by " + c.entry.GetGovernance().GetPolicyId()}
		if !v.Authorized {
			row.Candidate, row.Reasons = "FORBIDDEN: the sender would lack commitment authority", v.AuthorityReasons
		} else {
			row.Candidate, row.Reasons = "POLICY_DENIED", v.Governance.Reasons
		}
		imp.Changes = append(imp.Changes, row)
	}
	return imp
}

func policyIDParam(v string) (string, error) {
	if v == "" || len(v) > maxFieldLen {
		return "", macperr.New(macperr.UnknownPolicyVersion, "name a policy version")
	}
	return v, nil
}

func (h *Handler) policyVersion(w http.ResponseWriter, r *http.Request, p page) {
	id, err := policyIDParam(r.PathValue("id"))
	if err != nil {
		h.failErr(w, r, err)
		return
	}
	d, err := h.opts.Policies.Get(id)
	if err != nil {
		h.failErr(w, r, err)
		return
	}
	ctx := r.Context()
	p.frame.Title, p.frame.Nav = "Policy "+id, "policies"
	pp := views.PolicyPage{Page: p.frame, Policy: h.policyRow(ctx, d), Limit: strconv.Itoa(defaultImpact)}
	pp.CanRemove = mayChange(p.caller) && !pp.Policy.Builtin
	desc, _ := protojson.MarshalOptions{UseProtoNames: true, Multiline: true}.Marshal(d)
	pp.Descriptor = string(desc)
	pp.Source, pp.SourceKind, err = h.sourceText(ctx, d)
	if err != nil {
		h.failErr(w, r, err)
		return
	}
	all := h.opts.Policies.List("")
	for _, v := range families(all)[familyOf(id)] {
		pp.Family = append(pp.Family, h.policyRow(ctx, v))
	}
	for _, x := range all {
		if x.GetPolicyId() != id {
			pp.All = append(pp.All, x.GetPolicyId())
		}
	}
	view := h.opts.Kernel.As(p.caller)
	if recent, err := h.recentCommitments(ctx, view, d.GetMode(), 20); err == nil {
		for _, c := range recent {
			pp.Sessions = append(pp.Sessions, c.md.GetSessionId())
		}
	}
	if sid := strings.TrimSpace(r.URL.Query().Get("session")); sid != "" {
		pp.TrySession = sid
		t := h.try(ctx, view, d, sid)
		pp.Try = &t
	}
	if v := r.URL.Query().Get("impact"); v != "" {
		limit := parseLimit(v)
		pp.Limit = strconv.Itoa(limit)
		bound := func(ctx context.Context, in *policy.Input) (policy.Verdict, error) {
			trial := *in
			trial.Policy = d
			if d.GetMode() != policy.AnyMode && d.GetMode() != in.Session.GetMode() {
				return policy.Verdict{}, macperr.New(macperr.InvalidPolicyDefinition, "policy %q governs %s, not %s", id, d.GetMode(), in.Session.GetMode())
			}
			return h.opts.PolicyEngine.Decide(ctx, &trial)
		}
		imp := h.impact(ctx, p, d, bound, limit)
		pp.Impact = &imp
	}
	h.render(w, r, http.StatusOK, views.PolicyVersionPage(pp))
}

// sourceText is what a version's page and the diff show: the Rego source
// of an upload, the indented rules of a declarative policy.
func (h *Handler) sourceText(ctx context.Context, d *macpv1.PolicyDescriptor) (string, string, error) {
	src, custom, err := h.opts.PolicyEngine.Source(ctx, d)
	if err != nil {
		return "", "", macperr.Wrap(macperr.InternalError, err, "the policy's source could not be read")
	}
	if custom {
		return string(src), "rego", nil
	}
	return prettyJSON([]byte(d.GetRules())), "rules", nil
}

// try evaluates version d against the recorded commitment of session sid.
func (h *Handler) try(ctx context.Context, v kernel.View, d *macpv1.PolicyDescriptor, sid string) views.TryResult {
	out := views.TryResult{SessionID: sid}
	if len(sid) > maxSessionIDLen {
		out.Error = "that is not a session id"
		return out
	}
	rec, entries, err := v.Export(ctx, sid)
	if err != nil {
		out.Error = macperr.As(err).Message
		return out
	}
	var c *recorded
	for _, e := range entries {
		if e.GetCommitmentHash() != "" {
			c = &recorded{md: rec.GetMetadata(), entry: e, payload: rec.GetResolution(), sequence: e.GetSequence()}
		}
	}
	if c == nil || c.payload == nil {
		out.Error = "session " + sid + " has no accepted commitment to evaluate"
		return out
	}
	if d.GetMode() != policy.AnyMode && d.GetMode() != rec.GetMetadata().GetMode() {
		out.Error = fmt.Sprintf("%s governs %s, but session %s is %s", d.GetPolicyId(), d.GetMode(), sid, rec.GetMetadata().GetMode())
		return out
	}
	in, err := inputBefore(ctx, v, *c)
	if err != nil {
		out.Error = "could not recompute the session: " + macperr.As(err).Message
		return out
	}
	in.Policy = d
	verdict, err := h.opts.PolicyEngine.Decide(ctx, in)
	if err != nil {
		out.Error = "the policy could not be evaluated: " + macperr.As(err).Message
		return out
	}
	out.Commitment = c.payload.GetCommitmentId()
	out.Now = *verdictView(verdict)
	if g := c.entry.GetGovernance(); g != nil {
		dv := decisionView(g)
		out.Recorded = &dv
		out.Changed = g.GetAllow() != verdict.Allowed()
	}
	return out
}

func (h *Handler) policyDiff(w http.ResponseWriter, r *http.Request, p page) {
	p.frame.Title, p.frame.Nav = "Diff", "policies"
	d := views.Diff{Page: p.frame, A: r.URL.Query().Get("a"), B: r.URL.Query().Get("b")}
	for _, x := range h.opts.Policies.List("") {
		d.All = append(d.All, x.GetPolicyId())
	}
	texts := make([]string, 2)
	for i, id := range []string{d.A, d.B} {
		desc, err := h.opts.Policies.Get(id)
		if err != nil {
			d.Error = fmt.Sprintf("%.128q is not a registered policy version", id)
			h.render(w, r, http.StatusNotFound, views.DiffPage(d))
			return
		}
		if texts[i], _, err = h.sourceText(r.Context(), desc); err != nil {
			h.failErr(w, r, err)
			return
		}
	}
	if texts[0] == texts[1] {
		d.Same = true
	}
	for _, line := range strings.Split(udiff.Unified(d.A, d.B, texts[0], texts[1]), "\n") {
		switch {
		case line == "", strings.HasPrefix(line, "--- "), strings.HasPrefix(line, "+++ "):
		case strings.HasPrefix(line, "@@"):
			d.Lines = append(d.Lines, views.DiffLine{Kind: "hunk", Text: line})
		case strings.HasPrefix(line, "+"):
			d.Lines = append(d.Lines, views.DiffLine{Kind: "add", Text: line})
		case strings.HasPrefix(line, "-"):
			d.Lines = append(d.Lines, views.DiffLine{Kind: "del", Text: line})
		default:
			d.Lines = append(d.Lines, views.DiffLine{Kind: "ctx", Text: line})
		}
	}
	h.render(w, r, http.StatusOK, views.DiffPage(d))
}

func (h *Handler) policyUnregister(w http.ResponseWriter, r *http.Request, p page) {
	id, err := field(r, "policy_id")
	if err != nil {
		h.fail(w, r, http.StatusBadRequest, "", err.Error())
		return
	}
	err = h.opts.Policies.Unregister(r.Context(), id)
	h.record(r.Context(), p.caller, actUnregisterPolicy, id, err)
	if err != nil {
		h.failErr(w, r, err)
		return
	}
	h.log.Info("admin console: policy unregistered", "by", p.caller.ID, "policy_id", id)
	m := h.policiesModel(r.Context(), p)
	m.Notice = views.Notice{Kind: "ok", Text: "Unregistered " + id + ". Sessions bound to it keep their copy."}
	h.render(w, r, http.StatusOK, views.PoliciesPage(m))
}

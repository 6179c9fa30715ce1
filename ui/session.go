package ui

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"sort"
	"strconv"
	"strings"

	"github.com/a-h/templ"
	"google.golang.org/protobuf/proto"

	"github.com/concord-macp/concord/host/export"
	"github.com/concord-macp/concord/host/kernel"
	"github.com/concord-macp/concord/macperr"
	"github.com/concord-macp/concord/policy"
	adminv1 "github.com/concord-macp/concord/proto/concord/admin/v1"
	storev1 "github.com/concord-macp/concord/proto/concord/store/v1"
	macpv1 "github.com/concord-macp/concord/proto/macp/v1"
	"github.com/concord-macp/concord/ui/decode"
	"github.com/concord-macp/concord/ui/views"
)

// maxSessionIDLen matches the kernel's limit on session ids.
const maxSessionIDLen = 128

// sessionID reads the {id} path value.
func sessionID(r *http.Request) (string, error) {
	id := r.PathValue("id")
	if id == "" || len(id) > maxSessionIDLen || strings.ContainsAny(id, "\x00") {
		return "", macperr.New(macperr.InvalidSessionID, "%.64q is not a session id", id)
	}
	return id, nil
}

// recording is one read of a session: snapshot, mode state, log and
// decisions.
type recording struct {
	rec       *storev1.Session
	modeState []byte
	entries   []*storev1.Entry
	decisions []*storev1.Governance
}

func readRecording(ctx context.Context, v kernel.View, id string) (*recording, error) {
	in, err := v.Inspect(ctx, id)
	if err != nil {
		return nil, err
	}
	rec, entries, err := v.Export(ctx, id)
	if err != nil {
		return nil, err
	}
	gov, err := v.Governance(ctx, id)
	if err != nil {
		return nil, err
	}
	return &recording{rec: rec, modeState: in.ModeState, entries: entries, decisions: gov}, nil
}

func (h *Handler) session(w http.ResponseWriter, r *http.Request, p page) {
	id, err := sessionID(r)
	if err != nil {
		h.failErr(w, r, err)
		return
	}
	view := h.opts.Kernel.As(p.caller)
	rc, err := readRecording(r.Context(), view, id)
	if err != nil {
		h.failErr(w, r, err)
		return
	}
	at := len(rc.entries)
	if v := r.URL.Query().Get("at"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > len(rc.entries) {
			h.fail(w, r, http.StatusBadRequest, string(macperr.InvalidEnvelope), fmt.Sprintf("at must be an entry from 1 to %d", len(rc.entries)))
			return
		}
		at = n
	}
	s := h.sessionModel(rc, p)
	s.At = h.stateAt(r.Context(), view, rc, at)
	h.render(w, r, http.StatusOK, views.SessionView(s))
}

// sessionModel builds the page of a recording.
func (h *Handler) sessionModel(rc *recording, p page) views.SessionPage {
	md := rc.rec.GetMetadata()
	p.frame.Title, p.frame.Nav = "Session "+md.GetSessionId(), "sessions"
	s := views.SessionPage{
		Page:      p.frame,
		Summary:   summary(rc.rec),
		ModeState: prettyJSON(rc.modeState),
		Open:      live(md.GetState()),
	}
	s.At.Max = len(rc.entries)
	if s.Open {
		s.LiveURL = sessionURL(md.GetSessionId()) + "/events?after=" + strconv.FormatUint(rc.rec.GetLastSequence(), 10)
	}
	for _, e := range rc.entries {
		v := entryView(md.GetMode(), e)
		s.Timeline = append(s.Timeline, v)
		if e.GetCommitmentHash() != "" {
			c := v
			s.Commitment = &c
		}
	}
	for _, g := range rc.decisions {
		s.Governance = append(s.Governance, decisionView(g))
	}
	s.Participants = participants(md, rc.entries)
	for _, t := range rc.rec.GetTimers() {
		due := rc.rec.GetAnchorUnixMs() + rc.rec.GetSuspendedTotalMs() + t.GetDueSessionClockMs()
		s.Timers = append(s.Timers, views.Timer{ID: t.GetMessageId(), Type: t.GetMessageType(), Due: formatMs(due)})
	}
	return s
}

func live(s macpv1.SessionState) bool {
	return s == macpv1.SessionState_SESSION_STATE_OPEN || s == macpv1.SessionState_SESSION_STATE_SUSPENDED
}

func summary(rec *storev1.Session) views.SessionSummary {
	md := rec.GetMetadata()
	s := views.SessionSummary{
		ID: md.GetSessionId(), Mode: md.GetMode(), ModeVersion: md.GetModeVersion(), State: stateName(md.GetState()),
		Initiator: md.GetInitiator(), Started: formatMs(md.GetStartedAtUnixMs()), Expires: formatMs(md.GetExpiresAtUnixMs()),
		ContextID: md.GetContextId(), Configuration: md.GetConfigurationVersion(), PolicyVersion: rec.GetPolicy().GetPolicyId(),
		PolicyDigest: policyDigest(rec.GetPolicy()), ModuleDigest: rec.GetModuleDigest(),
		Entries: strconv.FormatUint(rec.GetLastSequence(), 10), Participants: md.GetParticipants(),
		Deadline: formatMs(rec.GetDeadlineUnixMs()),
	}
	if s.ContextID == "" {
		s.ContextID = "—"
	}
	if at := rec.GetSuspendedAtUnixMs(); at > 0 {
		s.Suspended = "since " + formatMs(at)
	}
	return s
}

// policyDigest is the bound policy's content identity as the kernel
// records it with each decision (id, schema version, rules).
func policyDigest(d *macpv1.PolicyDescriptor) string {
	sum := sha256.New()
	fmt.Fprintf(sum, "%s\x00%d\x00%s", d.GetPolicyId(), d.GetSchemaVersion(), d.GetRules())
	return hex.EncodeToString(sum.Sum(nil))
}

func entryView(mode string, e *storev1.Entry) views.Entry {
	env := e.GetEnvelope()
	v := views.Entry{
		Seq: int(e.GetSequence()), At: formatMs(e.GetAcceptedAtUnixMs()), StateAfter: stateName(e.GetStateAfter()),
		Hash: e.GetCommitmentHash(), Origin: "agent",
	}
	if e.GetOrigin() == storev1.Origin_ORIGIN_RUNTIME {
		v.Origin, v.Class = "runtime", "runtime"
	}
	if env == nil {
		v.Type, v.Sender = "Expiry", "the runtime"
		v.Fields = []decode.Field{{Name: "reason", Value: "the session's deadline passed"}}
		return v
	}
	v.Type, v.Sender, v.MessageID = env.GetMessageType(), env.GetSender(), env.GetMessageId()
	p := decode.Decode(mode, env.GetMessageType(), env.GetPayload())
	v.Fields, v.Kind = p.Fields, p.Kind
	if v.Hash != "" {
		v.Class = "commitment"
	}
	if g := e.GetGovernance(); g != nil {
		d := decisionView(g)
		v.Governance = &d
	}
	return v
}

func decisionView(g *storev1.Governance) views.Decision {
	return views.Decision{Allow: g.GetAllow(), Policy: g.GetPolicyId(), Digest: g.GetPolicyDigest(), Sender: g.GetSender(),
		MessageID: g.GetMessageId(), At: formatMs(g.GetDecidedAtUnixMs()), Reasons: g.GetReasons()}
}

// participants summarises who sent what, declared participants first.
func participants(md *macpv1.SessionMetadata, entries []*storev1.Entry) []views.ParticipantRow {
	type tally struct {
		n     int
		last  int64
		types map[string]int
	}
	by := map[string]*tally{}
	order := []string{md.GetInitiator()}
	order = append(order, md.GetParticipants()...)
	for _, e := range entries {
		env := e.GetEnvelope()
		if env == nil {
			continue
		}
		t := by[env.GetSender()]
		if t == nil {
			t = &tally{types: map[string]int{}}
			by[env.GetSender()] = t
			order = append(order, env.GetSender())
		}
		t.n++
		t.last = e.GetAcceptedAtUnixMs()
		t.types[env.GetMessageType()]++
	}
	seen := map[string]bool{}
	var out []views.ParticipantRow
	for _, id := range order {
		if id == "" || seen[id] {
			continue
		}
		seen[id] = true
		row := views.ParticipantRow{ID: id, Role: "participant", Last: "—"}
		switch {
		case id == md.GetInitiator():
			row.Role = "initiator"
		case id == kernel.RuntimeSender:
			row.Role = "runtime"
		case !contains(md.GetParticipants(), id):
			row.Role = "sender (not declared)"
		}
		if t := by[id]; t != nil {
			row.Sent, row.Last = t.n, formatMs(t.last)
			var kinds []string
			for k, n := range t.types {
				kinds = append(kinds, fmt.Sprintf("%s ×%d", k, n))
			}
			sort.Strings(kinds)
			row.Types = strings.Join(kinds, ", ")
		}
		out = append(out, row)
	}
	return out
}

func contains(xs []string, x string) bool {
	for _, y := range xs {
		if y == x {
			return true
		}
	}
	return false
}

// stateAt recomputes the session after entry seq and asks its bound
// policy about its commitment at that point: the recorded one when there
// is one, otherwise a hypothetical positive commitment by the initiator.
func (h *Handler) stateAt(ctx context.Context, v kernel.View, rc *recording, seq int) views.StateAt {
	md := rc.rec.GetMetadata()
	out := views.StateAt{SessionID: md.GetSessionId(), Seq: seq, Max: len(rc.entries)}
	if seq < 1 || seq > len(rc.entries) {
		out.Error = fmt.Sprintf("entry %d does not exist: the log has %d", seq, len(rc.entries))
		return out
	}
	e := rc.entries[seq-1]
	ev := entryView(md.GetMode(), e)
	out.After = fmt.Sprintf("#%d %s by %s", seq, ev.Type, ev.Sender)
	at, err := v.StateAt(ctx, md.GetSessionId(), uint64(seq))
	if err != nil {
		out.Error = "could not recompute the session: " + macperr.As(err).Message
		return out
	}
	out.State = stateName(at.Session.GetMetadata().GetState())
	out.ModeState = prettyJSON(at.ModeState)
	commitment, sender := rc.rec.GetResolution(), ""
	out.Commitment = "the recorded commitment"
	for _, x := range rc.entries {
		if x.GetCommitmentHash() != "" {
			sender = x.GetEnvelope().GetSender()
		}
	}
	if commitment == nil {
		commitment, sender = &macpv1.CommitmentPayload{CommitmentId: "hypothetical", OutcomePositive: true}, md.GetInitiator()
		out.Commitment = "a hypothetical positive commitment by the initiator"
	}
	state := at.ModeState
	verdict, err := h.opts.PolicyEngine.Decide(ctx, &policy.Input{
		Policy: rc.rec.GetPolicy(), Session: at.Session.GetMetadata(), Sender: sender, Commitment: commitment,
		ModeState: func(context.Context) ([]byte, error) { return state, nil }, NowUnixMs: e.GetAcceptedAtUnixMs(),
	})
	if err != nil {
		out.Error = "the bound policy could not be evaluated: " + macperr.As(err).Message
		return out
	}
	out.Verdict = verdictView(verdict)
	return out
}

func verdictView(v policy.Verdict) *views.Verdict {
	out := &views.Verdict{Allowed: v.Allowed(), Authorized: v.Authorized, Reasons: v.AuthorityReasons}
	if v.Authorized {
		out.Reasons = v.Governance.Reasons
	}
	return out
}

// sessionAt is the time travel panel alone, for the scrubber.
func (h *Handler) sessionAt(w http.ResponseWriter, r *http.Request, p page) {
	id, err := sessionID(r)
	if err != nil {
		h.failErr(w, r, err)
		return
	}
	view := h.opts.Kernel.As(p.caller)
	rc, err := readRecording(r.Context(), view, id)
	if err != nil {
		h.failErr(w, r, err)
		return
	}
	seq, err := strconv.Atoi(r.URL.Query().Get("at"))
	status := http.StatusOK
	if err != nil || seq < 1 || seq > len(rc.entries) {
		status = http.StatusBadRequest
	}
	h.render(w, r, status, views.StateAtView(h.stateAt(r.Context(), view, rc, seq)))
}

// sessionEvents streams a session's new entries and its refreshed panels
// while it is open.
func (h *Handler) sessionEvents(w http.ResponseWriter, r *http.Request, p page) {
	id, err := sessionID(r)
	if err != nil {
		h.failErr(w, r, err)
		return
	}
	after, _ := strconv.ParseUint(r.URL.Query().Get("after"), 10, 64)
	ctx, cancel := h.streamContext(r)
	defer cancel()
	view := h.opts.Kernel.As(p.caller)
	sub, err := view.Subscribe(ctx, id, after)
	if err != nil {
		h.failErr(w, r, err)
		return
	}
	defer sub.Close()
	s := startStream(w)
	for {
		e, err := sub.Next(ctx)
		if err != nil {
			return
		}
		batch := []*storev1.Entry{e}
		for {
			more, err := sub.TryNext(ctx)
			if err != nil || more == nil {
				break
			}
			batch = append(batch, more)
		}
		rc, err := readRecording(ctx, view, id)
		if err != nil {
			return
		}
		for _, e := range batch {
			if err := s.send(ctx, "append", "timeline", "", views.EntryView(entryView(rc.rec.GetMetadata().GetMode(), e))); err != nil {
				return
			}
		}
		m := h.sessionModel(rc, p)
		panels := []struct {
			id string
			c  templ.Component
		}{
			{"session-summary", views.SummaryView(m.Summary)},
			{"session-participants", views.ParticipantsView(m.Participants)},
			{"session-commitment", views.CommitmentView(m.Commitment, m.Governance)},
			{"session-runtime", views.RuntimeView(m.Summary, m.Timers)},
			{"session-state", views.Text(m.ModeState)},
			{"time-travel", views.TimeTravelView(h.stateAt(ctx, view, rc, len(rc.entries)))},
		}
		for _, panel := range panels {
			if err := s.send(ctx, "replace", panel.id, "", panel.c); err != nil {
				return
			}
		}
		// End after the entry that ended the session, not when the snapshot
		// says it ended: the snapshot may be ahead of the durable log.
		if !live(batch[len(batch)-1].GetStateAfter()) {
			s.end()
			return
		}
	}
}

// sessionExport downloads the session's history for concord replay.
func (h *Handler) sessionExport(w http.ResponseWriter, r *http.Request, p page) {
	id, err := sessionID(r)
	if err != nil {
		h.failErr(w, r, err)
		return
	}
	rec, entries, err := h.opts.Kernel.As(p.caller).Export(r.Context(), id)
	if err != nil {
		h.failErr(w, r, err)
		return
	}
	f := &adminv1.SessionExport{Session: proto.CloneOf(rec), Entries: entries, ExportedAtUnixMs: h.now().UnixMilli()}
	if src, custom, err := h.opts.PolicyEngine.Source(r.Context(), rec.GetPolicy()); err != nil {
		h.failErr(w, r, macperr.Wrap(macperr.InternalError, err, "the bound policy's source could not be read"))
		return
	} else if custom {
		f.PolicySource = string(src)
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Disposition", fmt.Sprintf("attachment; filename=%q", "session-"+id+".json"))
	if err := export.Encode(w, f); err != nil {
		h.log.Error("admin console: export", "session_id", id, "err", err)
	}
}

func (h *Handler) sessionReplay(w http.ResponseWriter, r *http.Request, p page) {
	id, err := sessionID(r)
	if err != nil {
		h.failErr(w, r, err)
		return
	}
	view := h.opts.Kernel.As(p.caller)
	rc, err := readRecording(r.Context(), view, id)
	if err != nil {
		h.failErr(w, r, err)
		return
	}
	s := h.sessionModel(rc, p)
	s.At = h.stateAt(r.Context(), view, rc, len(rc.entries))
	res, err := view.Replay(r.Context(), id)
	rp := &views.Replay{}
	if err != nil {
		rp.Error = "the replay could not run: " + macperr.As(err).Message
	} else {
		rp.Exact, rp.Entries, rp.Divergences = len(res.Divergences) == 0, res.Entries, res.Divergences
		if res.Session != nil {
			rp.State = stateName(res.Session.GetMetadata().GetState())
		}
	}
	s.Replay = rp
	h.render(w, r, http.StatusOK, views.SessionView(s))
}

func (h *Handler) sessionCancel(w http.ResponseWriter, r *http.Request, p page) {
	id, err := sessionID(r)
	if err != nil {
		h.failErr(w, r, err)
		return
	}
	reason, err := field(r, "reason")
	if err != nil {
		h.fail(w, r, http.StatusBadRequest, string(macperr.InvalidEnvelope), err.Error())
		return
	}
	ack, err := h.opts.Kernel.Control(r.Context(), p.caller, kernel.Cancel, id, reason)
	switch {
	case err != nil:
		h.record(r.Context(), p.caller, actCancelSession, id, err)
	case !ack.GetOk():
		h.record(r.Context(), p.caller, actCancelSession, id, macperr.New(macperr.Code(ack.GetError().GetCode()), "%s", ack.GetError().GetMessage()))
	default:
		h.record(r.Context(), p.caller, actCancelSession, id, nil)
	}
	if err != nil {
		h.failErr(w, r, err)
		return
	}
	if !ack.GetOk() {
		h.fail(w, r, http.StatusConflict, ack.GetError().GetCode(), ack.GetError().GetMessage())
		return
	}
	http.Redirect(w, r, sessionURL(id), http.StatusSeeOther)
}

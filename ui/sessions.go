package ui

import (
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/concord-macp/concord/host/kernel"
	macpv1 "github.com/concord-macp/concord/proto/macp/v1"
	"github.com/concord-macp/concord/ui/views"
)

// Session list paging.
const (
	listPageSize = 50
	// listScanCap bounds how many matching sessions one list sorts; past
	// it the console asks for a narrower filter.
	listScanCap = 10000
)

// formTime is the datetime-local input's format (UTC in the console).
const formTime = "2006-01-02T15:04"

// parseFilter reads the list filter from the query; errors are the
// user's to fix.
func parseFilter(r *http.Request) (kernel.SessionFilter, views.SessionFilter, error) {
	var f kernel.SessionFilter
	var form views.SessionFilter
	q := r.URL.Query()
	for _, s := range q["state"] {
		v, ok := macpv1.SessionState_value["SESSION_STATE_"+strings.ToUpper(s)]
		if !ok || v == 0 {
			return f, form, fmt.Errorf("state %.32q is not a session state", s)
		}
		f.States = append(f.States, macpv1.SessionState(v))
		form.States = append(form.States, strings.ToUpper(s))
	}
	for name, dst := range map[string]*string{"mode": &f.Mode, "participant": &f.Participant, "initiator": &f.Initiator, "context_id": &f.ContextID} {
		v := strings.TrimSpace(q.Get(name))
		if len(v) > maxFieldLen {
			return f, form, fmt.Errorf("%s is longer than %d bytes", name, maxFieldLen)
		}
		*dst = v
	}
	form.Mode, form.Participant, form.Initiator, form.ContextID = f.Mode, f.Participant, f.Initiator, f.ContextID
	for name, dst := range map[string]*int64{"from": &f.StartedFromUnixMs, "until": &f.StartedUntilUnixMs} {
		v := strings.TrimSpace(q.Get(name))
		if v == "" {
			continue
		}
		t, err := time.ParseInLocation(formTime, v, time.UTC)
		if err != nil {
			return f, form, fmt.Errorf("%s %.32q is not a date and time (YYYY-MM-DDTHH:MM, UTC)", name, v)
		}
		*dst = t.UnixMilli()
		if name == "from" {
			form.From = v
		} else {
			form.Until = v
		}
	}
	if f.StartedUntilUnixMs != 0 {
		f.StartedUntilUnixMs += time.Minute.Milliseconds() - 1 // the whole minute
	}
	return f, form, nil
}

func (h *Handler) sessions(w http.ResponseWriter, r *http.Request, p page) {
	p.frame.Title, p.frame.Nav = "Sessions", "sessions"
	s := views.Sessions{Page: p.frame, Modes: h.opts.Modes.Names()}
	for _, st := range listedStates {
		s.States = append(s.States, stateName(st))
	}
	filter, form, err := parseFilter(r)
	s.Filter = form
	if err != nil {
		s.Error = err.Error()
		h.render(w, r, http.StatusBadRequest, views.SessionsPage(s))
		return
	}
	offset := 0
	if v := r.URL.Query().Get("offset"); v != "" {
		if offset, err = strconv.Atoi(v); err != nil || offset < 0 || offset > listScanCap {
			s.Error = "offset must be a number from 0 to " + strconv.Itoa(listScanCap)
			h.render(w, r, http.StatusBadRequest, views.SessionsPage(s))
			return
		}
	}
	var all []*macpv1.SessionMetadata
	err = eachSession(r.Context(), h.opts.Kernel.As(p.caller), filter, func(md *macpv1.SessionMetadata) bool {
		all = append(all, md)
		return len(all) < listScanCap
	})
	if err != nil {
		h.failErr(w, r, err)
		return
	}
	s.Truncated = len(all) >= listScanCap
	sort.SliceStable(all, func(i, j int) bool {
		a, b := all[i].GetStartedAtUnixMs(), all[j].GetStartedAtUnixMs()
		return a > b || a == b && all[i].GetSessionId() < all[j].GetSessionId()
	})
	s.Total = len(all)
	end := min(offset+listPageSize, len(all))
	if offset < end {
		for _, md := range all[offset:end] {
			s.Rows = append(s.Rows, sessionRow(md))
		}
		s.From, s.To = offset+1, end
	}
	q := r.URL.Query()
	link := func(off int) string {
		q.Set("offset", strconv.Itoa(off))
		return "/ui/sessions?" + q.Encode()
	}
	if offset > 0 {
		s.Prev = link(max(offset-listPageSize, 0))
	}
	if end < len(all) {
		s.Next = link(end)
	}
	if offset == 0 {
		live := r.URL.Query()
		live.Del("offset")
		live.Set("since", strconv.FormatInt(h.now().UnixMilli(), 10))
		s.LiveURL = "/ui/sessions/events?" + live.Encode()
	}
	h.render(w, r, http.StatusOK, views.SessionsPage(s))
}

func sessionRow(md *macpv1.SessionMetadata) views.SessionRow {
	return views.SessionRow{
		ID: md.GetSessionId(), Mode: md.GetMode(), State: stateName(md.GetState()), Initiator: md.GetInitiator(),
		Participants: strings.Join(md.GetParticipants(), ", "), Started: formatMs(md.GetStartedAtUnixMs()),
		Expires: formatMs(md.GetExpiresAtUnixMs()), ContextID: md.GetContextId(), Policy: md.GetPolicyVersion(),
	}
}

// sessionsEvents streams the list's changes: a row per new session or
// state change, for the sessions the filter selects.
func (h *Handler) sessionsEvents(w http.ResponseWriter, r *http.Request, p page) {
	filter, _, err := parseFilter(r)
	if err != nil {
		h.fail(w, r, http.StatusBadRequest, "", err.Error())
		return
	}
	since, _ := strconv.ParseInt(r.URL.Query().Get("since"), 10, 64)
	ctx, cancel := h.streamContext(r)
	defer cancel()
	watch := h.opts.Kernel.As(p.caller).WatchSessions(ctx, filter)
	defer watch.Close()
	s := startStream(w)
	for {
		ev, err := watch.Next(ctx)
		if err != nil {
			return // ended, or fell behind: the browser reconnects
		}
		md := ev.GetSession()
		if ev.GetEventType() == macpv1.SessionLifecycleEvent_EVENT_TYPE_CREATED && md.GetStartedAtUnixMs() < since {
			continue // already on the page
		}
		if err := s.send(ctx, "upsert", "row-"+md.GetSessionId(), "session-rows", views.SessionRowView(sessionRow(md))); err != nil {
			return
		}
	}
}

// sessionURL is the page of a session.
func sessionURL(id string) string { return "/ui/sessions/" + url.PathEscape(id) }

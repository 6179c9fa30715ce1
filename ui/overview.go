package ui

import (
	"context"
	"fmt"
	"net/http"
	"sort"
	"strconv"

	"github.com/concord-macp/concord/host/kernel"
	macpv1 "github.com/concord-macp/concord/proto/macp/v1"
	"github.com/concord-macp/concord/ui/stats"
	"github.com/concord-macp/concord/ui/views"
)

// listedStates are the states the console counts and filters by.
var listedStates = []macpv1.SessionState{
	macpv1.SessionState_SESSION_STATE_OPEN, macpv1.SessionState_SESSION_STATE_SUSPENDED,
	macpv1.SessionState_SESSION_STATE_RESOLVED, macpv1.SessionState_SESSION_STATE_EXPIRED,
	macpv1.SessionState_SESSION_STATE_CANCELLED,
}

func (h *Handler) overview(w http.ResponseWriter, r *http.Request, p page) {
	o, err := h.overviewModel(r.Context(), p)
	if err != nil {
		h.failErr(w, r, err)
		return
	}
	h.render(w, r, http.StatusOK, views.OverviewPage(o))
}

func (h *Handler) overviewModel(ctx context.Context, p page) (views.Overview, error) {
	p.frame.Title, p.frame.Nav = "Overview", "overview"
	o := views.Overview{Page: p.frame, LiveURL: "/ui/events/overview"}
	counts := map[macpv1.SessionState]int{}
	err := eachSession(ctx, h.opts.Kernel.As(p.caller), kernel.SessionFilter{}, func(md *macpv1.SessionMetadata) bool {
		counts[md.GetState()]++
		return true
	})
	if err != nil {
		return o, err
	}
	for _, s := range listedStates {
		o.States = append(o.States, views.Count{Label: stateName(s), N: counts[s]})
	}
	snap := h.opts.Stats.Snapshot()
	o.Charts = charts(snap)
	for code, n := range snap.Rejections {
		o.Rejections = append(o.Rejections, views.Count{Label: string(code), N: n})
	}
	sort.Slice(o.Rejections, func(i, j int) bool {
		a, b := o.Rejections[i], o.Rejections[j]
		return a.N > b.N || a.N == b.N && a.Label < b.Label
	})
	o.Facts = h.facts(ctx)
	return o, nil
}

// charts turns the last hour into the overview's four charts.
func charts(s stats.Snapshot) []views.Chart {
	series := func(name, class string, per func(stats.Minute) float64, unit string) views.Series {
		out := views.Series{Name: name, Class: class}
		sum := 0.0
		for _, m := range s.Minutes {
			v := per(m)
			out.Values = append(out.Values, v)
			sum += v
		}
		if unit == "/s" {
			out.Total = fmt.Sprintf("%.2f/s average", sum/float64(len(s.Minutes)))
		} else {
			out.Total = strconv.FormatFloat(sum, 'f', 0, 64) + unit
		}
		return out
	}
	start := s.Minutes[0].Start.UTC().Format("15:04")
	end := s.Minutes[len(s.Minutes)-1].Start.UTC().Format("15:04") + " UTC"
	chart := func(id, title string, ss ...views.Series) views.Chart {
		c := views.Chart{ID: id, Title: title, Series: ss, Start: start, End: end}
		c.Summary = title + " per minute from " + start + " to " + end + ": "
		for i, x := range ss {
			if i > 0 {
				c.Summary += ", "
			}
			c.Summary += x.Name + " " + x.Total
		}
		return c
	}
	return []views.Chart{
		chart("chart-messages", "Messages per second",
			series("accepted", "s1", func(m stats.Minute) float64 { return float64(m.Accepted) / 60 }, "/s"),
			series("rejected", "s4", func(m stats.Minute) float64 { return float64(m.Rejected) / 60 }, "/s")),
		chart("chart-commitments", "Commitments per minute",
			series("commitments", "s2", func(m stats.Minute) float64 { return float64(m.Commitments) }, " in the hour")),
		chart("chart-sessions", "Sessions per minute",
			series("opened", "s1", func(m stats.Minute) float64 { return float64(m.Created) }, ""),
			series("resolved", "s2", func(m stats.Minute) float64 { return float64(m.Resolved) }, ""),
			series("expired", "s3", func(m stats.Minute) float64 { return float64(m.Expired) }, ""),
			series("cancelled", "s4", func(m stats.Minute) float64 { return float64(m.Cancelled) }, "")),
		chart("chart-rejections", "Rejections and duplicates per minute",
			series("rejected", "s4", func(m stats.Minute) float64 { return float64(m.Rejected) }, ""),
			series("duplicates", "s5", func(m stats.Minute) float64 { return float64(m.Duplicates) }, "")),
	}
}

// facts are the runtime figures of the overview.
func (h *Handler) facts(ctx context.Context) []views.KV {
	var out []views.KV
	if h.opts.StoreSize != nil {
		lsm, vlog := h.opts.StoreSize()
		out = append(out, views.KV{Key: "store size", Value: fmt.Sprintf("%s (LSM %s, value log %s)", formatBytes(lsm+vlog), formatBytes(lsm), formatBytes(vlog))})
	}
	if h.opts.StoredEntries != nil {
		out = append(out, views.KV{Key: "log entries written since start", Value: strconv.FormatUint(h.opts.StoredEntries(), 10)})
	}
	served := h.opts.Modes.List()
	builtin := 0
	for _, m := range served {
		if m.Builtin {
			builtin++
		}
	}
	out = append(out, views.KV{Key: "modes serving", Value: fmt.Sprintf("%d (%d built-in, %d uploaded)", len(served), builtin, len(served)-builtin)})
	if bs, err := h.opts.Modes.Bindings(ctx); err == nil {
		digests := map[string]bool{}
		for _, b := range bs {
			digests[b.GetModuleDigest()] = true
		}
		out = append(out, views.KV{Key: "uploaded modules", Value: strconv.Itoa(len(digests))})
	}
	all := h.opts.Policies.List("")
	out = append(out, views.KV{Key: "policy versions", Value: fmt.Sprintf("%d in %d policies", len(all), len(families(all)))})
	return out
}

// eachSession calls fn for every session the view may see that filter
// selects, until fn returns false.
func eachSession(ctx context.Context, v kernel.View, filter kernel.SessionFilter, fn func(*macpv1.SessionMetadata) bool) error {
	token := ""
	for {
		page, next, err := v.ListSessions(ctx, filter, kernel.MaxPageSize, token)
		if err != nil {
			return err
		}
		for _, md := range page {
			if !fn(md) {
				return nil
			}
		}
		if next == "" {
			return nil
		}
		token = next
	}
}

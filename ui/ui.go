package ui

import (
	"context"
	"errors"
	"io/fs"
	"log/slog"
	"net/http"
	"time"

	"github.com/concord-macp/concord/host/access"
	"github.com/concord-macp/concord/host/audit"
	"github.com/concord-macp/concord/host/kernel"
	"github.com/concord-macp/concord/host/modes"
	"github.com/concord-macp/concord/policy"
	macpv1 "github.com/concord-macp/concord/proto/macp/v1"
	"github.com/concord-macp/concord/ui/assets"
	"github.com/concord-macp/concord/ui/login"
	"github.com/concord-macp/concord/ui/stats"
)

// Prefix is where the console is mounted.
const Prefix = "/ui/"

// Options configure the console.
type Options struct {
	Kernel       *kernel.Kernel
	Modes        *modes.Registry
	Policies     *policy.Registry
	PolicyEngine *policy.Engine
	// Stats counts Send outcomes (wire Stats.Observe into
	// kernel.Options.Observe); the console feeds it lifecycle events.
	Stats *stats.Recorder
	// Audit is where the audit page reads; nil reads what the registries
	// and sessions record (RegistryAudit).
	Audit AuditSource
	// Trail, when set, records every change made through the console (who,
	// what, when, how it ended) in the audit trail the API's changes go to.
	Trail *audit.Log
	// StoreSize reports the store's size in bytes (LSM tree, value log).
	StoreSize func() (lsm, vlog int64)
	// StoredEntries reports how many log entries were written since start.
	StoredEntries func() uint64
	// Dev opens the console to the local operator without login (dev auth
	// on loopback only).
	Dev bool
	// Login is the OIDC login; nil without one. Without Dev and Login
	// every page is refused.
	Login *login.Login
	// MaxModuleBytes caps an uploaded mode (modes.DefaultMaxModuleBytes
	// when zero).
	MaxModuleBytes int
	Logger         *slog.Logger
	// Now is the clock (time.Now when nil).
	Now func() time.Time
}

// Handler serves the console. Close it at shutdown: it ends live streams.
type Handler struct {
	opts   Options
	log    *slog.Logger
	now    func() time.Time
	mux    *http.ServeMux
	root   http.Handler
	audit  AuditSource
	ctx    context.Context
	cancel context.CancelFunc
	done   chan struct{}
}

// New builds the console.
func New(opts Options) (*Handler, error) {
	if opts.Kernel == nil || opts.Modes == nil || opts.Policies == nil || opts.PolicyEngine == nil {
		return nil, errors.New("ui: Kernel, Modes, Policies and PolicyEngine are required")
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Stats == nil {
		opts.Stats = stats.New(opts.Now)
	}
	if opts.MaxModuleBytes <= 0 {
		opts.MaxModuleBytes = modes.DefaultMaxModuleBytes
	}
	h := &Handler{opts: opts, log: opts.Logger, now: opts.Now, mux: http.NewServeMux(), audit: opts.Audit, done: make(chan struct{})}
	if h.audit == nil {
		h.audit = RegistryAudit{Kernel: opts.Kernel, Modes: opts.Modes, Policies: opts.Policies}
	}
	h.ctx, h.cancel = context.WithCancel(context.Background())
	h.routes()
	// Forms are refused when a browser says they come from another
	// origin (Sec-Fetch-Site, Origin): the console's CSRF protection.
	csrf := http.NewCrossOriginProtection()
	csrf.SetDenyHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.fail(w, r, http.StatusForbidden, "", "cross-origin form submissions are refused")
	}))
	h.root = csrf.Handler(h.mux)
	go h.watchLifecycle()
	return h, nil
}

// Close ends the live streams and the lifecycle watcher.
func (h *Handler) Close() {
	h.cancel()
	<-h.done
}

// ServeHTTP implements http.Handler.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Header().Set("Referrer-Policy", "same-origin")
	w.Header().Set("X-Frame-Options", "DENY")
	w.Header().Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; frame-ancestors 'none'; form-action 'self' "+h.formActionExtra())
	h.root.ServeHTTP(w, r)
}

// formActionExtra allows the login form's redirect to the issuer.
func (h *Handler) formActionExtra() string {
	if h.opts.Login != nil {
		return h.opts.Login.IssuerOrigin()
	}
	return ""
}

func (h *Handler) routes() {
	static, _ := fs.Sub(assets.Files, ".")
	h.mux.Handle("GET /ui/assets/", http.StripPrefix("/ui/assets/", http.FileServerFS(static)))
	if l := h.opts.Login; l != nil {
		h.mux.HandleFunc("GET /ui/login", l.Start)
		h.mux.HandleFunc("GET /ui/callback", l.Callback)
		h.mux.HandleFunc("POST /ui/logout", h.logout)
	}
	see, change := h.see, h.change
	h.mux.Handle("GET /ui/{$}", see(h.overview))
	h.mux.Handle("GET /ui/events/overview", see(h.overviewEvents))
	h.mux.Handle("GET /ui/sessions", see(h.sessions))
	h.mux.Handle("GET /ui/sessions/events", see(h.sessionsEvents))
	h.mux.Handle("GET /ui/sessions/{id}", see(h.session))
	h.mux.Handle("GET /ui/sessions/{id}/at", see(h.sessionAt))
	h.mux.Handle("GET /ui/sessions/{id}/events", see(h.sessionEvents))
	h.mux.Handle("GET /ui/sessions/{id}/export.json", see(h.sessionExport))
	h.mux.Handle("POST /ui/sessions/{id}/replay", see(h.sessionReplay))
	h.mux.Handle("POST /ui/sessions/{id}/cancel", change(h.sessionCancel))
	h.mux.Handle("GET /ui/modes", see(h.modes))
	h.mux.Handle("POST /ui/modes/upload", change(h.modeUpload))
	h.mux.Handle("GET /ui/modes/retire", change(h.modeRetireConfirm))
	h.mux.Handle("POST /ui/modes/retire", change(h.modeRetire))
	h.mux.Handle("GET /ui/policies", see(h.policies))
	h.mux.Handle("POST /ui/policies/push", see(h.policyPush))
	h.mux.Handle("GET /ui/policies/diff", see(h.policyDiff))
	h.mux.Handle("POST /ui/policies/unregister", change(h.policyUnregister))
	h.mux.Handle("GET /ui/policies/{id...}", see(h.policyVersion))
	h.mux.Handle("GET /ui/audit", see(h.auditPage))
	h.mux.HandleFunc("/ui/", func(w http.ResponseWriter, r *http.Request) {
		if _, _, err := h.caller(r); err != nil {
			h.refuse(w, r, err)
			return
		}
		h.fail(w, r, http.StatusNotFound, "", "there is no page at "+r.URL.Path)
	})
}

// watchLifecycle feeds the overview's counters with session lifecycle
// events until Close.
func (h *Handler) watchLifecycle() {
	defer close(h.done)
	view := h.opts.Kernel.As(access.Operator("concord-ui"))
	for h.ctx.Err() == nil {
		began := h.now().UnixMilli()
		w := view.WatchSessions(h.ctx, kernel.SessionFilter{})
		for {
			ev, err := w.Next(h.ctx)
			if err != nil {
				break // lagging: start a new watch; closed: the loop ends
			}
			if ev.GetEventType() == macpv1.SessionLifecycleEvent_EVENT_TYPE_CREATED && ev.GetSession().GetStartedAtUnixMs() < began {
				continue // the initial listing, not news
			}
			h.opts.Stats.Lifecycle(ev)
		}
		w.Close()
	}
}

package ui

import (
	"bytes"
	"errors"
	"net/http"
	"net/url"

	"github.com/a-h/templ"

	"github.com/concord-macp/concord/host/access"
	"github.com/concord-macp/concord/macperr"
	"github.com/concord-macp/concord/ui/login"
	"github.com/concord-macp/concord/ui/views"
)

// DevOperator is the identity the console acts as with dev auth.
const DevOperator = "operator"

// errNoLogin reports a configuration without dev auth or OIDC.
var errNoLogin = errors.New("the admin console needs --dev on loopback or an OIDC issuer (--ui-oidc-issuer)")

// caller returns who is asking and whether they logged in through OIDC.
func (h *Handler) caller(r *http.Request) (access.Caller, bool, error) {
	switch {
	case h.opts.Dev:
		return access.Operator(DevOperator), false, nil
	case h.opts.Login != nil:
		c, err := h.opts.Login.Caller(r)
		return c, true, err
	default:
		return access.Caller{}, false, errNoLogin
	}
}

// mayView is the console's rule: Admin sees and changes, an Observer sees.
func mayView(c access.Caller) bool   { return c.Admin || c.Observer }
func mayChange(c access.Caller) bool { return c.Admin }

// page is one request's caller and the Page frame for it.
type page struct {
	caller access.Caller
	frame  views.Page
}

type pageHandler func(w http.ResponseWriter, r *http.Request, p page)

// see serves a page to callers who may view.
func (h *Handler) see(fn pageHandler) http.Handler { return h.guard(fn, false) }

// change serves a page or form to callers who may change things.
func (h *Handler) change(fn pageHandler) http.Handler { return h.guard(fn, true) }

func (h *Handler) guard(fn pageHandler, changes bool) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, loggedIn, err := h.caller(r)
		if err != nil {
			h.refuse(w, r, err)
			return
		}
		p := page{caller: c, frame: views.Page{User: c.ID, Role: role(c), CanChange: mayChange(c), LoggedIn: loggedIn}}
		if !mayView(c) {
			h.fail(w, r, http.StatusForbidden, string(macperr.Forbidden), c.ID+" has neither the admin nor the observer capability")
			return
		}
		if changes && !mayChange(c) {
			h.fail(w, r, http.StatusForbidden, string(macperr.Forbidden), c.ID+" is a viewer: viewers may look but not change anything")
			return
		}
		fn(w, r, p)
	})
}

func role(c access.Caller) string {
	switch {
	case c.Admin:
		return "admin"
	case c.Observer:
		return "viewer"
	default:
		return "no access"
	}
}

// refuse answers a request without a usable login: a page load goes to
// the login, anything else is 401.
func (h *Handler) refuse(w http.ResponseWriter, r *http.Request, err error) {
	if errors.Is(err, errNoLogin) {
		h.fail(w, r, http.StatusForbidden, string(macperr.Unauthenticated), err.Error())
		return
	}
	if r.Method == http.MethodGet && r.Header.Get("Accept") != "text/event-stream" && errors.Is(err, login.ErrNoSession) {
		http.Redirect(w, r, "/ui/login?next="+url.QueryEscape(r.URL.RequestURI()), http.StatusSeeOther)
		return
	}
	h.fail(w, r, http.StatusUnauthorized, string(macperr.Unauthenticated), "log in first: "+err.Error())
}

func (h *Handler) logout(w http.ResponseWriter, r *http.Request) {
	h.opts.Login.Logout(w)
	h.render(w, r, http.StatusOK, views.LoggedOut(views.Page{Title: "Logged out"}))
}

// fail renders an error page.
func (h *Handler) fail(w http.ResponseWriter, r *http.Request, status int, code, msg string) {
	title := http.StatusText(status)
	h.render(w, r, status, views.Error(views.ErrorPage{Page: views.Page{Title: title}, Status: status, Code: code, Message: msg}))
}

// failErr renders err as an error page with its MACP code and the HTTP
// status that goes with it; unexpected errors are logged and shown as
// internal errors.
func (h *Handler) failErr(w http.ResponseWriter, r *http.Request, err error) {
	e := macperr.As(err)
	status := statusOf(e.Code)
	if status == http.StatusInternalServerError {
		h.log.Error("admin console", "path", r.URL.Path, "err", err)
	}
	h.fail(w, r, status, string(e.Code), e.Message)
}

func statusOf(c macperr.Code) int {
	switch c {
	case macperr.SessionNotFound, macperr.UnknownPolicyVersion, macperr.ModeNotSupported:
		return http.StatusNotFound
	case macperr.Forbidden:
		return http.StatusForbidden
	case macperr.Unauthenticated:
		return http.StatusUnauthorized
	case macperr.InvalidEnvelope, macperr.InvalidSessionID, macperr.InvalidPolicyDefinition:
		return http.StatusBadRequest
	default:
		return http.StatusInternalServerError
	}
}

// render writes a component with status; it renders to a buffer first so
// a rendering error never leaves half a page.
func (h *Handler) render(w http.ResponseWriter, r *http.Request, status int, c templ.Component) {
	var buf bytes.Buffer
	if err := c.Render(r.Context(), &buf); err != nil {
		h.log.Error("admin console: render", "path", r.URL.Path, "err", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}

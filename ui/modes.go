package ui

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"

	"google.golang.org/protobuf/encoding/protojson"

	"github.com/concord-macp/concord/host/kernel"
	"github.com/concord-macp/concord/host/modes"
	"github.com/concord-macp/concord/macperr"
	storev1 "github.com/concord-macp/concord/proto/concord/store/v1"
	macpv1 "github.com/concord-macp/concord/proto/macp/v1"
	"github.com/concord-macp/concord/ui/views"
)

func (h *Handler) modes(w http.ResponseWriter, r *http.Request, p page) {
	m, err := h.modesModel(r.Context(), p)
	if err != nil {
		h.failErr(w, r, err)
		return
	}
	h.render(w, r, http.StatusOK, views.ModesPage(m))
}

func (h *Handler) modesModel(ctx context.Context, p page) (views.Modes, error) {
	p.frame.Title, p.frame.Nav = "Modes", "modes"
	m := views.Modes{Page: p.frame, MaxBytes: formatBytes(int64(h.opts.MaxModuleBytes))}
	pinned, err := h.pinnedOpen(ctx, p)
	if err != nil {
		return m, err
	}
	bindings, err := h.opts.Modes.Bindings(ctx)
	if err != nil {
		return m, macperr.Wrap(macperr.InternalError, err, "could not read the mode bindings")
	}
	byName := map[string]*storev1.ModeBinding{}
	for _, b := range bindings {
		byName[b.GetMode()] = b
	}
	for _, in := range h.opts.Modes.List() {
		row := modeRow(in.Name, in.Mode.Descriptor(), in.Mode.Digest(), pinned)
		row.Standard, row.Serving = in.Standard, true
		row.Kind = "uploaded"
		if in.Builtin {
			row.Kind = "built-in"
		} else {
			row.CanRetire = !in.Standard
			if b := byName[in.Name]; b != nil {
				row.UploadedAt = formatMs(b.GetRegisteredAtUnixMs())
				row.UploadedBy = "not recorded (no audit record of the upload)"
			}
		}
		m.Modes = append(m.Modes, row)
	}
	for _, b := range bindings {
		if b.GetActive() {
			continue
		}
		mod, ok := h.opts.Modes.Pinned(b.GetModuleDigest())
		if !ok {
			continue
		}
		row := modeRow(b.GetMode(), mod.Descriptor(), b.GetModuleDigest(), pinned)
		row.Kind = "retired upload"
		row.UploadedAt = "retired " + formatMs(b.GetRegisteredAtUnixMs())
		row.UploadedBy = "not recorded"
		m.Unserved = append(m.Unserved, row)
	}
	return m, nil
}

func modeRow(name string, d *macpv1.ModeDescriptor, digest string, pinned map[string][]string) views.ModeRow {
	desc, _ := protojson.MarshalOptions{UseProtoNames: true, Multiline: true}.Marshal(d)
	return views.ModeRow{
		Name: name, Version: d.GetModeVersion(), Title: d.GetTitle(), Description: d.GetDescription(), Digest: digest,
		MessageTypes: strings.Join(d.GetMessageTypes(), ", "), Terminal: strings.Join(d.GetTerminalMessageTypes(), ", "),
		Descriptor: string(desc), PinnedOpen: pinned[digest],
	}
}

// pinnedOpen maps module digests to the open (or suspended) sessions
// pinned to them.
func (h *Handler) pinnedOpen(ctx context.Context, p page) (map[string][]string, error) {
	view := h.opts.Kernel.As(p.caller)
	out := map[string][]string{}
	var ids []string
	err := eachSession(ctx, view, kernel.SessionFilter{States: []macpv1.SessionState{macpv1.SessionState_SESSION_STATE_OPEN, macpv1.SessionState_SESSION_STATE_SUSPENDED}},
		func(md *macpv1.SessionMetadata) bool { ids = append(ids, md.GetSessionId()); return true })
	if err != nil {
		return nil, err
	}
	for _, id := range ids {
		in, err := view.Inspect(ctx, id)
		if err != nil {
			continue // ended or gone meanwhile
		}
		d := in.Session.GetModuleDigest()
		out[d] = append(out[d], id)
	}
	for _, v := range out {
		sort.Strings(v)
	}
	return out, nil
}

func (h *Handler) modeUpload(w http.ResponseWriter, r *http.Request, p page) {
	r.Body = http.MaxBytesReader(w, r.Body, int64(h.opts.MaxModuleBytes)+64<<10)
	refuse := func(status int, msg string) {
		m, err := h.modesModel(r.Context(), p)
		if err != nil {
			h.failErr(w, r, err)
			return
		}
		m.UploadError = msg
		h.render(w, r, status, views.ModesPage(m))
	}
	if err := r.ParseMultipartForm(1 << 20); err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			refuse(http.StatusRequestEntityTooLarge, fmt.Sprintf("The module is larger than the limit of %s.", formatBytes(int64(h.opts.MaxModuleBytes))))
			return
		}
		refuse(http.StatusBadRequest, "The upload is not a multipart form with a module file.")
		return
	}
	defer func() { _ = r.MultipartForm.RemoveAll() }()
	file, _, err := r.FormFile("module")
	if err != nil {
		refuse(http.StatusBadRequest, "Choose a .wasm file to upload.")
		return
	}
	defer func() { _ = file.Close() }()
	wasm, err := io.ReadAll(io.LimitReader(file, int64(h.opts.MaxModuleBytes)+1))
	if err != nil {
		refuse(http.StatusBadRequest, "The module could not be read.")
		return
	}
	mod, err := h.opts.Modes.Upload(r.Context(), wasm)
	target := ""
	if err == nil {
		target = mod.Descriptor().GetMode() + " " + mod.Digest()
	}
	h.record(r.Context(), p.caller, actUploadMode, target, err)
	if err != nil {
		if errors.Is(err, modes.ErrRefused) {
			refuse(http.StatusBadRequest, "Refused: "+strings.TrimPrefix(err.Error(), "refused: "))
			return
		}
		h.failErr(w, r, err)
		return
	}
	h.log.Info("admin console: mode uploaded", "by", p.caller.ID, "mode", mod.Descriptor().GetMode(), "digest", mod.Digest())
	m, err := h.modesModel(r.Context(), p)
	if err != nil {
		h.failErr(w, r, err)
		return
	}
	row := modeRow(mod.Descriptor().GetMode(), mod.Descriptor(), mod.Digest(), nil)
	m.Uploaded = &row
	h.render(w, r, http.StatusOK, views.ModesPage(m))
}

// retirable returns the uploaded mode name serves, or why it cannot be
// retired.
func (h *Handler) retirable(name string) (modes.Info, error) {
	if name == "" || len(name) > maxFieldLen {
		return modes.Info{}, macperr.New(macperr.ModeNotSupported, "name a mode to retire")
	}
	for _, in := range h.opts.Modes.List() {
		if in.Name == name {
			if in.Builtin || in.Standard {
				return in, macperr.New(macperr.Forbidden, "%s is a built-in or standards-track mode and cannot be retired", name)
			}
			return in, nil
		}
	}
	return modes.Info{}, macperr.New(macperr.ModeNotSupported, "mode %.128q is not registered", name)
}

func (h *Handler) modeRetireConfirm(w http.ResponseWriter, r *http.Request, p page) {
	in, err := h.retirable(r.URL.Query().Get("mode"))
	if err != nil {
		h.failErr(w, r, err)
		return
	}
	pinned, err := h.pinnedOpen(r.Context(), p)
	if err != nil {
		h.failErr(w, r, err)
		return
	}
	p.frame.Title, p.frame.Nav = "Retire "+in.Name, "modes"
	h.render(w, r, http.StatusOK, views.RetireConfirmPage(views.RetireConfirm{Page: p.frame, Mode: in.Name, Digest: in.Mode.Digest(), PinnedOpen: pinned[in.Mode.Digest()]}))
}

func (h *Handler) modeRetire(w http.ResponseWriter, r *http.Request, p page) {
	name, err := field(r, "mode")
	if err != nil {
		h.fail(w, r, http.StatusBadRequest, "", err.Error())
		return
	}
	if r.FormValue("confirm") != "yes" {
		http.Redirect(w, r, "/ui/modes/retire?mode="+name, http.StatusSeeOther)
		return
	}
	if _, err := h.retirable(name); err != nil {
		h.failErr(w, r, err)
		return
	}
	err = h.opts.Modes.Unregister(r.Context(), name)
	h.record(r.Context(), p.caller, actRetireMode, name, err)
	if err != nil {
		if errors.Is(err, modes.ErrRefused) {
			h.fail(w, r, http.StatusConflict, "", err.Error())
			return
		}
		h.failErr(w, r, err)
		return
	}
	h.log.Info("admin console: mode retired", "by", p.caller.ID, "mode", name)
	m, err := h.modesModel(r.Context(), p)
	if err != nil {
		h.failErr(w, r, err)
		return
	}
	m.Notice = views.Notice{Kind: "ok", Text: "Retired " + name + ": it no longer serves new sessions."}
	h.render(w, r, http.StatusOK, views.ModesPage(m))
}

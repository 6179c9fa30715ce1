package ui

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"time"

	"github.com/a-h/templ"

	"github.com/concord-macp/concord/ui/views"
)

// stream is one server-sent event stream to a browser.
type stream struct {
	w  http.ResponseWriter
	rc *http.ResponseController
}

// liveMessage is what live.js applies: op "replace", "append" or "upsert"
// on the element with id (inserted into "into" when upserting a new one).
type liveMessage struct {
	Op   string `json:"op"`
	ID   string `json:"id"`
	Into string `json:"into,omitempty"`
	HTML string `json:"html"`
}

// startStream answers with an event stream.
func startStream(w http.ResponseWriter) *stream {
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	s := &stream{w: w, rc: http.NewResponseController(w)}
	_ = s.rc.Flush()
	return s
}

// send renders c and sends it as one message.
func (s *stream) send(ctx context.Context, op, id, into string, c templ.Component) error {
	var buf bytes.Buffer
	if err := c.Render(ctx, &buf); err != nil {
		return fmt.Errorf("render live update: %w", err)
	}
	b, err := json.Marshal(liveMessage{Op: op, ID: id, Into: into, HTML: buf.String()})
	if err != nil {
		return err
	}
	if _, err := fmt.Fprintf(s.w, "data: %s\n\n", b); err != nil {
		return err
	}
	return s.rc.Flush()
}

// end tells the script that nothing more will come.
func (s *stream) end() {
	_, _ = fmt.Fprint(s.w, "event: end\ndata: {}\n\n")
	_ = s.rc.Flush()
}

// streamContext ends with the request or when the console closes.
func (h *Handler) streamContext(r *http.Request) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(r.Context())
	stop := context.AfterFunc(h.ctx, cancel)
	return ctx, func() { stop(); cancel() }
}

// overviewRefresh is how often the live overview is re-rendered.
const overviewRefresh = 5 * time.Second

func (h *Handler) overviewEvents(w http.ResponseWriter, r *http.Request, p page) {
	ctx, cancel := h.streamContext(r)
	defer cancel()
	s := startStream(w)
	t := time.NewTicker(overviewRefresh)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		o, err := h.overviewModel(ctx, p)
		if err != nil {
			return
		}
		if err := s.send(ctx, "replace", "overview-body", "", views.OverviewBody(o)); err != nil {
			return
		}
	}
}

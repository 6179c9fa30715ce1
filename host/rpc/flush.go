package rpc

import (
	"context"
	"net/http"

	"github.com/concord-macp/concord/proto/macp/v1/macpv1connect"
)

// connect-go flushes the response after every message of a stream, which
// on HTTP/2 costs a round trip to the connection's writer and usually a
// write system call per message. A session streamed to many subscribers
// multiplies that by every accepted envelope. flushHolder lets the
// StreamSession handler hold those flushes back while more envelopes are
// already waiting to be sent, so that a burst leaves in one write; the last
// message of a burst is flushed at once, so nothing is ever delayed.

// flushHolder is a ResponseWriter whose Flush does nothing while held.
// hold is only touched under the streamWriter's lock, which every send and
// flush of the stream takes.
type flushHolder struct {
	http.ResponseWriter
	flusher http.Flusher
	hold    bool
}

// Flush flushes unless held.
func (w *flushHolder) Flush() {
	if !w.hold {
		w.flusher.Flush()
	}
}

// Unwrap exposes the underlying writer to http.ResponseController.
func (w *flushHolder) Unwrap() http.ResponseWriter { return w.ResponseWriter }

type flushHolderKey struct{}

// withFlushHolder gives StreamSession calls a flushHolder, reachable from
// the handler's context through heldFlushes.
func withFlushHolder(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if f, ok := w.(http.Flusher); ok && r.URL.Path == macpv1connect.MACPRuntimeServiceStreamSessionProcedure {
			fh := &flushHolder{ResponseWriter: w, flusher: f}
			r = r.WithContext(context.WithValue(r.Context(), flushHolderKey{}, fh))
			w = fh
		}
		h.ServeHTTP(w, r)
	})
}

// heldFlushes returns the call's flushHolder, or nil when it has none.
func heldFlushes(ctx context.Context) *flushHolder {
	fh, _ := ctx.Value(flushHolderKey{}).(*flushHolder)
	return fh
}

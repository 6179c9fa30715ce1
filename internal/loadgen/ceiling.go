package loadgen

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"connectrpc.com/connect"

	macpv1 "github.com/concord-macp/concord/proto/macp/v1"
	"github.com/concord-macp/concord/proto/macp/v1/macpv1connect"
)

// Ceiling is the transport ceiling: a bare connect-go MACPRuntimeService
// handler, served over the same HTTP/2 stack as Concord, that answers
// every Send with a canned positive Ack and does nothing else. Driving it
// with the same clients as the server gives the best throughput the
// clients and transport allow on this machine.
type Ceiling struct {
	// URL is where it serves, e.g. http://127.0.0.1:41234.
	URL  string
	srv  *http.Server
	done chan error
}

// ceilingHandler answers Initialize and Send; every other RPC is
// unimplemented.
type ceilingHandler struct {
	macpv1connect.UnimplementedMACPRuntimeServiceHandler
}

func (ceilingHandler) Initialize(context.Context, *connect.Request[macpv1.InitializeRequest]) (*connect.Response[macpv1.InitializeResponse], error) {
	return connect.NewResponse(&macpv1.InitializeResponse{SelectedProtocolVersion: "1.0"}), nil
}

func (ceilingHandler) Send(_ context.Context, req *connect.Request[macpv1.SendRequest]) (*connect.Response[macpv1.SendResponse], error) {
	env := req.Msg.GetEnvelope()
	return connect.NewResponse(&macpv1.SendResponse{Ack: &macpv1.Ack{
		Ok: true, MessageId: env.GetMessageId(), SessionId: env.GetSessionId(),
		SessionState: macpv1.SessionState_SESSION_STATE_OPEN,
	}}), nil
}

// StartCeiling serves the ceiling handler on a random loopback port.
func StartCeiling() (*Ceiling, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("ceiling: listen: %w", err)
	}
	mux := http.NewServeMux()
	mux.Handle(macpv1connect.NewMACPRuntimeServiceHandler(ceilingHandler{}))
	p := new(http.Protocols)
	p.SetHTTP1(true)
	p.SetUnencryptedHTTP2(true)
	c := &Ceiling{
		URL:  "http://" + ln.Addr().String(),
		srv:  &http.Server{Handler: mux, Protocols: p, ReadHeaderTimeout: 10 * time.Second},
		done: make(chan error, 1),
	}
	go func() { c.done <- c.srv.Serve(ln) }()
	return c, nil
}

// Close stops the ceiling server.
func (c *Ceiling) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := c.srv.Shutdown(ctx)
	if serr := <-c.done; !errors.Is(serr, http.ErrServerClosed) {
		err = errors.Join(err, serr)
	}
	return err
}

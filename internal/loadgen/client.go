package loadgen

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net/http"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/proto"

	"github.com/concord-macp/concord/proto/concord/admin/v1/adminv1connect"
	macpv1 "github.com/concord-macp/concord/proto/macp/v1"
	"github.com/concord-macp/concord/proto/macp/v1/macpv1connect"
)

// Target is the server the agents talk to and how they authenticate.
type Target struct {
	// URL is the server's base URL, e.g. http://127.0.0.1:50051.
	URL string
	// Token, when set, is the bearer token of every agent: they all act as
	// the one identity it stands for, which Identity then names.
	Token string
	// Identity is the token's identity with Token; without Token (dev
	// authentication, where the bearer is the identity) agent i acts as
	// Identity-i. Empty means "bench".
	Identity string
}

func (t Target) prefix() string {
	if t.Identity == "" {
		return "bench"
	}
	return t.Identity
}

// SharedIdentity reports whether every agent acts as one identity.
func (t Target) SharedIdentity() bool { return t.Token != "" }

// Name returns the identity that role (an agent's name such as "7" or
// "7.peer") acts as.
func (t Target) Name(role string) string {
	if t.SharedIdentity() {
		return t.Identity
	}
	return t.prefix() + "-" + role
}

// bearer returns the credential name presents.
func (t Target) bearer(name string) string {
	if t.Token != "" {
		return t.Token
	}
	return name
}

// newHTTPClient returns a client with its own transport, so each agent
// has its own connection as independent agents would: HTTP/2 over TLS for
// https URLs, HTTP/2 without TLS (h2c, as gRPC needs) for http ones.
func newHTTPClient() *http.Client {
	p := new(http.Protocols)
	p.SetHTTP2(true)
	p.SetUnencryptedHTTP2(true)
	return &http.Client{Transport: &http.Transport{Protocols: p}, Timeout: time.Minute}
}

// conn is one agent's gRPC connection to a server.
type conn struct {
	target Target
	rpc    macpv1connect.MACPRuntimeServiceClient
	http   *http.Client
}

func dial(t Target) *conn {
	h := newHTTPClient()
	return &conn{target: t, http: h, rpc: macpv1connect.NewMACPRuntimeServiceClient(h, t.URL, connect.WithGRPC())}
}

// close drops the connection's idle sockets.
func (c *conn) close() { c.http.CloseIdleConnections() }

// admin returns an AdminService client on the same connection.
func (c *conn) admin() adminv1connect.AdminServiceClient {
	return adminv1connect.NewAdminServiceClient(c.http, c.target.URL, connect.WithGRPC())
}

// authorize sets the credential of identity name on a request.
func (c *conn) authorize(h http.Header, name string) {
	h.Set("Authorization", "Bearer "+c.target.bearer(name))
}

// send sends env as identity name and returns the call's duration. A
// transport error and a negative Ack are both errors.
func (c *conn) send(ctx context.Context, name string, env *macpv1.Envelope) (time.Duration, error) {
	req := connect.NewRequest(&macpv1.SendRequest{Envelope: env})
	c.authorize(req.Header(), name)
	began := time.Now()
	res, err := c.rpc.Send(ctx, req)
	took := time.Since(began)
	if err != nil {
		return took, fmt.Errorf("%s %s: %w", env.GetMessageType(), env.GetMessageId(), err)
	}
	if ack := res.Msg.GetAck(); !ack.GetOk() {
		return took, fmt.Errorf("%s %s rejected: %s %s", env.GetMessageType(), env.GetMessageId(), ack.GetError().GetCode(), ack.GetError().GetMessage())
	}
	return took, nil
}

// initialize calls Initialize, the call every SDK starts with.
func (c *conn) initialize(ctx context.Context) error {
	_, err := c.rpc.Initialize(ctx, connect.NewRequest(&macpv1.InitializeRequest{SupportedProtocolVersions: []string{"1.0"}}))
	return err
}

// session returns a session's metadata as identity name sees it.
func (c *conn) session(ctx context.Context, name, sid string) (*macpv1.SessionMetadata, error) {
	req := connect.NewRequest(&macpv1.GetSessionRequest{SessionId: sid})
	c.authorize(req.Header(), name)
	res, err := c.rpc.GetSession(ctx, req)
	if err != nil {
		return nil, fmt.Errorf("get session %s: %w", sid, err)
	}
	return res.Msg.GetMetadata(), nil
}

// envelope builds a MACP 1.0 envelope from name carrying payload, which
// may be nil or already encoded bytes.
func envelope(mode, messageType, messageID, sessionID, sender string, payload any) *macpv1.Envelope {
	env := &macpv1.Envelope{
		MacpVersion:     "1.0",
		Mode:            mode,
		MessageType:     messageType,
		MessageId:       messageID,
		SessionId:       sessionID,
		Sender:          sender,
		TimestampUnixMs: time.Now().UnixMilli(),
	}
	switch p := payload.(type) {
	case nil:
	case []byte:
		env.Payload = p
	case proto.Message:
		b, err := proto.Marshal(p)
		if err != nil { // only a broken generated type fails to marshal
			panic(fmt.Sprintf("loadgen: marshal %T: %v", p, err))
		}
		env.Payload = b
	default:
		panic(fmt.Sprintf("loadgen: payload of type %T", payload))
	}
	return env
}

// newSessionID returns a fresh lowercase UUID v4, the session id format
// MACP requires.
func newSessionID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

// errorCounter keeps the number of errors and the first one.
type errorCounter struct {
	n     int64
	first error
}

func (e *errorCounter) add(err error) {
	if e.n == 0 {
		e.first = err
	}
	e.n++
}

// firstErrorText is the first error's text, "" for none.
func firstErrorText(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// errStopped is returned when the scenario's context ends it.
var errStopped = errors.New("stopped")

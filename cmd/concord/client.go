package main

import (
	"flag"
	"net/http"
	"os"
	"time"

	"connectrpc.com/connect"

	"github.com/concord-macp/concord/host/auth"
	"github.com/concord-macp/concord/proto/concord/admin/v1/adminv1connect"
	"github.com/concord-macp/concord/proto/macp/v1/macpv1connect"
)

// clientFlags are the flags every client subcommand shares.
type clientFlags struct {
	server, identity string
}

func (c *clientFlags) register(fs *flag.FlagSet) {
	def := os.Getenv("CONCORD_SERVER")
	if def == "" {
		def = "http://127.0.0.1:50051"
	}
	fs.StringVar(&c.server, "server", def, "Concord server URL [CONCORD_SERVER]")
	fs.StringVar(&c.identity, "as", os.Getenv("CONCORD_IDENTITY"), "identity to authenticate as (bearer token) [CONCORD_IDENTITY]")
}

func (c *clientFlags) httpClient() *http.Client {
	p := new(http.Protocols)
	p.SetHTTP1(true)
	p.SetUnencryptedHTTP2(true)
	return &http.Client{Transport: &http.Transport{Protocols: p}, Timeout: 2 * time.Minute}
}

func (c *clientFlags) options() []connect.ClientOption {
	return []connect.ClientOption{connect.WithInterceptors(auth.Bearer(c.identity))}
}

func (c *clientFlags) admin() adminv1connect.AdminServiceClient {
	return adminv1connect.NewAdminServiceClient(c.httpClient(), c.server, c.options()...)
}

// adminStream is admin for calls that stream until the user stops them.
func (c *clientFlags) adminStream() adminv1connect.AdminServiceClient {
	return adminv1connect.NewAdminServiceClient(c.streamingClient(), c.server, c.options()...)
}

func (c *clientFlags) macp() macpv1connect.MACPRuntimeServiceClient {
	return macpv1connect.NewMACPRuntimeServiceClient(c.streamingClient(), c.server, c.options()...)
}

// streamingClient is httpClient without the overall timeout, for calls
// that stream for as long as the user watches.
func (c *clientFlags) streamingClient() *http.Client {
	h := c.httpClient()
	h.Timeout = 0
	return h
}

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
	server, identity, token string
}

func (c *clientFlags) register(fs *flag.FlagSet) {
	def := os.Getenv("CONCORD_SERVER")
	if def == "" {
		def = "http://127.0.0.1:50051"
	}
	fs.StringVar(&c.server, "server", def, "Concord server URL; https:// trusts the system CAs or those in SSL_CERT_FILE [CONCORD_SERVER]")
	c.registerCredentials(fs)
}

// registerCredentials adds --token and --as.
func (c *clientFlags) registerCredentials(fs *flag.FlagSet) {
	fs.StringVar(&c.token, "token", os.Getenv("CONCORD_TOKEN"), "bearer token to authenticate with (a tokens-file token or a JWT); wins over --as [CONCORD_TOKEN]")
	fs.StringVar(&c.identity, "as", os.Getenv("CONCORD_IDENTITY"), "identity to act as on a dev-auth server (sent as the bearer token) [CONCORD_IDENTITY]")
}

// bearer is the credential presented: the token, else the dev identity.
func (c *clientFlags) bearer() string {
	if c.token != "" {
		return c.token
	}
	return c.identity
}

// clientHTTP is the HTTP client of every client subcommand: HTTP/2 over
// TLS for https:// servers, h2c or HTTP/1.1 for http:// ones.
func clientHTTP(timeout time.Duration) *http.Client {
	p := new(http.Protocols)
	p.SetHTTP1(true)
	p.SetHTTP2(true)
	p.SetUnencryptedHTTP2(true)
	return &http.Client{Transport: &http.Transport{Protocols: p}, Timeout: timeout}
}

func (c *clientFlags) httpClient() *http.Client { return clientHTTP(2 * time.Minute) }

func (c *clientFlags) options() []connect.ClientOption {
	return []connect.ClientOption{connect.WithInterceptors(auth.Bearer(c.bearer()))}
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

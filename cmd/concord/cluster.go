package main

import (
	"errors"
	"flag"
	"os"
	"strings"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/concord-macp/concord/host/cluster"
)

// clusterFlags are the flags that make `concord serve` one node of a
// cluster on NATS JetStream.
type clusterFlags struct {
	nats, creds, listen, peers, name string
	embedded                         bool
	replicas                         int
	leaseTTL                         time.Duration
}

func (c *clusterFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&c.nats, "nats", "", "join the NATS cluster at these comma-separated URLs (nats://host:4222,…): sessions and registries live in its JetStream")
	fs.StringVar(&c.creds, "nats-creds", "", "NATS credentials file for --nats")
	fs.BoolVar(&c.embedded, "cluster-embedded", false, "run a NATS server with JetStream inside this process and form a cluster with --cluster-peers")
	fs.StringVar(&c.listen, "cluster-listen", "127.0.0.1:6222", "route address of the embedded NATS server (--cluster-embedded)")
	fs.StringVar(&c.peers, "cluster-peers", "", "comma-separated route addresses of the other nodes' embedded NATS servers")
	fs.StringVar(&c.name, "node-name", "", "this node's unique, stable name in the cluster (default: the host name)")
	fs.IntVar(&c.replicas, "cluster-replicas", 0, "replicas of the shared streams (default 3; 1 for an embedded node without peers)")
	fs.DurationVar(&c.leaseTTL, "lease-ttl", cluster.DefaultLeaseTTL, "how long a session's owner may go silent before another node takes the session over")
}

// clusterEnv lists the environment variables of the cluster flags.
var clusterEnv = map[string][]string{
	"nats":             {"CONCORD_NATS"},
	"nats-creds":       {"CONCORD_NATS_CREDS"},
	"cluster-embedded": {"CONCORD_CLUSTER_EMBEDDED"},
	"cluster-listen":   {"CONCORD_CLUSTER_LISTEN"},
	"cluster-peers":    {"CONCORD_CLUSTER_PEERS"},
	"node-name":        {"CONCORD_NODE_NAME"},
	"cluster-replicas": {"CONCORD_CLUSTER_REPLICAS"},
	"lease-ttl":        {"CONCORD_LEASE_TTL"},
}

// config returns the cluster configuration, or nil for a single node.
func (c *clusterFlags) config() (*cluster.Config, error) {
	switch {
	case c.nats == "" && !c.embedded:
		if c.peers != "" {
			return nil, errors.New("--cluster-peers needs --cluster-embedded")
		}
		return nil, nil
	case c.nats != "" && c.embedded:
		return nil, errors.New("--nats joins an existing NATS cluster, --cluster-embedded runs one: choose one")
	}
	name := c.name
	if name == "" {
		host, err := os.Hostname()
		if err != nil {
			return nil, errors.New("--node-name is required: the host name is unknown")
		}
		name = strings.Map(func(r rune) rune {
			if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' {
				return r
			}
			return '-'
		}, host)
	}
	cfg := &cluster.Config{Name: name, Replicas: c.replicas, LeaseTTL: c.leaseTTL}
	if c.embedded {
		cfg.Embedded = &cluster.Embedded{Listen: c.listen, Peers: splitList(c.peers)}
	} else {
		cfg.URLs = splitList(c.nats)
		if c.creds != "" {
			cfg.NATSOptions = append(cfg.NATSOptions, nats.UserCredentials(c.creds))
		}
	}
	return cfg, nil
}

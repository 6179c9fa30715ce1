package cluster_test

import (
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/concord-macp/concord/host/cluster"
	"github.com/concord-macp/concord/host/server"
	"github.com/concord-macp/concord/internal/natstest"
	"github.com/concord-macp/concord/internal/servertest"
)

// BenchmarkDurableSends measures acknowledged (durable) Sends per second
// of one node on Badger, one node on JetStream (R1, embedded NATS), and a
// three-node cluster (R3, embedded NATS, each client sending to the node
// that owns its session), side by side in one run. Every Send is a
// Proposal over gRPC from one of 32 clients, each on its own session.
//
//	go test -run '^$' -bench DurableSends -benchtime 2000x ./host/cluster/
func BenchmarkDurableSends(b *testing.B) {
	b.Run("badger", func(b *testing.B) {
		srv := servertest.Start(b, server.Config{})
		benchSends(b, []*servertest.Server{srv})
	})
	b.Run("jetstream-R1", func(b *testing.B) {
		srv := servertest.Start(b, server.Config{Logger: natstest.Logger(b), Cluster: &cluster.Config{
			Name: "solo", Embedded: &cluster.Embedded{Listen: natstest.FreeAddrs(b, 1)[0]}, Replicas: 1,
		}})
		benchSends(b, []*servertest.Server{srv})
	})
	b.Run("cluster-R3", func(b *testing.B) {
		routes := natstest.FreeAddrs(b, 3)
		nodes := make([]*servertest.Server, 3)
		var wg sync.WaitGroup
		for i := range nodes {
			wg.Go(func() {
				nodes[i] = servertest.Start(b, server.Config{Logger: natstest.Logger(b), Cluster: &cluster.Config{
					Name: fmt.Sprintf("b%d", i+1), Embedded: &cluster.Embedded{Listen: routes[i], Peers: routes},
				}})
			})
		}
		wg.Wait()
		benchSends(b, nodes)
	})
}

func benchSends(b *testing.B, nodes []*servertest.Server) {
	const clients = 32
	sids := make([]string, clients)
	for i := range sids {
		sids[i] = servertest.NewSessionID()
		if ack, err := send(nodes[i%len(nodes)], "alice", servertest.Envelope(decisionMode, "SessionStart", "start", sids[i], startPayload())); err != nil || !ack.GetOk() {
			b.Fatalf("start: %v %v", err, ack.GetError())
		}
	}
	var next atomic.Int64
	b.ResetTimer()
	start := time.Now()
	var wg sync.WaitGroup
	for i := range clients {
		wg.Go(func() {
			n := nodes[i%len(nodes)] // the node that started, and owns, the session
			for k := next.Add(1); k <= int64(b.N); k = next.Add(1) {
				ack, err := send(n, "bob", proposal(sids[i], fmt.Sprintf("b-%d", k)))
				if err != nil || !ack.GetOk() {
					b.Errorf("send: %v %v", err, ack.GetError())
					return
				}
			}
		})
	}
	wg.Wait()
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "sends/s")
}

// BenchmarkFailover measures how long a session is not writable when its
// owner crashes: 20 times, a fresh Concord node starts a session and is
// stopped abruptly (its NATS server, one of a separate cluster of three,
// stays up), and the time until a Send through another node is
// acknowledged is taken. It reports the median and the maximum, with the
// default lease TTL.
//
//	go test -run '^$' -bench Failover -benchtime 1x ./host/cluster/
func BenchmarkFailover(b *testing.B) {
	const rounds = 20
	ns := natstest.Cluster(b, 3)
	config := func(name string, i int) server.Config {
		return server.Config{Logger: natstest.Logger(b), Cluster: &cluster.Config{Name: name, URLs: []string{ns[i].ClientURL()}}}
	}
	survivor := servertest.Start(b, config("survivor", 1))
	var waits []time.Duration
	for range b.N {
		for r := range rounds {
			victim := servertest.Start(b, config(fmt.Sprintf("victim%d", r), r%3))
			sid := servertest.NewSessionID()
			if ack, err := send(victim, "alice", servertest.Envelope(decisionMode, "SessionStart", "start", sid, startPayload())); err != nil || !ack.GetOk() {
				b.Fatalf("start: %v %v", err, ack.GetError())
			}
			if ack, err := send(survivor, "bob", proposal(sid, "before")); err != nil || !ack.GetOk() {
				b.Fatalf("forward: %v %v", err, ack.GetError())
			}
			cut := time.Now()
			victim.Crash()
			for {
				ack, err := send(survivor, "bob", proposal(sid, "after"))
				if err == nil && ack.GetOk() {
					break
				}
				if time.Since(cut) > time.Minute {
					b.Fatalf("the session never came back: %v %v", err, ack.GetError())
				}
			}
			waits = append(waits, time.Since(cut))
		}
	}
	slices.Sort(waits)
	b.ReportMetric(waits[len(waits)/2].Seconds(), "p50-s")
	b.ReportMetric(waits[len(waits)-1].Seconds(), "max-s")
	b.Logf("failovers (lease TTL %s): %v", cluster.DefaultLeaseTTL, waits)
}

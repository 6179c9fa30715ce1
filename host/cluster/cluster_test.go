package cluster_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/nats-io/nats.go"
	"google.golang.org/protobuf/proto"

	"github.com/concord-macp/concord/host/access"
	"github.com/concord-macp/concord/host/cluster"
	"github.com/concord-macp/concord/host/natsnode"
	"github.com/concord-macp/concord/host/server"
	"github.com/concord-macp/concord/host/storage"
	"github.com/concord-macp/concord/internal/natstest"
	"github.com/concord-macp/concord/internal/servertest"
	adminv1 "github.com/concord-macp/concord/proto/concord/admin/v1"
	storev1 "github.com/concord-macp/concord/proto/concord/store/v1"
	decisionv1 "github.com/concord-macp/concord/proto/macp/modes/decision/v1"
	macpv1 "github.com/concord-macp/concord/proto/macp/v1"
	"github.com/concord-macp/concord/proto/macp/v1/macpv1connect"
)

// The cluster tests run three real NATS servers with JetStream and three
// real Concord servers on loopback ports, and talk to them as clients do.

const (
	decisionMode = "macp.mode.decision.v1"
	leaseTTL     = 2 * time.Second
	// joinTimeout ends a test whose NATS cluster never forms instead of
	// letting cluster.Start wait for it forever.
	joinTimeout = 2 * time.Minute
)

// concordCluster starts three NATS nodes and one Concord node on each.
func concordCluster(t *testing.T) []*servertest.Server {
	t.Helper()
	ns := natstest.Cluster(t, 3)
	nodes := make([]*servertest.Server, len(ns))
	for i, n := range ns {
		nodes[i] = servertest.Start(t, server.Config{
			Logger: natstest.Logger(t),
			Cluster: &cluster.Config{
				Name: fmt.Sprintf("c%d", i+1), URLs: []string{n.ClientURL()}, LeaseTTL: leaseTTL, JoinTimeout: joinTimeout,
			},
		})
	}
	return nodes
}

func startPayload() *macpv1.SessionStartPayload {
	return &macpv1.SessionStartPayload{
		Intent: "choose", Participants: []string{"alice", "bob"},
		ModeVersion: "1.0.0", ConfigurationVersion: "cfg-1", TtlMs: 600_000,
	}
}

func proposal(sid, id string) *macpv1.Envelope {
	return servertest.Envelope(decisionMode, "Proposal", id, sid, &decisionv1.ProposalPayload{ProposalId: id, Option: "x"})
}

// clients keeps one client per node and identity, so that calls share
// their connection as an SDK's do.
var clients sync.Map // "url identity" -> macpv1connect.MACPRuntimeServiceClient

func client(n *servertest.Server, identity string) macpv1connect.MACPRuntimeServiceClient {
	key := n.URL + " " + identity
	if c, ok := clients.Load(key); ok {
		return c.(macpv1connect.MACPRuntimeServiceClient)
	}
	c, _ := clients.LoadOrStore(key, n.Client(servertest.GRPC, identity))
	return c.(macpv1connect.MACPRuntimeServiceClient)
}

// send sends env as identity through node n, returning the Ack or the
// transport error.
func send(n *servertest.Server, identity string, env *macpv1.Envelope) (*macpv1.Ack, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res, err := client(n, identity).Send(ctx, connect.NewRequest(&macpv1.SendRequest{Envelope: env}))
	if err != nil {
		return nil, err
	}
	return res.Msg.GetAck(), nil
}

func mustSend(t *testing.T, n *servertest.Server, identity string, env *macpv1.Envelope) *macpv1.Ack {
	t.Helper()
	ack, err := send(n, identity, env)
	if err != nil {
		t.Fatalf("%s %s: %v", env.GetMessageType(), env.GetMessageId(), err)
	}
	if !ack.GetOk() {
		t.Fatalf("%s %s refused: %v", env.GetMessageType(), env.GetMessageId(), ack.GetError())
	}
	return ack
}

// sendRetrying sends env through node n as a client does while the
// cluster recovers from a failure: an INTERNAL_ERROR (the error a client
// retries) or a transport error is retried, with the same message id,
// for up to a minute; any other answer ends it.
func sendRetrying(t *testing.T, n *servertest.Server, identity string, env *macpv1.Envelope) *macpv1.Ack {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		ack, err := send(n, identity, env)
		switch {
		case err == nil && ack.GetOk():
			return ack
		case err == nil && ack.GetError().GetCode() != "INTERNAL_ERROR":
			t.Fatalf("%s %s refused: %v", env.GetMessageType(), env.GetMessageId(), ack.GetError())
		case time.Now().After(deadline):
			t.Fatalf("%s %s not acknowledged within a minute: %v %v", env.GetMessageType(), env.GetMessageId(), err, ack.GetError())
		}
		t.Logf("%s %s: retrying after %v %v", env.GetMessageType(), env.GetMessageId(), err, ack.GetError())
		time.Sleep(200 * time.Millisecond)
	}
}

func ownerOf(t *testing.T, n *servertest.Server, sid string) string {
	t.Helper()
	owner, _ := n.Server().Node().Owner(sid)
	return owner
}

// logIDs returns the message ids of session sid's log, read on node n.
func logIDs(t *testing.T, n *servertest.Server, sid string) []string {
	t.Helper()
	var ids []string
	seq := uint64(0)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err := n.Server().Kernel().As(access.Operator("test")).Log(ctx, sid, 0, func(e *storev1.Entry) error {
		seq++
		if e.GetSequence() != seq {
			return fmt.Errorf("entry %d has sequence %d", seq, e.GetSequence())
		}
		ids = append(ids, e.GetEnvelope().GetMessageId())
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return ids
}

func expectExactReplay(t *testing.T, n *servertest.Server, sid string, entries int) {
	t.Helper()
	rep, err := n.Admin("alice").ReplaySession(context.Background(), connect.NewRequest(&adminv1.ReplaySessionRequest{SessionId: sid}))
	if err != nil {
		t.Fatalf("replay %s: %v", sid, err)
	}
	if !rep.Msg.GetExact() || rep.Msg.GetEntries() != uint64(entries) {
		t.Fatalf("replay of %s over %d entries (want %d): exact=%t %v", sid, rep.Msg.GetEntries(), entries, rep.Msg.GetExact(), rep.Msg.GetDivergences())
	}
}

// TestCluster: sessions started on every node, messages through the wrong
// node, a subscriber on a node that does not own its session, then the
// owner of some sessions stopped abruptly while clients keep sending:
// every acknowledged message is in its log exactly once, retries are
// duplicates, the sessions continue on the other nodes, and each replays
// exactly.
func TestCluster(t *testing.T) {
	nodes := concordCluster(t)
	const sessions = 6
	sids := make([]string, sessions)
	for i := range sids {
		sids[i] = servertest.NewSessionID()
		mustSend(t, nodes[i%3], "alice", servertest.Envelope(decisionMode, "SessionStart", "start", sids[i], startPayload()))
		if got, want := ownerOf(t, nodes[i%3], sids[i]), fmt.Sprintf("c%d", i%3+1); got != want {
			t.Fatalf("session %d started on %s is owned by %q", i, want, got)
		}
	}
	// Every node reads every session, and any node takes any message.
	for i, sid := range sids {
		for j, n := range nodes {
			env := proposal(sid, fmt.Sprintf("p-%d", j))
			mustSend(t, n, "bob", env)
			if ack := mustSend(t, nodes[(j+1)%3], "bob", env); !ack.GetDuplicate() {
				t.Fatalf("session %d: a retry of %s through another node was not a duplicate", i, env.GetMessageId())
			}
		}
		for _, n := range nodes {
			if got := logIDs(t, n, sid); !slices.Equal(got, []string{"start", "p-0", "p-1", "p-2"}) {
				t.Fatalf("session %d read on %s: %v", i, n.Server().Node().Name(), got)
			}
		}
	}

	// A subscriber on a node that does not own the session.
	watched := sids[0] // owned by c1
	sub := subscribe(t, nodes[1], "alice", watched)

	// Load: one client per session, each sending through the nodes in
	// turn, retrying what failed (on the next node, same message id)
	// until acknowledged. c1 stops abruptly under it, once a quarter of
	// the load is acknowledged; no client sends the second half of its
	// messages before the crash, so that every session is written after it.
	victim := nodes[0]
	acked := make([][]string, sessions)
	var (
		mu       sync.Mutex
		crashAt  time.Time
		resumed  = map[string]time.Duration{} // session -> first ack after the crash
		wg       sync.WaitGroup
		perShard = 40
		total    int
	)
	crashed := make(chan struct{})
	quarter := make(chan struct{})
	for i, sid := range sids {
		wg.Go(func() {
			for k := 0; k < perShard; k++ {
				if k == perShard/2 {
					<-crashed
				}
				env := proposal(sid, fmt.Sprintf("load-%03d", k))
				deadline := time.Now().Add(60 * time.Second)
				for try := 0; ; try++ {
					n := nodes[(i+k+try)%3]
					select {
					case <-crashed:
						if n == victim {
							continue
						}
					default:
					}
					ack, err := send(n, "bob", env)
					if err == nil && ack.GetOk() {
						mu.Lock()
						acked[i] = append(acked[i], env.GetMessageId())
						if total++; total == sessions*perShard/4 {
							close(quarter)
						}
						if k >= perShard/2 { // sent after the crash
							if _, ok := resumed[sid]; !ok {
								resumed[sid] = time.Since(crashAt)
							}
						}
						mu.Unlock()
						break
					}
					if time.Now().After(deadline) {
						t.Errorf("session %d: %s not acknowledged within 60s: %v %v", i, env.GetMessageId(), err, ack.GetError())
						return
					}
					time.Sleep(20 * time.Millisecond)
				}
			}
		})
	}
	loaded := make(chan struct{})
	go func() {
		wg.Wait()
		close(loaded)
	}()
	select {
	case <-quarter:
	case <-loaded:
		close(crashed)
		t.Fatal("the load ended before a quarter of it was acknowledged")
	}
	mu.Lock()
	crashAt = time.Now()
	mu.Unlock()
	victim.Crash()
	close(crashed)
	<-loaded
	if t.Failed() {
		t.FailNow()
	}
	survivors := nodes[1:]
	var waits []time.Duration
	for i, sid := range sids {
		d, ok := resumed[sid]
		if !ok {
			t.Errorf("session %d: nothing was acknowledged after the crash", i)
		}
		if i%3 == 0 && ok {
			waits = append(waits, d)
		}
		eventually(t, fmt.Sprintf("session %d is owned by a survivor as c2 sees it", i), func() bool {
			owner := ownerOf(t, survivors[0], sid)
			return owner == "c2" || owner == "c3"
		})
	}
	sort.Slice(waits, func(i, j int) bool { return waits[i] < waits[j] })
	t.Logf("sessions of the crashed node writable again after %v (lease TTL %s)", waits, leaseTTL)

	for i, sid := range sids {
		ids := logIDs(t, survivors[i%2], sid)
		count := map[string]int{}
		for _, id := range ids {
			count[id]++
		}
		for id, c := range count {
			if c != 1 {
				t.Errorf("session %d: %s is in the log %d times", i, id, c)
			}
		}
		for _, id := range acked[i] {
			if count[id] != 1 {
				t.Errorf("session %d: acknowledged %s is not in the log", i, id)
			}
		}
		// Dedup still answers duplicates, on both survivors.
		for _, n := range survivors {
			if ack := mustSend(t, n, "bob", proposal(sid, "load-000")); !ack.GetDuplicate() {
				t.Errorf("session %d: a retry after the failover was not a duplicate", i)
			}
		}
		// The owner replays it (another node may read a moment behind).
		owner := ownerOf(t, survivors[0], sid)
		for _, n := range survivors {
			if n.Server().Node().Name() == owner {
				expectExactReplay(t, n, sid, len(ids))
			}
		}
	}

	// The subscriber on c2 saw the watched session's log in order, once.
	want := logIDs(t, survivors[0], watched)
	if got := sub.next(t, len(want)); !slices.Equal(got, want) {
		t.Errorf("the subscriber on c2 saw %v, want %v", got, want)
	}
}

type subscription struct {
	stream *connect.BidiStreamForClient[macpv1.StreamSessionRequest, macpv1.StreamSessionResponse]
	ids    chan string
}

func subscribe(t *testing.T, n *servertest.Server, identity, sid string) *subscription {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	stream := n.Client(servertest.GRPC, identity).StreamSession(ctx)
	if err := stream.Send(&macpv1.StreamSessionRequest{SubscribeSessionId: sid}); err != nil {
		t.Fatal(err)
	}
	s := &subscription{stream: stream, ids: make(chan string, 4096)}
	go func() {
		defer close(s.ids)
		for {
			res, err := stream.Receive()
			if err != nil {
				return
			}
			if env := res.GetEnvelope(); env != nil {
				s.ids <- env.GetMessageId()
			}
		}
	}()
	return s
}

func (s *subscription) next(t *testing.T, n int) []string {
	t.Helper()
	var got []string
	timeout := time.After(30 * time.Second)
	for len(got) < n {
		select {
		case id, ok := <-s.ids:
			if !ok {
				t.Fatalf("the stream ended after %d of %d", len(got), n)
			}
			got = append(got, id)
		case <-timeout:
			t.Fatalf("the stream delivered %d of %d", len(got), n)
		}
	}
	select {
	case id := <-s.ids:
		t.Errorf("an extra entry: %s", id)
	case <-time.After(200 * time.Millisecond):
	}
	return got
}

// TestEmbedded: three Concord nodes, each running its own NATS server
// (--cluster-embedded), form a cluster with nothing else running.
func TestEmbedded(t *testing.T) {
	addrs := natstest.FreeAddrs(t, 6)
	routes, clients := addrs[:3], addrs[3:]
	nodes := make([]*servertest.Server, 3)
	var wg sync.WaitGroup
	for i := range nodes {
		wg.Go(func() {
			nodes[i] = servertest.Start(t, server.Config{
				Logger: natstest.Logger(t),
				Cluster: &cluster.Config{
					Name: fmt.Sprintf("e%d", i+1), LeaseTTL: leaseTTL, JoinTimeout: joinTimeout,
					Embedded: &cluster.Embedded{Listen: routes[i], Peers: routes, ClientListen: clients[i]},
				},
			})
		})
	}
	wg.Wait()
	sid := servertest.NewSessionID()
	mustSend(t, nodes[0], "alice", servertest.Envelope(decisionMode, "SessionStart", "start", sid, startPayload()))
	mustSend(t, nodes[1], "bob", proposal(sid, "p-1"))
	mustSend(t, nodes[2], "bob", proposal(sid, "p-2"))
	if ack := mustSend(t, nodes[2], "bob", proposal(sid, "p-1")); !ack.GetDuplicate() {
		t.Fatal("a retry through a third node was not a duplicate")
	}
	for _, n := range nodes {
		if got := logIDs(t, n, sid); !slices.Equal(got, []string{"start", "p-1", "p-2"}) {
			t.Fatalf("log read on %s: %v", n.Server().Node().Name(), got)
		}
	}
	if owner := ownerOf(t, nodes[2], sid); owner != "e1" {
		t.Fatalf("owner seen from e3: %q, want e1", owner)
	}
	// A policy registered on e1 and a mode declared on e2 reach every node.
	ctx := context.Background()
	res, err := nodes[0].Client(servertest.GRPC, "operator").RegisterPolicy(ctx, connect.NewRequest(&macpv1.RegisterPolicyRequest{
		PolicyDescriptor: &macpv1.PolicyDescriptor{PolicyId: "policy.team.majority", Mode: decisionMode, Description: "majority",
			SchemaVersion: 3, Rules: `{"voting":{"algorithm":"majority","threshold":0.5}}`}}))
	if err != nil || !res.Msg.GetOk() {
		t.Fatalf("register a policy: %v %v", res, err)
	}
	decl, err := nodes[1].Client(servertest.GRPC, "operator").RegisterExtMode(ctx, connect.NewRequest(&macpv1.RegisterExtModeRequest{
		ModeDescriptor: &macpv1.ModeDescriptor{Mode: "ext.cluster.test.v1", ModeVersion: "1.0.0", Title: "declared on e2",
			MessageTypes: []string{"SessionStart", "Note"}}}))
	if err != nil || !decl.Msg.GetOk() {
		t.Fatalf("declare a mode: %v %v", decl, err)
	}
	eventually(t, "every node serves the policy and lists the declared mode", func() bool {
		for _, n := range nodes {
			c := n.Client(servertest.GRPC, "operator")
			if _, err := c.GetPolicy(ctx, connect.NewRequest(&macpv1.GetPolicyRequest{PolicyId: "policy.team.majority"})); err != nil {
				return false
			}
			ext, err := c.ListExtModes(ctx, connect.NewRequest(&macpv1.ListExtModesRequest{}))
			if err != nil || !slices.ContainsFunc(ext.Msg.GetModes(), func(d *macpv1.ModeDescriptor) bool { return d.GetMode() == "ext.cluster.test.v1" }) {
				return false
			}
		}
		return true
	})
	bound := servertest.NewSessionID()
	p := startPayload()
	p.PolicyVersion = "policy.team.majority"
	mustSend(t, nodes[2], "alice", servertest.Envelope(decisionMode, "SessionStart", "start", bound, p))

	// A graceful stop hands the session over at once. It also stops one of
	// the three JetStream servers: while the streams it led elect new
	// leaders, calls fail with INTERNAL_ERROR, and a client retries.
	nodes[0].Stop()
	sendRetrying(t, nodes[1], "bob", proposal(sid, "p-3"))
	// e3 reads what the shared log holds, a moment behind the new owner.
	eventually(t, "e3 reads the entry e2 wrote", func() bool {
		c, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		md, err := nodes[2].Server().Kernel().As(access.Operator("test")).Session(c, sid)
		return err == nil && len(md.GetParticipantActivity()) > 0 && activity(md, "bob") == 3
	})
	expectExactReplay(t, nodes[2], sid, 4)
}

// TestPartitionedOwner cuts the owner of a session off from NATS (its only
// NATS server stops): what it is sent meanwhile is not acknowledged, another
// node takes the session over, and when the partition heals the old owner's
// stale append is refused by the log's fence, while calls through it reach
// the new owner.
func TestPartitionedOwner(t *testing.T) {
	addrs := natstest.FreeAddrs(t, 6)
	routes, clients := addrs[:3], addrs[3:]
	dirs := []string{t.TempDir(), t.TempDir(), t.TempDir()}
	startNATS := func(i int) *natsnode.Node {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		n, err := natsnode.Start(ctx, natsnode.Options{
			Name: fmt.Sprintf("n%d", i+1), Dir: dirs[i], ClusterListen: routes[i], Peers: routes,
			ClientListen: clients[i], Logger: natstest.Logger(t),
		})
		if err != nil {
			t.Error(err)
		}
		return n
	}
	ns := make([]*natsnode.Node, 3)
	var wg sync.WaitGroup
	for i := range ns {
		wg.Go(func() { ns[i] = startNATS(i) })
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	t.Cleanup(func() {
		for _, n := range ns {
			n.Shutdown()
		}
	})
	for _, n := range ns {
		natstest.WaitJetStream(t, n)
	}
	nodes := make([]*servertest.Server, 3)
	for i := range nodes {
		nodes[i] = servertest.Start(t, server.Config{
			Logger: natstest.Logger(t),
			Cluster: &cluster.Config{
				Name: fmt.Sprintf("c%d", i+1), URLs: []string{"nats://" + clients[i]}, LeaseTTL: leaseTTL, JoinTimeout: joinTimeout,
				NATSOptions: []nats.Option{nats.ReconnectWait(100 * time.Millisecond), nats.IgnoreDiscoveredServers()},
			},
		})
	}
	sid := servertest.NewSessionID()
	mustSend(t, nodes[0], "alice", servertest.Envelope(decisionMode, "SessionStart", "start", sid, startPayload()))
	mustSend(t, nodes[1], "bob", proposal(sid, "p-1"))
	stale, err := nodes[0].Server().Node().Store().Head(context.Background(), sid)
	if err != nil {
		t.Fatal(err)
	}

	cut := time.Now()
	ns[0].Shutdown() // c1 is alone now
	partitioned := make(chan error, 1)
	go func() {
		ack, err := send(nodes[0], "bob", proposal(sid, "p-2"))
		if err == nil && ack.GetOk() {
			err = errors.New("the partitioned owner acknowledged a message")
		} else {
			err = nil
		}
		partitioned <- err
	}()
	var took time.Duration
	for {
		ack, err := send(nodes[1], "bob", proposal(sid, "p-3"))
		if err == nil && ack.GetOk() {
			took = time.Since(cut)
			break
		}
		if time.Since(cut) > 60*time.Second {
			t.Fatalf("no node took the session over: %v %v", err, ack.GetError())
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("the session was writable on c2 %v after its owner was cut off", took)
	if err := <-partitioned; err != nil {
		t.Fatal(err)
	}
	// c3 learns of the new owner from its lease watch, which may itself
	// have been re-created after the NATS server went.
	eventually(t, "c3 sees a new owner", func() bool {
		owner := ownerOf(t, nodes[2], sid)
		return owner == "c2" || owner == "c3"
	})

	ns[0] = startNATS(0) // the partition heals
	natstest.WaitJetStream(t, ns[0])
	// c1's store handle still believes the log ends at p-1: its append is
	// fenced.
	next := proto.Clone(stale).(*storev1.Session)
	next.LastSequence++
	next.StateSequence = next.LastSequence
	entry := &storev1.Entry{Sequence: next.LastSequence, Origin: storev1.Origin_ORIGIN_AGENT,
		Envelope: proposal(sid, "p-stale"), StateAfter: macpv1.SessionState_SESSION_STATE_OPEN}
	entry.Envelope.Sender = "bob"
	deadline := time.Now().Add(60 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		p, err := nodes[0].Server().Node().Store().Enqueue(ctx, storage.Commit{Session: next, Entries: []*storev1.Entry{entry}, SaveState: true})
		if err == nil {
			err = p.Wait(ctx)
		}
		cancel()
		if errors.Is(err, storage.ErrSequence) {
			break
		}
		if err == nil {
			t.Fatal("the stale owner's append landed")
		}
		if time.Now().After(deadline) {
			t.Fatalf("the stale append never reached the log: %v", err)
		}
		time.Sleep(200 * time.Millisecond) // still reconnecting
	}
	// Calls through c1 reach the new owner.
	deadline = time.Now().Add(60 * time.Second)
	for {
		ack, err := send(nodes[0], "bob", proposal(sid, "p-4"))
		if err == nil && ack.GetOk() {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("c1 could not reach the new owner: %v %v", err, ack.GetError())
		}
		time.Sleep(200 * time.Millisecond)
	}
	got := logIDs(t, nodes[2], sid)
	if !slices.Equal(got, []string{"start", "p-1", "p-3", "p-4"}) && !slices.Equal(got, []string{"start", "p-1", "p-2", "p-3", "p-4"}) {
		t.Fatalf("log %v", got)
	}
	if slices.Contains(got, "p-stale") {
		t.Fatal("the stale append is in the log")
	}
	expectExactReplay(t, nodes[1], sid, len(got))
}

// eventually polls cond until it holds, failing the test after 30 s.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within 30s: %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// activity is how many messages sender has in md's participant activity.
func activity(md *macpv1.SessionMetadata, sender string) uint64 {
	for _, a := range md.GetParticipantActivity() {
		if a.GetParticipantId() == sender {
			return uint64(a.GetMessageCount())
		}
	}
	return 0
}

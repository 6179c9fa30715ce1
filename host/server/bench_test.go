package server_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/proto"

	"github.com/concord-macp/concord/host/server"
	"github.com/concord-macp/concord/internal/servertest"
	adminv1 "github.com/concord-macp/concord/proto/concord/admin/v1"
	decisionv1 "github.com/concord-macp/concord/proto/macp/modes/decision/v1"
	handoffv1 "github.com/concord-macp/concord/proto/macp/modes/handoff/v1"
	multiroundv1 "github.com/concord-macp/concord/proto/macp/modes/multi_round/v1"
	proposalv1 "github.com/concord-macp/concord/proto/macp/modes/proposal/v1"
	quorumv1 "github.com/concord-macp/concord/proto/macp/modes/quorum/v1"
	taskv1 "github.com/concord-macp/concord/proto/macp/modes/task/v1"
	macpv1 "github.com/concord-macp/concord/proto/macp/v1"
	"github.com/concord-macp/concord/proto/macp/v1/macpv1connect"
)

// BenchmarkSendLoad measures durable Sends per second against one real
// server on disk: each of N agents has its own gRPC connection and session
// and sends Evaluations (a Wasm step and a synced log append each).
func BenchmarkSendLoad(b *testing.B) {
	for _, agents := range []int{1, 32} {
		b.Run(fmt.Sprintf("agents=%d", agents), func(b *testing.B) { benchSendLoad(b, agents) })
	}
}

func benchSendLoad(b *testing.B, agents int) {
	srv := servertest.Start(b, server.Config{})
	ctx := context.Background()
	type agent struct {
		name, sid string
		client    interface {
			Send(context.Context, *connect.Request[macpv1.SendRequest]) (*connect.Response[macpv1.SendResponse], error)
		}
	}
	all := make([]agent, agents)
	for i := range all {
		name := fmt.Sprintf("agent-%d", i)
		sid := servertest.NewSessionID()
		c := srv.Client(servertest.GRPC, name)
		start := servertest.Envelope(decisionMode, "SessionStart", "m0", sid, &macpv1.SessionStartPayload{
			Participants: []string{name}, ModeVersion: "1.0.0", ConfigurationVersion: "bench", TtlMs: 3_600_000,
		})
		if res, err := c.Send(ctx, connect.NewRequest(&macpv1.SendRequest{Envelope: start})); err != nil || !res.Msg.GetAck().GetOk() {
			b.Fatalf("start: %v %v", err, res)
		}
		prop := servertest.Envelope(decisionMode, "Proposal", "p", sid, &decisionv1.ProposalPayload{ProposalId: "p1", Option: "x"})
		if res, err := c.Send(ctx, connect.NewRequest(&macpv1.SendRequest{Envelope: prop})); err != nil || !res.Msg.GetAck().GetOk() {
			b.Fatalf("proposal: %v %v", err, res)
		}
		all[i] = agent{name, sid, c}
	}
	var next atomic.Int64
	var failed atomic.Int64
	b.ResetTimer()
	began := time.Now()
	var wg sync.WaitGroup
	for _, a := range all {
		wg.Go(func() {
			for {
				n := next.Add(1)
				if n > int64(b.N) {
					return
				}
				env := servertest.Envelope(decisionMode, "Evaluation", fmt.Sprintf("e%d", n), a.sid,
					&decisionv1.EvaluationPayload{ProposalId: "p1", Recommendation: "REVIEW", Confidence: 0.5, Reason: "load"})
				res, err := a.client.Send(ctx, connect.NewRequest(&macpv1.SendRequest{Envelope: env}))
				if err != nil || !res.Msg.GetAck().GetOk() {
					failed.Add(1)
				}
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(began)
	b.StopTimer()
	if f := failed.Load(); f > 0 {
		b.Fatalf("%d sends failed", f)
	}
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "sends/s")
}

// BenchmarkUploadToUsable measures the time from UploadMode to the first
// accepted SessionStart of the uploaded mode: cold (an empty compilation
// cache) and cached (the module was compiled by an earlier process).
func BenchmarkUploadToUsable(b *testing.B) {
	wasm := moduleB(b, "counter")
	for _, cached := range []bool{false, true} {
		name := "cold"
		if cached {
			name = "cached"
		}
		b.Run(name, func(b *testing.B) {
			cache := b.TempDir()
			if cached { // warm the cache with one upload in another server
				warm := servertest.Start(b, server.Config{Memory: true, WasmCacheDir: cache})
				if _, err := warm.Admin("op").UploadMode(context.Background(), connect.NewRequest(&adminv1.UploadModeRequest{Wasm: wasm})); err != nil {
					b.Fatal(err)
				}
				warm.Stop()
			}
			var total time.Duration
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				dir := cache
				if !cached {
					dir = b.TempDir()
				}
				srv := servertest.Start(b, server.Config{Memory: true, WasmCacheDir: dir})
				b.StartTimer()
				began := time.Now()
				if _, err := srv.Admin("op").UploadMode(context.Background(), connect.NewRequest(&adminv1.UploadModeRequest{Wasm: wasm})); err != nil {
					b.Fatal(err)
				}
				sid := servertest.NewSessionID()
				ack := srv.Send(b, "coordinator", servertest.Envelope("ext.test.counter.v1", "SessionStart", "m0", sid, &macpv1.SessionStartPayload{
					Participants: []string{"alice"}, ModeVersion: "1.0.0", ConfigurationVersion: "c", TtlMs: 60_000}))
				if !ack.GetOk() {
					b.Fatal(ack)
				}
				total += time.Since(began)
				b.StopTimer()
				srv.Stop()
				b.StartTimer()
			}
			b.ReportMetric(float64(total.Milliseconds())/float64(b.N), "ms/upload-to-usable")
		})
	}
}

// BenchmarkNeighbourOfLoopingModule measures Decision Sends per second on
// one server, alone and while another session's uploaded module loops
// forever on every message (each such message runs into the sandbox's
// deadline).
func BenchmarkNeighbourOfLoopingModule(b *testing.B) {
	for _, looping := range []bool{false, true} {
		name := "alone"
		if looping {
			name = "beside-a-looping-module"
		}
		b.Run(name, func(b *testing.B) {
			srv := servertest.Start(b, server.Config{Memory: true})
			ctx := context.Background()
			stop := make(chan struct{})
			var wg sync.WaitGroup
			var loops atomic.Int64
			if looping {
				if _, err := srv.Admin("op").UploadMode(ctx, connect.NewRequest(&adminv1.UploadModeRequest{Wasm: moduleB(b, "hostile")})); err != nil {
					b.Fatal(err)
				}
				hsid := servertest.NewSessionID()
				srv.Send(b, "coordinator", servertest.Envelope("ext.test.hostile.v1", "SessionStart", "m0", hsid, &macpv1.SessionStartPayload{
					Participants: []string{"alice"}, ModeVersion: "1.0.0", ConfigurationVersion: "c", TtlMs: 3_600_000}))
				looper := srv.Client(servertest.GRPC, "alice")
				wg.Go(func() {
					for i := 0; ; i++ {
						select {
						case <-stop:
							return
						default:
						}
						_, _ = looper.Send(ctx, connect.NewRequest(&macpv1.SendRequest{Envelope: servertest.Envelope("ext.test.hostile.v1", "Loop", fmt.Sprintf("l%d", i), hsid, nil)}))
						loops.Add(1)
					}
				})
			}
			sid := servertest.NewSessionID()
			srv.Send(b, "coordinator", servertest.Envelope(decisionMode, "SessionStart", "m0", sid, &macpv1.SessionStartPayload{
				Participants: []string{"alice"}, ModeVersion: "1.0.0", ConfigurationVersion: "c", TtlMs: 3_600_000}))
			srv.Send(b, "alice", servertest.Envelope(decisionMode, "Proposal", "p", sid, &decisionv1.ProposalPayload{ProposalId: "p1", Option: "x"}))
			b.ResetTimer()
			began := time.Now()
			alice := srv.Client(servertest.GRPC, "alice")
			for i := 0; i < b.N; i++ {
				env := servertest.Envelope(decisionMode, "Evaluation", fmt.Sprintf("e%d", i), sid,
					&decisionv1.EvaluationPayload{ProposalId: "p1", Recommendation: "REVIEW", Confidence: 0.5})
				if res, err := alice.Send(ctx, connect.NewRequest(&macpv1.SendRequest{Envelope: env})); err != nil || !res.Msg.GetAck().GetOk() {
					b.Fatalf("send: %v %v", err, res)
				}
			}
			elapsed := time.Since(began)
			b.StopTimer()
			close(stop)
			wg.Wait()
			b.ReportMetric(float64(b.N)/elapsed.Seconds(), "sends/s")
			if looping {
				b.ReportMetric(float64(loops.Load()), "looping-calls")
			}
		})
	}
}

func moduleB(b *testing.B, name string) []byte {
	b.Helper()
	mods, err := extModules()
	if err != nil {
		b.Fatal(err)
	}
	return mods[name]
}

// BenchmarkPolicyBoundSessions measures whole Decision sessions governed by
// a Rego policy (policy.std.majority): each of 32 agents runs sessions of
// SessionStart, Proposal, Vote and a governed Commitment, back to back.
// One op is one session (four durable Sends, one policy decision).
func BenchmarkPolicyBoundSessions(b *testing.B) {
	srv := servertest.Start(b, server.Config{})
	ctx := context.Background()
	var next, failed atomic.Int64
	var wg sync.WaitGroup
	b.ResetTimer()
	began := time.Now()
	for a := range 32 {
		name := fmt.Sprintf("agent-%d", a)
		client := srv.Client(servertest.GRPC, name)
		wg.Go(func() {
			for {
				if next.Add(1) > int64(b.N) {
					return
				}
				sid := servertest.NewSessionID()
				c := commitment(true)
				c.PolicyVersion = "policy.std.majority"
				for _, env := range []*macpv1.Envelope{
					servertest.Envelope(decisionMode, "SessionStart", "m0", sid, &macpv1.SessionStartPayload{
						Participants: []string{name}, ModeVersion: "1.0.0", ConfigurationVersion: "cfg-1", TtlMs: 60_000, PolicyVersion: "policy.std.majority"}),
					servertest.Envelope(decisionMode, "Proposal", "m1", sid, &decisionv1.ProposalPayload{ProposalId: "p1", Option: "x"}),
					servertest.Envelope(decisionMode, "Vote", "m2", sid, &decisionv1.VotePayload{ProposalId: "p1", Vote: "APPROVE"}),
					servertest.Envelope(decisionMode, "Commitment", "m3", sid, c),
				} {
					res, err := client.Send(ctx, connect.NewRequest(&macpv1.SendRequest{Envelope: env}))
					if err != nil || !res.Msg.GetAck().GetOk() {
						failed.Add(1)
						return
					}
				}
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(began)
	b.StopTimer()
	if f := failed.Load(); f > 0 {
		b.Fatalf("%d sessions failed", f)
	}
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "sessions/s")
	b.ReportMetric(float64(4*b.N)/elapsed.Seconds(), "sends/s")
}

// BenchmarkSendPerMode measures durable Sends per second for each built-in
// mode under 32 concurrent agents, each with its own session and its own
// connection, repeating a message the mode accepts any number of times.
// (Quorum ballots cannot repeat: there one op is a whole session of
// SessionStart, ApprovalRequest and Approve, and sends/s counts all three.)
//
//	go test -run '^$' -bench SendPerMode -benchtime 3000x ./host/server/
func BenchmarkSendPerMode(b *testing.B) {
	type plan struct {
		mode         string
		participants func(agent string) []string
		setup        func(agent string) []step
		repeat       func(agent string, i int64) step
		perOp        int
	}
	sp := func(sender, typ string, p proto.Message) step { return step{sender: sender, typ: typ, payload: p} }
	plans := []plan{
		{"macp.mode.decision.v1", func(a string) []string { return []string{a} },
			func(a string) []step {
				return []step{sp(a, "Proposal", &decisionv1.ProposalPayload{ProposalId: "p1", Option: "x"})}
			},
			func(a string, i int64) step {
				return sp(a, "Evaluation", &decisionv1.EvaluationPayload{ProposalId: "p1", Recommendation: "REVIEW", Confidence: 0.5})
			}, 1},
		{"macp.mode.proposal.v1", func(a string) []string { return []string{a, "seller"} }, nil,
			func(a string, i int64) step {
				return sp(a, "Proposal", &proposalv1.ProposalPayload{ProposalId: fmt.Sprintf("p%d", i), Title: "offer"})
			}, 1},
		{"macp.mode.task.v1", func(a string) []string { return []string{a} },
			func(a string) []step {
				return []step{
					sp(a, "TaskRequest", &taskv1.TaskRequestPayload{TaskId: "t1", Title: "work", RequestedAssignee: a}),
					sp(a, "TaskAccept", &taskv1.TaskAcceptPayload{TaskId: "t1", Assignee: a}),
				}
			},
			func(a string, i int64) step {
				return sp(a, "TaskUpdate", &taskv1.TaskUpdatePayload{TaskId: "t1", Status: "working", Progress: 0.5})
			}, 1},
		{"macp.mode.handoff.v1", func(a string) []string { return []string{a, "target"} },
			func(a string) []step {
				return []step{sp(a, "HandoffOffer", &handoffv1.HandoffOfferPayload{HandoffId: "h1", TargetParticipant: "target", Scope: "all"})}
			},
			func(a string, i int64) step {
				return sp(a, "HandoffContext", &handoffv1.HandoffContextPayload{HandoffId: "h1", ContentType: "text/plain", Context: []byte("notes")})
			}, 1},
		{"ext.multi_round.v1", func(a string) []string { return []string{a, "other"} }, nil,
			func(a string, i int64) step {
				return sp(a, "Contribute", &multiroundv1.ContributePayload{Value: fmt.Sprintf("v%d", i%2)})
			}, 1},
		{"macp.mode.quorum.v1", nil, nil, nil, 3},
	}
	for _, pl := range plans {
		b.Run(pl.mode, func(b *testing.B) {
			srv := servertest.Start(b, server.Config{})
			ctx := context.Background()
			var next, failed atomic.Int64
			var wg sync.WaitGroup
			send := func(c macpv1connect.MACPRuntimeServiceClient, mode, sid, id string, st step) bool {
				env := servertest.Envelope(mode, st.typ, id, sid, st.payload)
				res, err := c.Send(ctx, connect.NewRequest(&macpv1.SendRequest{Envelope: env}))
				if err != nil || !res.Msg.GetAck().GetOk() {
					if failed.Add(1) == 1 {
						b.Logf("%s %s: %v %v", mode, st.typ, err, res.Msg.GetAck().GetError())
					}
					return false
				}
				return true
			}
			start := func(c macpv1connect.MACPRuntimeServiceClient, mode, sid string, participants []string) bool {
				return send(c, mode, sid, "m0", sp("", "SessionStart", &macpv1.SessionStartPayload{
					Participants: participants, ModeVersion: "1.0.0", ConfigurationVersion: "bench", TtlMs: 3_600_000}))
			}
			type agent struct {
				name, sid string
				c         macpv1connect.MACPRuntimeServiceClient
			}
			agents := make([]agent, 32)
			for i := range agents {
				name := fmt.Sprintf("agent-%d", i)
				agents[i] = agent{name, servertest.NewSessionID(), srv.Client(servertest.GRPC, name)}
				if pl.repeat == nil {
					continue
				}
				if !start(agents[i].c, pl.mode, agents[i].sid, pl.participants(name)) {
					b.Fatal("start failed")
				}
				if pl.setup != nil {
					for j, st := range pl.setup(name) {
						if !send(agents[i].c, pl.mode, agents[i].sid, fmt.Sprintf("s%d", j), st) {
							b.Fatal("setup failed")
						}
					}
				}
			}
			b.ResetTimer()
			began := time.Now()
			for _, a := range agents {
				wg.Go(func() {
					for {
						n := next.Add(1)
						if n > int64(b.N) || failed.Load() > 0 {
							return
						}
						if pl.repeat != nil {
							send(a.c, pl.mode, a.sid, fmt.Sprintf("r%d", n), pl.repeat(a.name, n))
							continue
						}
						// Quorum: a whole session per op.
						sid := servertest.NewSessionID()
						_ = start(a.c, pl.mode, sid, []string{a.name}) &&
							send(a.c, pl.mode, sid, "m1", sp("", "ApprovalRequest", &quorumv1.ApprovalRequestPayload{RequestId: "r1", Action: "deploy", RequiredApprovals: 1})) &&
							send(a.c, pl.mode, sid, "m2", sp("", "Approve", &quorumv1.ApprovePayload{RequestId: "r1"}))
					}
				})
			}
			wg.Wait()
			elapsed := time.Since(began)
			b.StopTimer()
			if f := failed.Load(); f > 0 {
				b.Fatalf("%d sends failed", f)
			}
			b.ReportMetric(float64(pl.perOp*b.N)/elapsed.Seconds(), "sends/s")
		})
	}
}

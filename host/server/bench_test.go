package server_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/concord-macp/concord/host/server"
	"github.com/concord-macp/concord/internal/servertest"
	decisionv1 "github.com/concord-macp/concord/proto/macp/modes/decision/v1"
	macpv1 "github.com/concord-macp/concord/proto/macp/v1"
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

// Command decision-client runs one complete Decision session against a
// Concord server over gRPC, as three agents would: a coordinator opens the
// session, alice proposes, bob evaluates, both vote, and the coordinator
// commits. Start a server with `make run`, then `go run ./examples/decision-client`.
package main

import (
	"context"
	"crypto/rand"
	"flag"
	"fmt"
	"log"
	"net/http"
	"os"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/proto"

	decisionv1 "github.com/concord-macp/concord/proto/macp/modes/decision/v1"
	macpv1 "github.com/concord-macp/concord/proto/macp/v1"
	"github.com/concord-macp/concord/proto/macp/v1/macpv1connect"
)

const mode = "macp.mode.decision.v1"

func main() {
	addr := flag.String("addr", "http://127.0.0.1:50051", "Concord server URL")
	flag.Parse()
	if err := run(context.Background(), *addr); err != nil {
		log.SetFlags(0)
		log.Fatal("decision-client: ", err)
	}
}

// h2c is an HTTP client speaking HTTP/2 without TLS, as gRPC needs.
func h2c() *http.Client {
	p := new(http.Protocols)
	p.SetUnencryptedHTTP2(true)
	return &http.Client{Transport: &http.Transport{Protocols: p}, Timeout: 30 * time.Second}
}

// agent sends envelopes as one authenticated identity.
type agent struct {
	name   string
	client macpv1connect.MACPRuntimeServiceClient
	n      int
}

func (a *agent) send(ctx context.Context, sessionID, messageType string, payload proto.Message) error {
	body, err := proto.Marshal(payload)
	if err != nil {
		return err
	}
	a.n++
	req := connect.NewRequest(&macpv1.SendRequest{Envelope: &macpv1.Envelope{
		MacpVersion:     "1.0",
		Mode:            mode,
		MessageType:     messageType,
		MessageId:       fmt.Sprintf("%s-%d", a.name, a.n),
		SessionId:       sessionID,
		Sender:          a.name,
		TimestampUnixMs: time.Now().UnixMilli(),
		Payload:         body,
	}})
	req.Header().Set("Authorization", "Bearer "+a.name)
	res, err := a.client.Send(ctx, req)
	if err != nil {
		return fmt.Errorf("%s %s: %w", a.name, messageType, err)
	}
	ack := res.Msg.GetAck()
	if !ack.GetOk() {
		return fmt.Errorf("%s %s rejected: %s %s", a.name, messageType, ack.GetError().GetCode(), ack.GetError().GetMessage())
	}
	fmt.Printf("%-12s %-13s accepted, session %s\n", a.name, messageType, ack.GetSessionState())
	return nil
}

func run(ctx context.Context, addr string) error {
	client := macpv1connect.NewMACPRuntimeServiceClient(h2c(), addr, connect.WithGRPC())
	init, err := client.Initialize(ctx, connect.NewRequest(&macpv1.InitializeRequest{SupportedProtocolVersions: []string{"1.0"}}))
	if err != nil {
		return fmt.Errorf("initialize (is the server running? `make run`): %w", err)
	}
	fmt.Printf("connected to %s %s, MACP %s, modes %v\n", init.Msg.GetRuntimeInfo().GetName(),
		init.Msg.GetRuntimeInfo().GetVersion(), init.Msg.GetSelectedProtocolVersion(), init.Msg.GetSupportedModes())

	coordinator := &agent{name: "coordinator", client: client}
	alice := &agent{name: "alice", client: client}
	bob := &agent{name: "bob", client: client}
	sessionID := newUUIDv4()

	steps := []struct {
		who     *agent
		typ     string
		payload proto.Message
	}{
		{coordinator, "SessionStart", &macpv1.SessionStartPayload{
			Intent: "pick a deployment region", Participants: []string{"alice", "bob"},
			ModeVersion: "1.0.0", ConfigurationVersion: "example-1", TtlMs: 60_000,
		}},
		{alice, "Proposal", &decisionv1.ProposalPayload{ProposalId: "p1", Option: "eu-west", Rationale: "closest to our users"}},
		{bob, "Evaluation", &decisionv1.EvaluationPayload{ProposalId: "p1", Recommendation: "APPROVE", Confidence: 0.8, Reason: "latency is fine"}},
		{alice, "Vote", &decisionv1.VotePayload{ProposalId: "p1", Vote: "APPROVE"}},
		{bob, "Vote", &decisionv1.VotePayload{ProposalId: "p1", Vote: "APPROVE"}},
		{coordinator, "Commitment", &macpv1.CommitmentPayload{
			CommitmentId: "c1", Action: "decision.selected", AuthorityScope: "deployment",
			Reason: "both participants approved p1", ModeVersion: "1.0.0",
			ConfigurationVersion: "example-1", OutcomePositive: true,
		}},
	}
	for _, s := range steps {
		if err := s.who.send(ctx, sessionID, s.typ, s.payload); err != nil {
			return err
		}
	}

	req := connect.NewRequest(&macpv1.GetSessionRequest{SessionId: sessionID})
	req.Header().Set("Authorization", "Bearer coordinator")
	got, err := client.GetSession(ctx, req)
	if err != nil {
		return fmt.Errorf("get session: %w", err)
	}
	md := got.Msg.GetMetadata()
	fmt.Printf("session %s is %s (policy %s, %d participants active)\n", md.GetSessionId(), md.GetState(),
		md.GetPolicyVersion(), len(md.GetParticipantActivity()))
	if md.GetState() != macpv1.SessionState_SESSION_STATE_RESOLVED {
		os.Exit(1)
	}
	return nil
}

// newUUIDv4 returns a random lowercase UUID v4, the session id format MACP
// expects.
func newUUIDv4() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

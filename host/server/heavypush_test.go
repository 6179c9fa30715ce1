package server_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/concord-macp/concord/host/server"
	"github.com/concord-macp/concord/internal/servertest"
	"github.com/concord-macp/concord/policy"
	adminv1 "github.com/concord-macp/concord/proto/concord/admin/v1"
	macpv1 "github.com/concord-macp/concord/proto/macp/v1"
)

// slowRego is an uploaded policy whose shipped test evaluates for a while
// (a set built from a range of n numbers).
func slowRego(n int) string {
	return fmt.Sprintf(`package concord.custom

mode := "macp.mode.decision.v1"

govern := {"allow": true, "reasons": []}

test_slow if {
	s := {x | some x in numbers.range(1, %d); x %% 3 == 0}
	count(s) > 100
}
`, n)
}

func push(ctx context.Context, srv *servertest.Server, id, rego string) error {
	_, err := srv.Admin("operator").PushPolicy(ctx, connect.NewRequest(&adminv1.PushPolicyRequest{
		PolicyDescriptor: &macpv1.PolicyDescriptor{PolicyId: id, Mode: decisionMode, Description: "heavy", SchemaVersion: 1, Rules: "{}"},
		Rego:             rego,
	}))
	return err
}

// TestHeavyPolicyPushes: pushes whose tests are heavy are tested one at a
// time; a push that finds the queue full is answered RESOURCE_EXHAUSTED
// (MACP code RATE_LIMITED) and one over its time budget
// INVALID_POLICY_DEFINITION; the queued ones are registered.
func TestHeavyPolicyPushes(t *testing.T) {
	srv := servertest.Start(t, server.Config{Memory: true, PolicyUploads: policy.UploadLimits{
		Concurrent: 1, MaxWaiting: 2, MaxWait: time.Minute, TestTimeout: 20 * time.Second,
	}})
	ctx := context.Background()
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs = map[string]error{}
	)
	for i := range 6 {
		wg.Go(func() {
			id := fmt.Sprintf("policy.heavy.p%d", i)
			err := push(ctx, srv, id, slowRego(150_000))
			mu.Lock()
			errs[id] = err
			mu.Unlock()
		})
	}
	wg.Wait()
	accepted, busy := 0, 0
	for id, err := range errs {
		var ce *connect.Error
		switch {
		case err == nil:
			accepted++
			if _, err := srv.Client(servertest.GRPC, "operator").GetPolicy(ctx, connect.NewRequest(&macpv1.GetPolicyRequest{PolicyId: id})); err != nil {
				t.Errorf("%s accepted but not registered: %v", id, err)
			}
		case errors.As(err, &ce) && ce.Code() == connect.CodeResourceExhausted && ce.Meta().Get("macp-error-code") == "RATE_LIMITED":
			busy++
		default:
			t.Errorf("%s: %v, want success or RESOURCE_EXHAUSTED/RATE_LIMITED", id, err)
		}
	}
	// One runs, two wait; the rest arrive while those three are in.
	if accepted < 3 || busy == 0 {
		t.Fatalf("%d accepted, %d refused as busy, of 6 concurrent pushes; want at least 3 and at least 1", accepted, busy)
	}

	// A push over its time budget is the policy's fault.
	slow := servertest.Start(t, server.Config{Memory: true, PolicyUploads: policy.UploadLimits{TestTimeout: 20 * time.Millisecond}})
	err := push(ctx, slow, "policy.heavy.slow", slowRego(2_000_000))
	var ce *connect.Error
	if !errors.As(err, &ce) || ce.Code() != connect.CodeInvalidArgument || ce.Meta().Get("macp-error-code") != "INVALID_POLICY_DEFINITION" ||
		!strings.Contains(ce.Message(), "ran longer than") {
		t.Fatalf("push over the time budget: %v, want INVALID_ARGUMENT/INVALID_POLICY_DEFINITION naming the limit", err)
	}
}

package rpc

import (
	"context"
	"errors"
	"time"

	"connectrpc.com/connect"

	"github.com/concord-macp/concord/host/macperr"
	"github.com/concord-macp/concord/host/store"
	"github.com/concord-macp/concord/policy"
	adminv1 "github.com/concord-macp/concord/proto/concord/admin/v1"
	macpv1 "github.com/concord-macp/concord/proto/macp/v1"
)

// registryError renders a registry refusal as the spec's error string,
// prefixed with its registry code.
func registryError(err error) string {
	if errors.Is(err, store.ErrDiskFull) {
		return macperr.InternalError + ": " + store.DiskFullMessage
	}
	e := macperr.As(err)
	return e.Code + ": " + e.Message
}

// RegisterPolicy admits a policy descriptor; refusals are ok=false with the
// reason.
func (s *service) RegisterPolicy(ctx context.Context, req *connect.Request[macpv1.RegisterPolicyRequest]) (*connect.Response[macpv1.RegisterPolicyResponse], error) {
	if _, err := registryWriter(ctx); err != nil {
		return nil, err
	}
	if req.Msg.GetPolicyDescriptor() == nil {
		return connect.NewResponse(&macpv1.RegisterPolicyResponse{Error: "INVALID_POLICY_DEFINITION: policy_descriptor is required"}), nil
	}
	if _, err := s.policies.Register(ctx, req.Msg.GetPolicyDescriptor()); err != nil {
		return connect.NewResponse(&macpv1.RegisterPolicyResponse{Error: registryError(err)}), nil
	}
	return connect.NewResponse(&macpv1.RegisterPolicyResponse{Ok: true}), nil
}

// UnregisterPolicy removes a policy; sessions bound to it keep their copy.
func (s *service) UnregisterPolicy(ctx context.Context, req *connect.Request[macpv1.UnregisterPolicyRequest]) (*connect.Response[macpv1.UnregisterPolicyResponse], error) {
	if _, err := registryWriter(ctx); err != nil {
		return nil, err
	}
	if err := s.policies.Unregister(ctx, req.Msg.GetPolicyId()); err != nil {
		return connect.NewResponse(&macpv1.UnregisterPolicyResponse{Error: registryError(err)}), nil
	}
	return connect.NewResponse(&macpv1.UnregisterPolicyResponse{Ok: true}), nil
}

// GetPolicy returns one descriptor; unknown ids are NotFound.
func (s *service) GetPolicy(ctx context.Context, req *connect.Request[macpv1.GetPolicyRequest]) (*connect.Response[macpv1.GetPolicyResponse], error) {
	if _, err := authenticated(ctx); err != nil {
		return nil, err
	}
	d, err := s.policies.Get(req.Msg.GetPolicyId())
	if err != nil {
		return nil, withMACPCode(connect.NewError(connect.CodeNotFound, errors.New("policy "+req.Msg.GetPolicyId()+" is not registered")), macperr.UnknownPolicyVersion)
	}
	return connect.NewResponse(&macpv1.GetPolicyResponse{PolicyDescriptor: d}), nil
}

// ListPolicies lists descriptors of a mode (and of "*"), sorted by id.
func (s *service) ListPolicies(ctx context.Context, req *connect.Request[macpv1.ListPoliciesRequest]) (*connect.Response[macpv1.ListPoliciesResponse], error) {
	if _, err := authenticated(ctx); err != nil {
		return nil, err
	}
	return connect.NewResponse(&macpv1.ListPoliciesResponse{Descriptors: s.policies.List(req.Msg.GetMode())}), nil
}

// WatchPolicies sends the full set on connect and after every change.
func (s *service) WatchPolicies(ctx context.Context, _ *connect.Request[macpv1.WatchPoliciesRequest], stream *connect.ServerStream[macpv1.WatchPoliciesResponse]) error {
	changes := make(chan []*macpv1.PolicyDescriptor, 16)
	lagged := make(chan struct{}, 1)
	unsubscribe := s.policies.Subscribe(func(ev policy.Event) {
		select {
		case changes <- ev.Descriptors:
		default:
			select {
			case lagged <- struct{}{}:
			default:
			}
		}
	})
	defer unsubscribe()
	send := func(ds []*macpv1.PolicyDescriptor) error {
		return stream.Send(&macpv1.WatchPoliciesResponse{Descriptors: ds, ObservedAtUnixMs: time.Now().UnixMilli()})
	}
	if err := send(s.policies.List("")); err != nil {
		return err
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-s.done:
			return nil
		case <-lagged:
			return connect.NewError(connect.CodeResourceExhausted, errors.New("watcher fell too far behind"))
		case ds := <-changes:
			if err := send(ds); err != nil {
				return err
			}
		}
	}
}

// PushPolicy registers an operator's own Rego policy after compiling it and
// running the tests it ships.
func (a *admin) PushPolicy(ctx context.Context, req *connect.Request[adminv1.PushPolicyRequest]) (*connect.Response[adminv1.PushPolicyResponse], error) {
	if _, err := registryWriter(ctx); err != nil {
		return nil, err
	}
	if req.Msg.GetPolicyDescriptor() == nil {
		return nil, connect.NewError(connect.CodeInvalidArgument, errors.New("policy_descriptor is required"))
	}
	d, err := a.policyEngine.RegisterCustom(ctx, req.Msg.GetPolicyDescriptor(), []byte(req.Msg.GetRego()))
	if err != nil {
		return nil, statusError(err)
	}
	return connect.NewResponse(&adminv1.PushPolicyResponse{PolicyDescriptor: d}), nil
}

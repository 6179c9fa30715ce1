package rpc

import (
	"context"
	"errors"
	"time"

	"connectrpc.com/connect"

	"github.com/concord-macp/concord/host/auth"
	"github.com/concord-macp/concord/host/modes"
	"github.com/concord-macp/concord/host/store"
	adminv1 "github.com/concord-macp/concord/proto/concord/admin/v1"
	macpv1 "github.com/concord-macp/concord/proto/macp/v1"
)

// registryWriter returns the caller if it may change registries.
func registryWriter(ctx context.Context) (auth.Identity, error) {
	id, err := authenticated(ctx)
	if err != nil {
		return id, err
	}
	if !id.CanManageRegistry {
		return id, connect.NewError(connect.CodePermissionDenied, errors.New(id.Sender+" may not change the mode or policy registries"))
	}
	return id, nil
}

// RegisterExtMode binds a descriptor to an uploaded module implementing it.
func (s *service) RegisterExtMode(ctx context.Context, req *connect.Request[macpv1.RegisterExtModeRequest]) (*connect.Response[macpv1.RegisterExtModeResponse], error) {
	if _, err := registryWriter(ctx); err != nil {
		return nil, err
	}
	if err := s.modes.Register(ctx, req.Msg.GetModeDescriptor()); err != nil {
		return connect.NewResponse(&macpv1.RegisterExtModeResponse{Error: err.Error()}), nil
	}
	return connect.NewResponse(&macpv1.RegisterExtModeResponse{Ok: true}), nil
}

// UnregisterExtMode stops an extension mode from serving new sessions.
func (s *service) UnregisterExtMode(ctx context.Context, req *connect.Request[macpv1.UnregisterExtModeRequest]) (*connect.Response[macpv1.UnregisterExtModeResponse], error) {
	if _, err := registryWriter(ctx); err != nil {
		return nil, err
	}
	if err := s.modes.Unregister(ctx, req.Msg.GetMode()); err != nil {
		return connect.NewResponse(&macpv1.UnregisterExtModeResponse{Error: err.Error()}), nil
	}
	return connect.NewResponse(&macpv1.UnregisterExtModeResponse{Ok: true}), nil
}

// PromoteMode makes an extension mode standards-track.
func (s *service) PromoteMode(ctx context.Context, req *connect.Request[macpv1.PromoteModeRequest]) (*connect.Response[macpv1.PromoteModeResponse], error) {
	if _, err := registryWriter(ctx); err != nil {
		return nil, err
	}
	name, err := s.modes.Promote(ctx, req.Msg.GetMode(), req.Msg.GetPromotedModeName())
	if err != nil {
		return connect.NewResponse(&macpv1.PromoteModeResponse{Error: err.Error()}), nil
	}
	return connect.NewResponse(&macpv1.PromoteModeResponse{Ok: true, Mode: name}), nil
}

// WatchModeRegistry sends a change hint on connect and one per change.
func (s *service) WatchModeRegistry(ctx context.Context, _ *connect.Request[macpv1.WatchModeRegistryRequest], stream *connect.ServerStream[macpv1.WatchModeRegistryResponse]) error {
	sub := s.modes.Changes()
	defer sub.Close()
	hint := func() error {
		return stream.Send(&macpv1.WatchModeRegistryResponse{Change: &macpv1.RegistryChanged{Registry: "modes", ObservedAtUnixMs: time.Now().UnixMilli()}})
	}
	if err := hint(); err != nil {
		return err
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-s.done:
			return nil
		case _, ok := <-sub.C:
			if !ok {
				return connect.NewError(connect.CodeResourceExhausted, sub.Err())
			}
			if err := hint(); err != nil {
				return err
			}
		}
	}
}

// UploadMode validates and registers an uploaded module.
func (a *admin) UploadMode(ctx context.Context, req *connect.Request[adminv1.UploadModeRequest]) (*connect.Response[adminv1.UploadModeResponse], error) {
	if _, err := registryWriter(ctx); err != nil {
		return nil, err
	}
	m, err := a.modes.Upload(ctx, req.Msg.GetWasm())
	if err != nil {
		if errors.Is(err, modes.ErrRefused) {
			return nil, connect.NewError(connect.CodeInvalidArgument, err)
		}
		if errors.Is(err, store.ErrDiskFull) {
			return nil, diskFullError()
		}
		return nil, connect.NewError(connect.CodeInternal, err)
	}
	return connect.NewResponse(&adminv1.UploadModeResponse{Module: &adminv1.Module{
		Mode: m.Descriptor().GetMode(), Digest: m.Digest(), ModeDescriptor: m.Descriptor(),
	}}), nil
}

// ListModules lists the modes serving new sessions and their modules.
func (a *admin) ListModules(ctx context.Context, _ *connect.Request[adminv1.ListModulesRequest]) (*connect.Response[adminv1.ListModulesResponse], error) {
	if _, err := authenticated(ctx); err != nil {
		return nil, err
	}
	var out []*adminv1.Module
	for _, in := range a.modes.List() {
		out = append(out, &adminv1.Module{Mode: in.Name, Digest: in.Mode.Digest(), ModeDescriptor: in.Mode.Descriptor(),
			Builtin: in.Builtin, StandardsTrack: in.Standard})
	}
	return connect.NewResponse(&adminv1.ListModulesResponse{Modules: out}), nil
}

// RemoveMode unregisters an uploaded mode.
func (a *admin) RemoveMode(ctx context.Context, req *connect.Request[adminv1.RemoveModeRequest]) (*connect.Response[adminv1.RemoveModeResponse], error) {
	if _, err := registryWriter(ctx); err != nil {
		return nil, err
	}
	if err := a.modes.Unregister(ctx, req.Msg.GetMode()); err != nil {
		if errors.Is(err, modes.ErrRefused) {
			return nil, connect.NewError(connect.CodeFailedPrecondition, err)
		}
		return nil, connect.NewError(connect.CodeInternal, err)
	}
	return connect.NewResponse(&adminv1.RemoveModeResponse{}), nil
}

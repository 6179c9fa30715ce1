package rpc

import (
	"context"
	"errors"

	"connectrpc.com/connect"

	"github.com/concord-macp/concord/host/audit"
	"github.com/concord-macp/concord/macperr"
	adminv1 "github.com/concord-macp/concord/proto/concord/admin/v1"
)

// ListAuditRecords pages through the governance audit trail, newest
// first. Only admins may read it.
func (a *admin) ListAuditRecords(ctx context.Context, req *connect.Request[adminv1.ListAuditRecordsRequest]) (*connect.Response[adminv1.ListAuditRecordsResponse], error) {
	id, err := authenticated(ctx)
	if err != nil {
		return nil, err
	}
	if !id.Admin {
		return nil, withMACPCode(connect.NewError(connect.CodePermissionDenied, errors.New(id.ID+" may not read the audit trail (is_admin)")), macperr.Forbidden)
	}
	if a.audit == nil {
		return nil, connect.NewError(connect.CodeUnavailable, errors.New("this server keeps no audit trail"))
	}
	records, next, err := a.audit.List(ctx, int(req.Msg.GetPageSize()), req.Msg.GetPageToken())
	if err != nil {
		if errors.Is(err, audit.ErrBadPage) {
			return nil, connect.NewError(connect.CodeInvalidArgument, err)
		}
		return nil, statusError(macperr.Wrap(macperr.InternalError, err, "audit trail"))
	}
	return connect.NewResponse(&adminv1.ListAuditRecordsResponse{Records: records, NextPageToken: next}), nil
}

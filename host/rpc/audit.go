package rpc

import (
	"context"
	"errors"

	"connectrpc.com/connect"

	adminv1 "github.com/concord-macp/concord/proto/concord/admin/v1"
)

// ListAuditRecords pages through the governance audit trail, newest
// first. Only admins may read it.
func (a *admin) ListAuditRecords(ctx context.Context, req *connect.Request[adminv1.ListAuditRecordsRequest]) (*connect.Response[adminv1.ListAuditRecordsResponse], error) {
	if _, err := administrator(ctx); err != nil {
		return nil, err
	}
	if a.audit == nil {
		return nil, connect.NewError(connect.CodeUnavailable, errors.New("this server keeps no audit trail"))
	}
	records, next, err := a.audit.List(ctx, int(req.Msg.GetPageSize()), req.Msg.GetPageToken())
	if err != nil {
		return nil, statusError(a.log, req.Spec().Procedure, err)
	}
	return connect.NewResponse(&adminv1.ListAuditRecordsResponse{Records: records, NextPageToken: next}), nil
}

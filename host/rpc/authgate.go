package rpc

import "github.com/concord-macp/concord/proto/macp/v1/macpv1connect"

// publicProcedures need no identity: the discovery calls and the watch
// calls the official SDKs make without credentials.
var publicProcedures = map[string]bool{
	macpv1connect.MACPRuntimeServiceInitializeProcedure:        true,
	macpv1connect.MACPRuntimeServiceListModesProcedure:         true,
	macpv1connect.MACPRuntimeServiceListExtModesProcedure:      true,
	macpv1connect.MACPRuntimeServiceGetManifestProcedure:       true,
	macpv1connect.MACPRuntimeServiceListRootsProcedure:         true,
	macpv1connect.MACPRuntimeServiceWatchRootsProcedure:        true,
	macpv1connect.MACPRuntimeServiceWatchModeRegistryProcedure: true,
	macpv1connect.MACPRuntimeServiceWatchPoliciesProcedure:     true,
}

// IsPublic reports whether procedure needs no identity.
func IsPublic(procedure string) bool { return publicProcedures[procedure] }

// Package access says who a caller is and what it may do. Authentication
// (host/auth) turns credentials into a Caller; the kernel, the registries,
// the RPC layer and the admin UI decide with its capabilities. A Caller is
// a plain value: it is never changed once built.
package access

import (
	"slices"

	macpv1 "github.com/concord-macp/concord/proto/macp/v1"
)

// Caller is an authenticated caller and its capabilities. The zero value is
// the anonymous caller: it may use only the discovery calls.
type Caller struct {
	// ID is the caller's MACP sender id; "" for an anonymous caller.
	ID string
	// AllowedModes restricts the modes the caller may start sessions in;
	// empty allows every mode.
	AllowedModes []string
	// CanStartSessions may send SessionStart.
	CanStartSessions bool
	// MaxOpenSessions caps the sessions the caller may have open or
	// suspended at once; 0 leaves the server's default.
	MaxOpenSessions int
	// Observer may read and watch every session, and never sends.
	Observer bool
	// CanManageModes may register, unregister, promote and upload modes.
	CanManageModes bool
	// CanManagePolicies may register, unregister and push policies.
	CanManagePolicies bool
	// Admin may call concord.admin.v1.AdminService and change things
	// through the admin UI.
	Admin bool
}

// Anonymous reports whether the caller presented no usable credentials.
func (c Caller) Anonymous() bool { return c.ID == "" }

// MayUseMode reports whether the caller may start a session in mode.
func (c Caller) MayUseMode(mode string) bool {
	return len(c.AllowedModes) == 0 || slices.Contains(c.AllowedModes, mode)
}

// MayObserve reports whether the caller may read a session with metadata
// md: observers read every session, others those they started or take
// part in.
func (c Caller) MayObserve(md *macpv1.SessionMetadata) bool {
	if c.Observer {
		return true
	}
	if c.ID == "" {
		return false
	}
	return c.ID == md.GetInitiator() || slices.Contains(md.GetParticipants(), c.ID)
}

// Operator is the caller the runtime itself acts as when a local operator
// (dev mode on loopback, the replay tool) needs every read and every right.
func Operator(id string) Caller {
	return Caller{ID: id, CanStartSessions: true, Observer: true, CanManageModes: true, CanManagePolicies: true, Admin: true}
}

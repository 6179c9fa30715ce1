package login

import (
	"encoding/json"
	"errors"
	"fmt"

	"github.com/concord-macp/concord/host/access"
	"github.com/concord-macp/concord/host/auth"
)

// Scopes is the shape of the macp_scopes claim: the capabilities an
// identity provider grants, with the field names of a tokens-file entry.
type Scopes struct {
	IsAdmin               bool     `json:"is_admin"`
	IsObserver            bool     `json:"is_observer"`
	CanManageModeRegistry bool     `json:"can_manage_mode_registry"`
	CanManagePolicies     bool     `json:"can_manage_policies"`
	CanStartSessions      bool     `json:"can_start_sessions"`
	AllowedModes          []string `json:"allowed_modes"`
	MaxOpenSessions       int      `json:"max_open_sessions"`
}

// CallerFromClaims maps an ID token's claims to a caller the way the API
// maps an agent's JWT (auth.ScopedCaller): the identity is the subject
// ("sub"), the capabilities come from the macp_scopes claim. Without the
// admin or observer capability the console refuses the caller.
func CallerFromClaims(raw json.RawMessage) (access.Caller, error) {
	var claims struct {
		Subject string          `json:"sub"`
		Scopes  json.RawMessage `json:"macp_scopes"`
	}
	if err := json.Unmarshal(raw, &claims); err != nil {
		return access.Caller{}, fmt.Errorf("the ID token's claims do not fit: %w", err)
	}
	if claims.Subject == "" {
		return access.Caller{}, errors.New("the ID token has no subject")
	}
	c, err := auth.ScopedCaller(claims.Subject, claims.Scopes)
	if err != nil {
		return access.Caller{}, fmt.Errorf("the ID token does not name a usable caller: %w", err)
	}
	return c, nil
}

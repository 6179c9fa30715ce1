package login

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"unicode"

	"github.com/concord-macp/concord/host/access"
)

// Scopes is the macp_scopes claim: the capabilities an identity provider
// grants, with the field names of a tokens-file entry.
type Scopes struct {
	IsAdmin               bool     `json:"is_admin"`
	IsObserver            bool     `json:"is_observer"`
	CanManageModeRegistry bool     `json:"can_manage_mode_registry"`
	CanManagePolicies     bool     `json:"can_manage_policies"`
	CanStartSessions      bool     `json:"can_start_sessions"`
	AllowedModes          []string `json:"allowed_modes"`
	MaxOpenSessions       int      `json:"max_open_sessions"`
}

// maxIdentityLen bounds the identity an ID token names.
const maxIdentityLen = 256

// CallerFromClaims maps an ID token's claims to a caller: the identity is
// the subject ("sub"), the capabilities come from the macp_scopes claim;
// without it the caller has none (and the console refuses it).
func CallerFromClaims(raw json.RawMessage) (access.Caller, error) {
	var claims struct {
		Subject string  `json:"sub"`
		Scopes  *Scopes `json:"macp_scopes"`
	}
	if err := json.Unmarshal(raw, &claims); err != nil {
		return access.Caller{}, fmt.Errorf("the ID token's claims do not fit: %w", err)
	}
	sub := claims.Subject
	switch {
	case sub == "":
		return access.Caller{}, errors.New("the ID token has no subject")
	case len(sub) > maxIdentityLen || strings.ContainsFunc(sub, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }):
		return access.Caller{}, errors.New("the ID token's subject is not a usable identity")
	}
	c := access.Caller{ID: sub}
	if s := claims.Scopes; s != nil {
		if s.MaxOpenSessions < 0 {
			return access.Caller{}, errors.New("macp_scopes.max_open_sessions must not be negative")
		}
		c.Admin, c.Observer = s.IsAdmin, s.IsObserver
		c.CanManageModes, c.CanManagePolicies = s.CanManageModeRegistry, s.CanManagePolicies
		c.CanStartSessions, c.AllowedModes, c.MaxOpenSessions = s.CanStartSessions, s.AllowedModes, s.MaxOpenSessions
	}
	return c, nil
}

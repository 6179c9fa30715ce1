package login

import (
	"encoding/json"
	"testing"
)

func TestCallerFromClaims(t *testing.T) {
	c, err := CallerFromClaims(json.RawMessage(`{"sub":"ops-ann","macp_scopes":{"is_admin":true,"can_manage_policies":true,"allowed_modes":["m"]}}`))
	if err != nil || c.ID != "ops-ann" || !c.Admin || c.Observer || !c.CanManagePolicies || c.CanManageModes || len(c.AllowedModes) != 1 {
		t.Fatalf("got %+v, %v", c, err)
	}
	c, err = CallerFromClaims(json.RawMessage(`{"sub":"agent"}`))
	if err != nil || c.Admin || c.Observer {
		t.Fatalf("no scopes: %+v, %v", c, err)
	}
	for _, bad := range []string{`{}`, `{"sub":"a b"}`, `{"sub":"x","macp_scopes":{"is_admin":"yes"}}`, `{"sub":"x","macp_scopes":{"max_open_sessions":-1}}`, `[1]`} {
		if _, err := CallerFromClaims(json.RawMessage(bad)); err == nil {
			t.Errorf("%s: accepted", bad)
		}
	}
}

func TestSafeNextStaysOnTheConsole(t *testing.T) {
	for in, want := range map[string]string{
		"/ui/sessions?state=OPEN":  "/ui/sessions?state=OPEN",
		"https://evil.example/ui/": "/ui/",
		"//evil.example/ui/":       "/ui/",
		"/elsewhere":               "/ui/",
		"/ui/\\evil":               "/ui/",
		"":                         "/ui/",
	} {
		if got := safeNext(in); got != want {
			t.Errorf("safeNext(%q) = %q, want %q", in, got, want)
		}
	}
}

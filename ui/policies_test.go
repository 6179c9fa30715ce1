package ui_test

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// quorumOfTwo is an uploaded Decision policy: a positive commitment needs
// two APPROVE votes.
const quorumOfTwo = `package concord.custom

mode := "macp.mode.decision.v1"

approvals := count([v | some by_voter in input.state.votes; some _, b in by_voter; b.vote == "APPROVE"; v := 1])

govern := {"allow": true, "reasons": []} if approvals >= 3
else := {"allow": false, "reasons": [sprintf("three approvals needed, %d given", [approvals])]}

test_three_pass if {
	govern.allow with input as {"state": {"votes": {"p1": {"a": {"vote": "APPROVE"}, "b": {"vote": "APPROVE"}, "c": {"vote": "APPROVE"}}}}}
}
`

func pushForm(id, rego, action string) url.Values {
	return url.Values{"policy_id": {id}, "mode": {decision}, "description": {"three approvals"}, "schema_version": {"3"},
		"rules": {"{}"}, "rego": {rego}, "action": {action}, "limit": {"10"}}
}

func TestPolicyPushRunsTestsAndRefusesAFailingOne(t *testing.T) {
	srv := startServer(t)
	c := browser(t)
	failing := quorumOfTwo + "\ntest_two_pass if {\n\tgovern.allow with input as {\"state\": {\"votes\": {\"p1\": {\"a\": {\"vote\": \"APPROVE\"}, \"b\": {\"vote\": \"APPROVE\"}}}}}\n}\n"
	status, body := post(t, c, srv.URL, "/ui/policies/push", pushForm("policy.acme.three-v1", failing, "save"))
	if status != http.StatusUnprocessableEntity {
		t.Fatalf("push with a failing test: %d", status)
	}
	mustContain(t, "refused push", body, `id="test-results"`, "concord.custom.test_three_pass", "concord.custom.test_two_pass",
		`badge bad">FAIL`, "Not saved: 1 of 2 shipped test(s) failed.")
	if status, _ := get(t, c, srv.URL, "/ui/policies/policy.acme.three-v1"); status != http.StatusNotFound {
		t.Fatalf("the refused policy was registered: %d", status)
	}

	status, body = post(t, c, srv.URL, "/ui/policies/push", pushForm("policy.acme.three-v1", quorumOfTwo, "test"))
	mustContain(t, "test only", body, `badge ok">pass`)
	if status != http.StatusOK || strings.Contains(body, "push-ok") {
		t.Fatalf("test only: %d, or it saved", status)
	}
	status, body = post(t, c, srv.URL, "/ui/policies/push", pushForm("policy.acme.three-v1", quorumOfTwo, "save"))
	if status != http.StatusOK {
		t.Fatalf("save: %d\n%.3000s", status, body)
	}
	mustContain(t, "saved", body, `id="push-ok"`, "Saved policy.acme.three-v1", "policy.acme.three")

	for name, form := range map[string]url.Values{
		"syntax error": pushForm("policy.acme.bad-v1", "package concord.custom\nmode :=", "save"),
		"bad schema": func() url.Values {
			f := pushForm("policy.acme.bad-v2", quorumOfTwo, "save")
			f.Set("schema_version", "x")
			return f
		}(),
		"unknown action": pushForm("policy.acme.bad-v3", quorumOfTwo, "launch"),
		"taken id":       pushForm("policy.acme.three-v1", quorumOfTwo, "save"),
		"bad rules": func() url.Values {
			f := pushForm("policy.acme.bad-v4", "", "save")
			f.Set("rules", `{"voting":{"algorithm":"dice"}}`)
			return f
		}(),
	} {
		status, body := post(t, c, srv.URL, "/ui/policies/push", form)
		if status != http.StatusBadRequest || !strings.Contains(body, `id="push-error"`) {
			t.Errorf("%s: status %d, want 400 with the error shown", name, status)
		}
	}
	_, body = get(t, c, srv.URL, "/ui/policies")
	if strings.Contains(body, "policy.acme.bad-") {
		t.Fatal("a refused push was registered")
	}
}

func TestPolicyVersionsDiffTryAndImpact(t *testing.T) {
	srv := startServer(t)
	c := browser(t)
	id := decisionSession(t, srv, "", true) // two approvals, allowed by policy.default
	if status, body := post(t, c, srv.URL, "/ui/policies/push", pushForm("policy.acme.three-v1", quorumOfTwo, "save")); status != http.StatusOK {
		t.Fatalf("save v1: %d\n%.2000s", status, body)
	}
	v2 := strings.Replace(quorumOfTwo, `sprintf("three approvals`, `sprintf("still three approvals`, 1)
	if status, body := post(t, c, srv.URL, "/ui/policies/push", pushForm("policy.acme.three-v2", v2, "save")); status != http.StatusOK {
		t.Fatalf("save v2: %d\n%.2000s", status, body)
	}
	_, body := get(t, c, srv.URL, "/ui/policies")
	mustContain(t, "families", body, `rowspan="2">policy.acme.three`, "policy.acme.three-v1", "policy.acme.three-v2", "uploaded Rego")

	_, body = get(t, c, srv.URL, "/ui/policies/diff?a=policy.acme.three-v1&b=policy.acme.three-v2")
	mustContain(t, "diff", body, `class="del">-`, `class="add">+`, "still three approvals")
	if status, _ := get(t, c, srv.URL, "/ui/policies/diff?a=policy.acme.three-v1&b=nope"); status != http.StatusNotFound {
		t.Fatalf("diff with an unknown version: %d", status)
	}

	_, body = get(t, c, srv.URL, "/ui/policies/policy.acme.three-v2?session="+id)
	mustContain(t, "try it", body, `id="try-result"`, "would deny", "three approvals needed, 2 given", "This version decides differently")
	_, body = get(t, c, srv.URL, "/ui/policies/policy.default?session="+id)
	mustContain(t, "try the recorded policy", body, "would allow", "Same decision as recorded.")
	_, body = get(t, c, srv.URL, "/ui/policies/policy.acme.three-v2?session=nope")
	mustContain(t, "try an unknown session", body, `id="try-result"`, "does not exist")

	_, body = get(t, c, srv.URL, "/ui/policies/policy.acme.three-v2?impact=10")
	mustContain(t, "impact of a version", body, "1 recorded commitment(s) checked", "1 would change", id, "POLICY_DENIED")

	// The impact of a candidate that is not registered.
	candidate := strings.Replace(quorumOfTwo, ">= 3", ">= 2", 1)
	candidate = strings.Replace(candidate, `"c": {"vote": "APPROVE"}`, `"c": {"vote": "REJECT"}`, 1)
	status, body := post(t, c, srv.URL, "/ui/policies/push", pushForm("policy.acme.three-v3", candidate, "impact"))
	if status != http.StatusOK {
		t.Fatalf("candidate impact: %d\n%.2000s", status, body)
	}
	mustContain(t, "candidate impact", body, `id="impact"`, "1 recorded commitment(s) checked", "0 would change", "1 unchanged")
	if status, _ := get(t, c, srv.URL, "/ui/policies/policy.acme.three-v3"); status != http.StatusNotFound {
		t.Fatal("measuring a candidate's impact registered it")
	}

	if status, _ := get(t, c, srv.URL, "/ui/policies/policy.nope"); status != http.StatusNotFound {
		t.Fatal("unknown policy page")
	}
	status, body = post(t, c, srv.URL, "/ui/policies/unregister", url.Values{"policy_id": {"policy.acme.three-v1"}})
	mustContain(t, "unregister", body, "Unregistered policy.acme.three-v1")
	if status != http.StatusOK {
		t.Fatalf("unregister: %d", status)
	}
	if status, _ := post(t, c, srv.URL, "/ui/policies/unregister", url.Values{"policy_id": {"policy.default"}}); status != http.StatusBadRequest {
		t.Fatalf("unregister a built-in: %d, want 400", status)
	}
}

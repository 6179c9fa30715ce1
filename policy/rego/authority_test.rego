package concord.builtin.authority_test

import data.concord.builtin.authority

check(mode, rules, sender) := v if {
	v := authority.verdict with input as {
		"policy": {"policy_id": "policy.test", "mode": mode, "schema_version": 1, "rules": rules},
		"session": {"mode": mode, "initiator": "boss", "participants": ["a", "b"]},
		"sender": sender,
	}
}

decision := "macp.mode.decision.v1"

test_initiator_only_by_default if {
	check(decision, {}, "boss").allow
	not check(decision, {}, "a").allow
	count(check(decision, {}, "a").reasons) == 1
}

test_any_participant if {
	rules := {"commitment": {"authority": "any_participant"}}
	check(decision, rules, "boss").allow
	check(decision, rules, "a").allow
	not check(decision, rules, "outsider").allow
}

test_designated_role_is_literal if {
	rules := {"commitment": {"authority": "designated_role", "designated_roles": ["b", "auditor"]}}
	check(decision, rules, "b").allow
	check(decision, rules, "auditor").allow
	not check(decision, rules, "boss").allow
	not check(decision, rules, "a").allow
}

test_authority_applies_to_every_builtin_mode if {
	rules := {"commitment": {"authority": "any_participant"}}
	every mode in ["macp.mode.proposal.v1", "macp.mode.task.v1", "macp.mode.handoff.v1", "macp.mode.quorum.v1"] {
		check(mode, rules, "a").allow
	}
}

test_multi_round_and_extensions_are_initiator_only if {
	rules := {"commitment": {"authority": "any_participant"}}
	not check("ext.multi_round.v1", rules, "a").allow
	check("ext.multi_round.v1", rules, "boss").allow
	not check("ext.vendor.thing.v1", rules, "a").allow
}

test_empty_sender_never_commits if {
	not authority.verdict.allow with input as {"policy": {"rules": {}}, "session": {"mode": decision, "initiator": "", "participants": []}, "sender": ""}
}

test_unknown_authority_denies_everyone if {
	v := check(decision, {"commitment": {"authority": "anyone"}}, "boss")
	not v.allow
	contains(v.reasons[0], "not known")
}

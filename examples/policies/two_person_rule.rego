# Two-person rule with a designated approver role, for
# macp.mode.decision.v1.
#
# A positive Decision commitment needs APPROVE votes from at least
# min_approvals distinct participants on one and the same proposal, and at
# least one of those approvals must come from a designated approver. A
# negative commitment (a decline) is not gated by this rule.
#
# Parameters, read from the descriptor's rules:
#
#   approvers      [string]  identities holding the approver role; required,
#                            an empty or missing list denies every positive
#                            commitment (fail closed)
#   min_approvals  integer   distinct approvers needed on one proposal;
#                            default 2, values below 2 are raised to 2
#
# Every other rules key (voting, objection_handling, evaluation,
# commitment) keeps its built-in meaning: the built-in Decision verdict
# (data.concord.builtin.decision.verdict) still runs, and its denial
# reasons are reported after this rule's.
package concord.custom

mode := "macp.mode.decision.v1"

default approvers := []

approvers := input.policy.rules.approvers

approver_set := {a | some a in approvers; is_string(a); a != ""}

default requested_min := 2

requested_min := input.policy.rules.min_approvals

min_approvals := max([2, requested_min]) if is_number(requested_min)
else := 2

default positive := false

positive := input.commitment.outcome_positive

# Distinct APPROVE voters of each proposal.
approvals[pid] := voters if {
	some pid, by_voter in input.state.votes
	voters := {v | some v, ballot in by_voter; ballot.vote == "APPROVE"}
}

# Proposals that satisfy the rule.
qualifying contains pid if {
	some pid, voters in approvals
	count(voters) >= min_approvals
	count(voters & approver_set) > 0
}

violation contains "two-person rule: rules.approvers names no designated approver, so no positive commitment can pass" if {
	positive
	count(approver_set) == 0
}

violation contains msg if {
	positive
	count(approver_set) > 0
	count(qualifying) == 0
	msg := sprintf(
		"two-person rule: a positive commitment needs APPROVE votes from at least %d distinct participants on one proposal, at least one of them a designated approver (%s); %s",
		[min_approvals, concat(", ", sort(approver_set)), approval_summary],
	)
}

approval_lines := [line |
	some pid, voters in approvals
	count(voters) > 0
	line := sprintf("%s has %d approval(s) from %s, %s", [pid, count(voters), concat(", ", sort(voters)), role_text(voters)])
]

approval_summary := "no proposal has any approval" if count(approval_lines) == 0
else := concat("; ", approval_lines)

role_text(voters) := "including a designated approver" if count(voters & approver_set) > 0
else := "none of them a designated approver"

base := data.concord.builtin.decision.verdict

govern := {"allow": base.allow, "reasons": base.reasons} if count(violation) == 0
else := {"allow": false, "reasons": array.concat(sort(violation), [r | some r in base.reasons; not base.allow])}

# --- shipped tests (run at upload) ---

fx_policy(rules) := {"policy_id": "policy.example.two-person", "mode": mode, "schema_version": 3, "rules": rules}

fx_rules := {"approvers": ["carol"]}

# ballots: [[proposal_id, voter, vote], ...]
fx_state(ballots) := {"votes": {pid: {v: {"vote": vote, "reason": ""} |
	some b in ballots
	b[0] == pid
	v := b[1]
	vote := b[2]
} |
	some ballot in ballots
	pid := ballot[0]
}}

fx_govern(rules, ballots, positive_outcome) := v if {
	v := govern with input as {
		"policy": fx_policy(rules),
		"session": {"initiator": "boss", "participants": ["alice", "bob", "carol", "dave"]},
		"sender": "boss",
		"commitment": {"outcome_positive": positive_outcome},
		"state": fx_state(ballots),
	}
}

test_approver_plus_one_passes if {
	v := fx_govern(fx_rules, [["p1", "alice", "APPROVE"], ["p1", "carol", "APPROVE"]], true)
	v.allow
}

test_two_approvals_without_approver_fail if {
	v := fx_govern(fx_rules, [["p1", "alice", "APPROVE"], ["p1", "bob", "APPROVE"]], true)
	not v.allow
	contains(v.reasons[0], "designated approver (carol)")
	contains(v.reasons[0], "p1 has 2 approval(s) from alice, bob, none of them a designated approver")
}

test_approver_alone_fails if {
	v := fx_govern(fx_rules, [["p1", "carol", "APPROVE"]], true)
	not v.allow
	contains(v.reasons[0], "at least 2 distinct participants")
}

test_approvals_must_be_on_one_proposal if {
	not fx_govern(fx_rules, [["p1", "alice", "APPROVE"], ["p2", "carol", "APPROVE"]], true).allow
}

test_reject_votes_do_not_count if {
	not fx_govern(fx_rules, [["p1", "alice", "REJECT"], ["p1", "carol", "APPROVE"]], true).allow
}

test_no_votes_reason if {
	v := fx_govern(fx_rules, [], true)
	not v.allow
	contains(v.reasons[0], "no proposal has any approval")
}

test_min_approvals_parameter if {
	rules := {"approvers": ["carol"], "min_approvals": 3}
	not fx_govern(rules, [["p1", "alice", "APPROVE"], ["p1", "carol", "APPROVE"]], true).allow
	fx_govern(rules, [["p1", "alice", "APPROVE"], ["p1", "bob", "APPROVE"], ["p1", "carol", "APPROVE"]], true).allow
}

test_min_approvals_never_below_two if {
	not fx_govern({"approvers": ["carol"], "min_approvals": 1}, [["p1", "carol", "APPROVE"]], true).allow
}

test_missing_approvers_fail_closed if {
	v := fx_govern({}, [["p1", "alice", "APPROVE"], ["p1", "bob", "APPROVE"]], true)
	not v.allow
	contains(v.reasons[0], "names no designated approver")
}

test_decline_is_not_gated if {
	fx_govern(fx_rules, [], false).allow
}

test_builtin_rules_still_apply if {
	# A majority vote that fails is reported after the two-person rule.
	rules := {"approvers": ["carol"], "voting": {"algorithm": "majority", "threshold": 0.5}}
	ballots := [["p1", "carol", "APPROVE"], ["p1", "alice", "REJECT"], ["p1", "bob", "REJECT"]]
	v := fx_govern(rules, ballots, true)
	not v.allow
	count(v.reasons) == 2
	startswith(v.reasons[1], "the vote failed")
}

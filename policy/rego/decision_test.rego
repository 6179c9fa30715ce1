package concord.builtin.decision_test

import data.concord.builtin.decision

# --- helpers ---

three := ["orch", "a", "b"]

descriptor(version, rules) := {
	"policy_id": "policy.test.decision",
	"mode": "macp.mode.decision.v1",
	"schema_version": version,
	"rules": rules,
}

# ballots are [proposal_id, voter, vote] triples.
votes_of(ballots) := {pid: {voter: {"vote": v, "reason": ""} |
	some [p, voter, v] in ballots
	p == pid
} |
	some [pid, _, _] in ballots
}

critical(n) := [{"proposal_id": "p1", "severity": "critical", "reason": "no", "sender": "b"} | some _ in numbers.range(1, n)]

run(version, rules, participants, ballots, objections, evaluations, positive) := v if {
	v := decision.verdict with input as {
			"policy": descriptor(version, rules),
			"session": {"mode": "macp.mode.decision.v1", "initiator": "orch", "participants": participants},
			"sender": "orch",
			"commitment": {"outcome_positive": positive},
			"state": {"votes": votes_of(ballots), "objections": objections, "evaluations": evaluations},
		}
}

tally(version, rules, participants, ballots, positive) := run(version, rules, participants, ballots, [], [], positive)

allowed(v) if {
	v.allow == true
	count(v.reasons) > 0 # an allow carries its basis
}

denied(v) if {
	v.allow == false
	count(v.reasons) > 0
	every r in v.reasons {
		is_string(r)
		r != ""
	}
}

majority := {"voting": {"algorithm": "majority", "threshold": 0.5}}

# --- face value ---

test_default_rules_take_face_value if {
	allowed(tally(1, {}, three, [], true))
	allowed(tally(1, {}, three, [], false))
}

test_none_v3_empty_tally_both_directions if {
	rules := {"voting": {"algorithm": "none"}}
	allowed(tally(3, rules, three, [], true))
	allowed(tally(3, rules, three, [], false))
}

test_none_ignores_a_rejecting_vote if {
	allowed(tally(3, {"voting": {"algorithm": "none"}}, three, [["p1", "a", "REJECT"]], true))
}

# --- empty tally by schema version ---

test_majority_v3_empty_tally_denies_both if {
	denied(tally(3, majority, three, [], true))
	denied(tally(3, majority, three, [], false))
}

test_majority_v2_empty_tally_legacy_fail_open if {
	allowed(tally(2, majority, three, [], true))
	denied(tally(2, majority, three, [], false))
}

test_majority_v1_empty_tally_with_require_vote_quorum_denies if {
	rules := json.patch(majority, [{"op": "add", "path": "/commitment", "value": {"require_vote_quorum": true}}])
	denied(tally(1, rules, three, [], true))
}

test_abstain_only_is_no_votes if {
	ballots := [["p1", "a", "ABSTAIN"], ["p1", "b", "ABSTAIN"]]
	denied(tally(3, majority, three, ballots, true))
	denied(tally(3, majority, three, ballots, false))
	v := tally(3, majority, three, ballots, false)
	some r in v.reasons
	contains(r, "schema_version 3")
}

# --- majority ---

test_majority_even_split_passes if {
	ballots := [["p1", "a", "APPROVE"], ["p1", "b", "REJECT"]]
	allowed(tally(3, majority, three, ballots, true))
}

test_majority_passed_blocks_a_decline if {
	ballots := [["p1", "a", "APPROVE"], ["p1", "b", "REJECT"]]
	denied(tally(3, majority, three, ballots, false))
}

test_allow_decline_over_approval_v2 if {
	rules := json.patch(majority, [{"op": "add", "path": "/commitment", "value": {"allow_decline_over_approval": true}}])
	allowed(tally(2, rules, three, [["p1", "a", "APPROVE"]], false))
	allowed(tally(3, rules, three, [["p1", "a", "APPROVE"]], false))
}

test_allow_decline_over_approval_ignored_in_v1 if {
	rules := json.patch(majority, [{"op": "add", "path": "/commitment", "value": {"allow_decline_over_approval": true}}])
	denied(tally(1, rules, three, [["p1", "a", "APPROVE"]], false))
}

test_majority_failed_decline_with_reject if {
	ballots := [["p1", "a", "REJECT"], ["p1", "b", "REJECT"]]
	allowed(tally(3, majority, three, ballots, false))
	denied(tally(3, majority, three, ballots, true))
}

test_ballots_count_across_proposals if {
	# a approves p1 and p2, b rejects p1: 2 of 3 decisive approve.
	ballots := [["p1", "a", "APPROVE"], ["p2", "a", "APPROVE"], ["p1", "b", "REJECT"]]
	rules := {"voting": {"algorithm": "majority", "threshold": 0.6}}
	allowed(tally(3, rules, three, ballots, true))
}

# --- supermajority in binary64 ---

super := {"voting": {"algorithm": "supermajority", "threshold": 0.6666666666666666}}

split(approve, total) := [["p1", sprintf("v%03d", [i]), ballot(i, approve)] | some i in numbers.range(1, total)]

ballot(i, approve) := "APPROVE" if {
	i <= approve
} else := "REJECT"

test_supermajority_two_thirds_passes if {
	allowed(tally(3, super, three, split(2, 3), true))
	allowed(tally(3, super, three, split(4, 6), true))
	allowed(tally(3, super, three, split(20, 30), true))
	allowed(tally(3, super, three, split(67, 100), true))
}

test_supermajority_66_of_100_fails if {
	denied(tally(3, super, three, split(66, 100), true))
	allowed(tally(3, super, three, split(66, 100), false))
}

test_supermajority_legacy_threshold_uses_two_thirds if {
	legacy := {"voting": {"algorithm": "supermajority", "threshold": 0.5}}
	denied(tally(1, legacy, three, split(3, 5), true)) # 0.6 < 2/3
	allowed(tally(1, legacy, three, split(2, 3), true))
	absent := {"voting": {"algorithm": "supermajority"}}
	denied(tally(1, absent, three, split(3, 5), true))
}

test_supermajority_v3_empty_tally_denies_both if {
	rules := {"voting": {"algorithm": "supermajority", "threshold": 0.67}}
	denied(tally(3, rules, three, [], true))
	denied(tally(3, rules, three, [], false))
}

# --- unanimous ---

unanimous := {"voting": {"algorithm": "unanimous"}}

test_unanimous_needs_every_declared_participant if {
	parts := ["orch", "a"]
	denied(tally(3, unanimous, parts, [], true))
	denied(tally(3, unanimous, parts, [["p1", "a", "APPROVE"]], true))
	allowed(tally(3, unanimous, parts, [["p1", "a", "APPROVE"], ["p1", "orch", "APPROVE"]], true))
}

test_unanimous_approval_on_any_proposal_counts if {
	allowed(tally(3, unanimous, ["orch", "a"], [["p1", "a", "APPROVE"], ["p2", "orch", "APPROVE"]], true))
}

test_unanimous_any_reject_fails if {
	ballots := [["p1", "a", "APPROVE"], ["p1", "orch", "APPROVE"], ["p2", "a", "REJECT"]]
	denied(tally(3, unanimous, ["orch", "a"], ballots, true))
	allowed(tally(3, unanimous, ["orch", "a"], ballots, false))
}

test_unanimous_failed_without_reject_keeps_decline_guard if {
	v := tally(3, unanimous, ["orch", "a"], [["p1", "a", "APPROVE"]], false)
	denied(v)
	some r in v.reasons
	startswith(r, "decline guard")
}

test_unanimous_zero_participants_never_passes if {
	denied(tally(3, unanimous, [], [], true))
	denied(tally(1, {"voting": {"algorithm": "unanimous"}, "commitment": {"require_vote_quorum": true}}, [], [], true))
}

# --- weighted ---

weighted := {"voting": {"algorithm": "weighted", "threshold": 0.5, "weights": {"a": 1}}}

test_weighted_zero_weight_reject_is_no_votes_v3 if {
	ballots := [["p1", "b", "REJECT"]]
	denied(tally(3, weighted, ["a", "b"], ballots, false))
	denied(tally(3, weighted, ["a", "b"], ballots, true))
}

test_weighted_zero_weight_reject_is_no_votes_v1 if {
	ballots := [["p1", "b", "REJECT"]]
	denied(tally(1, weighted, ["a", "b"], ballots, false))
	allowed(tally(1, weighted, ["a", "b"], ballots, true))
}

test_weighted_ratio if {
	rules := {"voting": {"algorithm": "weighted", "threshold": 0.6, "weights": {"a": 2, "b": 1}}}
	allowed(tally(3, rules, ["a", "b"], [["p1", "a", "APPROVE"], ["p1", "b", "REJECT"]], true))
	denied(tally(3, rules, ["a", "b"], [["p1", "a", "REJECT"], ["p1", "b", "APPROVE"]], true))
	allowed(tally(3, rules, ["a", "b"], [["p1", "a", "REJECT"], ["p1", "b", "APPROVE"]], false))
}

test_weighted_zero_weight_voter_still_counts_for_quorum if {
	rules := json.patch(weighted, [
		{"op": "add", "path": "/voting/quorum", "value": {"type": "count", "value": 2}},
		{"op": "add", "path": "/commitment", "value": {"require_vote_quorum": true}},
	])
	allowed(tally(3, rules, ["a", "b"], [["p1", "a", "APPROVE"], ["p1", "b", "REJECT"]], true))
	denied(tally(3, rules, ["a", "b"], [["p1", "a", "APPROVE"]], true))
}

# --- plurality ---

plurality := {"voting": {"algorithm": "plurality"}}

test_plurality_tie_fails if {
	ballots := [["p1", "a", "APPROVE"], ["p1", "b", "REJECT"]]
	denied(tally(3, plurality, three, ballots, true))
	allowed(tally(3, plurality, three, ballots, false))
}

test_plurality_strict_majority_passes if {
	ballots := [["p1", "a", "APPROVE"], ["p1", "b", "REJECT"], ["p1", "orch", "APPROVE"]]
	allowed(tally(3, plurality, three, ballots, true))
}

# --- quorum floor ---

quorum_rules(type, value) := {
	"voting": {"algorithm": "majority", "quorum": {"type": type, "value": value}},
	"commitment": {"require_vote_quorum": true},
}

test_quorum_count_floor if {
	denied(tally(2, quorum_rules("count", 2), three, [["p1", "a", "APPROVE"]], true))
	allowed(tally(2, quorum_rules("count", 2), three, [["p1", "a", "APPROVE"], ["p1", "b", "APPROVE"]], true))
}

test_quorum_floor_denies_a_decline_too if {
	denied(tally(3, quorum_rules("count", 3), three, [["p1", "a", "REJECT"], ["p1", "b", "REJECT"]], false))
	allowed(tally(3, quorum_rules("count", 2), three, [["p1", "a", "REJECT"], ["p1", "b", "REJECT"]], false))
}

test_quorum_percentage_is_0_to_100 if {
	# 1 of 3 voters is 33.3 %, 2 of 3 is 66.7 %.
	denied(tally(3, quorum_rules("percentage", 50), three, [["p1", "a", "APPROVE"]], true))
	allowed(tally(3, quorum_rules("percentage", 50), three, [["p1", "a", "APPROVE"], ["p1", "b", "APPROVE"]], true))
	allowed(tally(3, quorum_rules("percentage", 0.5), three, [["p1", "a", "APPROVE"]], true))
}

test_quorum_counts_abstentions_as_voters if {
	ballots := [["p1", "a", "APPROVE"], ["p1", "b", "ABSTAIN"]]
	allowed(tally(3, quorum_rules("count", 2), three, ballots, true))
}

test_quorum_inert_without_require_vote_quorum if {
	rules := {"voting": {"algorithm": "majority", "quorum": {"type": "count", "value": 3}}}
	allowed(tally(3, rules, three, [["p1", "a", "APPROVE"]], true))
}

test_quorum_floor_applies_under_none if {
	rules := {"voting": {"algorithm": "none", "quorum": {"type": "count", "value": 1}}, "commitment": {"require_vote_quorum": true}}
	denied(tally(3, rules, three, [], true))
	denied(tally(3, rules, three, [], false))
	allowed(tally(3, rules, three, [["p1", "a", "REJECT"]], true))
}

# --- veto ---

veto(action) := {
	"voting": {"algorithm": "majority"},
	"objection_handling": {"critical_severity_vetoes": true, "critical_objection_action": action},
}

approve_all := [["p1", "a", "APPROVE"], ["p1", "b", "APPROVE"]]

test_veto_denies_positive_commitment if {
	denied(run(2, veto("deny"), three, approve_all, critical(1), [], true))
	denied(run(2, veto("finalize_decline"), three, approve_all, critical(1), [], true))
}

test_veto_deny_and_hold_read_alike if {
	d := run(2, veto("deny"), three, [["p1", "a", "REJECT"]], critical(1), [], false)
	h := run(2, veto("hold"), three, [["p1", "a", "REJECT"]], critical(1), [], false)
	denied(d)
	d == h
}

test_finalize_decline_allows_at_empty_v3_tally if {
	allowed(run(3, veto("finalize_decline"), three, [], critical(1), [], false))
}

test_finalize_decline_waives_the_quorum_floor if {
	rules := json.patch(veto("finalize_decline"), [
		{"op": "add", "path": "/voting/quorum", "value": {"type": "count", "value": 1}},
		{"op": "add", "path": "/commitment", "value": {"require_vote_quorum": true}},
	])
	allowed(run(3, rules, three, [], critical(1), [], false))
	denied(run(3, rules, three, [], critical(1), [], true))
}

test_finalize_decline_skips_evaluation_prerequisites if {
	rules := json.patch(veto("finalize_decline"), [{"op": "add", "path": "/evaluation", "value": {"required_before_voting": true}}])
	allowed(run(3, rules, three, [], critical(1), [], false))
}

test_finalize_decline_is_v2_only if {
	# A version 1 descriptor cannot carry the key; a stored one is read as deny.
	denied(run(1, veto("finalize_decline"), three, [], critical(1), [], false))
}

test_veto_threshold if {
	rules := json.patch(veto("deny"), [{"op": "add", "path": "/objection_handling/veto_threshold", "value": 2}])
	allowed(run(2, rules, three, approve_all, critical(1), [], true))
	denied(run(2, rules, three, approve_all, critical(2), [], true))
}

test_non_critical_objections_do_not_veto if {
	high := [{"proposal_id": "p1", "severity": "high", "reason": "no", "sender": "b"}]
	allowed(run(2, veto("deny"), three, approve_all, high, [], true))
}

test_critical_objection_without_vetoes_is_advisory if {
	allowed(run(2, majority, three, approve_all, critical(3), [], true))
}

# --- evaluation prerequisites ---

evaluation(rec, confidence) := {"proposal_id": "p1", "recommendation": rec, "confidence": confidence, "reason": "", "sender": "a"}

test_required_before_voting if {
	rules := {"evaluation": {"required_before_voting": true}}
	denied(run(3, rules, three, [], [], [], true))
	denied(run(3, rules, three, [], [], [evaluation("REVIEW", 1)], true))
	allowed(run(3, rules, three, [], [], [evaluation("BLOCK", 0.1)], true))
}

test_minimum_confidence if {
	rules := {"evaluation": {"required_before_voting": true, "minimum_confidence": 0.7}}
	denied(run(3, rules, three, [], [], [evaluation("APPROVE", 0.5)], true))
	allowed(run(3, rules, three, [], [], [evaluation("APPROVE", 0.5), evaluation("REJECT", 0.7)], true))
}

test_minimum_confidence_alone_is_inert if {
	allowed(run(3, {"evaluation": {"minimum_confidence": 0.9}}, three, [], [], [], true))
}

# --- verdict shape ---

test_unknown_algorithm_denies if {
	denied(tally(3, {"voting": {"algorithm": "ranked"}}, three, [["p1", "a", "APPROVE"]], true))
}

test_first_deciding_step_gives_the_reason if {
	# Both the quorum floor (step 5) and the empty tally (step 6) deny;
	# the earlier step is reported.
	rules := {"voting": {"algorithm": "majority", "quorum": {"type": "count", "value": 2}}, "commitment": {"require_vote_quorum": true}}
	v := tally(3, rules, three, [], true)
	denied(v)
	count(v.reasons) == 1
	startswith(v.reasons[0], "commitment.require_vote_quorum")
}

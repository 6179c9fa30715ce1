# Weighted vote with a veto holder, for macp.mode.decision.v1.
#
# Each proposal is tallied on its own: approve weight is the sum of the
# weights of the voters who voted APPROVE on it, decisive weight adds the
# weights of those who voted REJECT (ABSTAIN and voters without a positive
# weight are never decisive). A proposal passes when
#
#   approve weight / decisive weight >= threshold
#
# compared in IEEE 754 binary64 (concord.float64_* built-ins), with the
# weights summed in voter order so the result is reproducible.
#
# The veto holder overrides the tally: a REJECT vote by the veto holder on
# any proposal, or a critical objection the veto holder raised, denies
# every positive commitment, whatever the weights say.
#
#   positive commitment  allowed when no veto stands and some proposal passes
#   negative commitment  allowed unless a proposal passed and no veto stands
#                        (a decline may not silently override a passed vote)
#
# Parameters, read from the descriptor's rules:
#
#   weights      {identity: number}  voting weights; required, at least one
#                                    positive weight; unlisted voters weigh 0
#   threshold    number in (0, 1]    default 0.5
#   veto_holder  string              identity holding the veto; required
#
# Malformed parameters deny every commitment with a reason naming the key.
package concord.custom

mode := "macp.mode.decision.v1"

default weights := {}

weights := input.policy.rules.weights

default threshold := 0.5

threshold := input.policy.rules.threshold

default veto_holder := ""

veto_holder := input.policy.rules.veto_holder

default positive := false

positive := input.commitment.outcome_positive

# --- parameter checks (fail closed) ---

config_error contains "rules.weights must be an object of identity -> number with at least one positive weight" if {
	not valid_weights
}

valid_weights if {
	is_object(weights)
	every w in weights {
		is_number(w)
		w >= 0
	}
	some w in weights
	w > 0
}

config_error contains sprintf("rules.threshold must be a number in (0, 1], got %v", [threshold]) if {
	not valid_threshold
}

valid_threshold if {
	is_number(threshold)
	threshold > 0
	threshold <= 1
}

config_error contains "rules.veto_holder must name the identity that holds the veto" if {
	not valid_veto_holder
}

valid_veto_holder if {
	is_string(veto_holder)
	veto_holder != ""
}

# --- the tally, per proposal ---

weight(voter) := w if {
	w := weights[voter]
	is_number(w)
	w > 0
} else := 0

tallies[pid] := {"approve": concord.float64_sum(aw), "decisive": concord.float64_sum(array.concat(aw, rw))} if {
	some pid, by_voter in input.state.votes
	aw := [weight(v) | some v, b in by_voter; b.vote == "APPROVE"]
	rw := [weight(v) | some v, b in by_voter; b.vote == "REJECT"]
}

passing contains pid if {
	some pid, t in tallies
	t.decisive > 0
	concord.float64_cmp(concord.float64_div(t.approve, t.decisive), threshold) >= 0
}

tally_lines := [sprintf("%s: approve weight %v of decisive weight %v", [pid, t.approve, t.decisive]) | some pid, t in tallies]

tally_text := "no votes" if count(tally_lines) == 0
else := concat("; ", tally_lines)

# --- the veto ---

veto contains sprintf("%s voted REJECT on %s", [veto_holder, pid]) if {
	valid_veto_holder
	some pid, by_voter in input.state.votes
	by_voter[veto_holder].vote == "REJECT"
}

veto contains sprintf("%s raised a critical objection to %s", [veto_holder, o.proposal_id]) if {
	valid_veto_holder
	some o in input.state.objections
	o.sender == veto_holder
	o.severity == "critical"
}

# --- the verdict ---

govern := {"allow": false, "reasons": sort(config_error)} if {
	count(config_error) > 0
} else := {"allow": false, "reasons": [sprintf("veto: %s, and %s holds the veto; a positive commitment is denied", [concat(" and ", sort(veto)), veto_holder])]} if {
	positive
	count(veto) > 0
} else := {"allow": true, "reasons": [sprintf("the weighted vote passed on %s (threshold %v)", [concat(", ", sort(passing)), threshold])]} if {
	positive
	count(passing) > 0
} else := {"allow": false, "reasons": [sprintf("the weighted vote failed: no proposal reached approve weight / decisive weight >= %v (%s); a positive commitment is not authorized", [threshold, tally_text])]} if {
	positive
} else := {"allow": false, "reasons": [sprintf("the weighted vote passed on %s (%s) and no veto stands; a negative commitment would override it", [concat(", ", sort(passing)), tally_text])]} if {
	count(passing) > 0
	count(veto) == 0
} else := {"allow": true, "reasons": ["decline authorized: no proposal passed the weighted vote, or a veto stands"]}

# --- shipped tests (run at upload) ---

fx_rules := {"weights": {"alice": 3, "bob": 1, "carol": 1}, "threshold": 0.6, "veto_holder": "carol"}

# ballots: [[proposal_id, voter, vote], ...]
fx_state(ballots, objections) := {
	"votes": {pid: {v: {"vote": vote, "reason": ""} |
		some b in ballots
		b[0] == pid
		v := b[1]
		vote := b[2]
	} |
		some ballot in ballots
		pid := ballot[0]
	},
	"objections": objections,
}

fx_govern(rules, ballots, objections, positive_outcome) := v if {
	v := govern with input as {
		"policy": {"policy_id": "policy.example.weighted-veto", "mode": mode, "schema_version": 3, "rules": rules},
		"session": {"initiator": "boss", "participants": ["alice", "bob", "carol"]},
		"sender": "boss",
		"commitment": {"outcome_positive": positive_outcome},
		"state": fx_state(ballots, objections),
	}
}

critical(sender) := [{"proposal_id": "p1", "severity": "critical", "reason": "unsafe", "sender": sender}]

test_weight_carries_the_vote if {
	# 3 of 4 = 0.75 >= 0.6
	v := fx_govern(fx_rules, [["p1", "alice", "APPROVE"], ["p1", "bob", "REJECT"]], [], true)
	v.allow
	contains(v.reasons[0], "passed on p1")
}

test_below_threshold_fails if {
	# 1 of 4 = 0.25 < 0.6
	v := fx_govern(fx_rules, [["p1", "alice", "REJECT"], ["p1", "bob", "APPROVE"]], [], true)
	not v.allow
	contains(v.reasons[0], "p1: approve weight 1 of decisive weight 4")
}

test_threshold_is_inclusive_in_binary64 if {
	rules := {"weights": {"a": 2, "b": 1}, "threshold": 0.6666666666666666, "veto_holder": "nobody"}
	fx_govern(rules, [["p1", "a", "APPROVE"], ["p1", "b", "REJECT"]], [], true).allow
}

test_veto_holder_reject_denies_despite_weight if {
	v := fx_govern(fx_rules, [["p1", "alice", "APPROVE"], ["p1", "bob", "APPROVE"], ["p1", "carol", "REJECT"]], [], true)
	not v.allow
	v.reasons == ["veto: carol voted REJECT on p1, and carol holds the veto; a positive commitment is denied"]
}

test_veto_holder_reject_on_other_proposal_denies if {
	not fx_govern(fx_rules, [["p1", "alice", "APPROVE"], ["p2", "carol", "REJECT"]], [], true).allow
}

test_veto_holder_critical_objection_denies if {
	v := fx_govern(fx_rules, [["p1", "alice", "APPROVE"]], critical("carol"), true)
	not v.allow
	contains(v.reasons[0], "carol raised a critical objection to p1")
}

test_critical_objection_by_others_is_no_veto if {
	fx_govern(fx_rules, [["p1", "alice", "APPROVE"]], critical("bob"), true).allow
}

test_veto_allows_decline if {
	fx_govern(fx_rules, [["p1", "alice", "APPROVE"], ["p1", "carol", "REJECT"]], [], false).allow
}

test_decline_may_not_override_passed_vote if {
	v := fx_govern(fx_rules, [["p1", "alice", "APPROVE"]], [], false)
	not v.allow
	contains(v.reasons[0], "negative commitment would override it")
}

test_decline_after_failed_vote if {
	fx_govern(fx_rules, [["p1", "bob", "APPROVE"], ["p1", "alice", "REJECT"]], [], false).allow
}

test_unweighted_and_abstaining_voters_are_not_decisive if {
	rules := {"weights": {"alice": 1}, "threshold": 0.5, "veto_holder": "carol"}
	fx_govern(rules, [["p1", "alice", "APPROVE"], ["p1", "bob", "REJECT"], ["p1", "dave", "ABSTAIN"]], [], true).allow
}

test_no_votes_fail if {
	v := fx_govern(fx_rules, [], [], true)
	not v.allow
	contains(v.reasons[0], "(no votes)")
}

test_bad_parameters_fail_closed if {
	v := fx_govern({"weights": {"alice": "heavy"}, "threshold": 2}, [["p1", "alice", "APPROVE"]], [], true)
	not v.allow
	count(v.reasons) == 3
	not fx_govern({"weights": {}, "veto_holder": "carol"}, [["p1", "alice", "APPROVE"]], [], false).allow
}

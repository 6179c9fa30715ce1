# Commitment governance for macp.mode.decision.v1: RFC-MACP-0007 §6.2 with
# RFC-MACP-0012 §4.1 (digest §7.6).
#
# input.policy is the bound descriptor (schema_version and parsed rules);
# input.state is the Decision mode's state view from before the
# Commitment: votes {proposal_id: {voter: {vote, reason}}}, objections
# [{proposal_id, severity, reason, sender}] and evaluations
# [{proposal_id, recommendation, confidence, reason, sender}];
# input.session.participants are the declared participants and
# input.commitment.outcome_positive is the commitment's polarity.
#
# The verdict walks the algorithm's steps in order and stops at the first
# that decides: the reason of a denial is that step's. Ratios, thresholds
# and confidences are compared in binary64 through the concord.float64_*
# built-ins, never as decimals.
#
# This module runs on every Decision Commitment, so it is written for
# OPA's evaluator, where every rule reference and every expression has a
# price: the rules are merged with their defaults once (cfg), ballots are
# counted by walking input.state.votes rather than by building tuples, and
# nothing is called per ballot.
package concord.builtin.decision

# The rule schema's defaults (RFC-MACP-0012 §4.1).
defaults := {
	"voting": {"algorithm": "none", "threshold": 0.5, "quorum": {"type": "count", "value": 0}, "weights": {}},
	"objection_handling": {"critical_severity_vetoes": false, "veto_threshold": 1, "critical_objection_action": "deny"},
	"evaluation": {"minimum_confidence": 0, "required_before_voting": false},
	"commitment": {"require_vote_quorum": false, "allow_decline_over_approval": false},
}

# Keys added by schema_version 2 mean nothing to a version 1 descriptor
# (A16): such a descriptor cannot be registered, and a stored one is read
# as if the keys were absent.
v1_reset := {
	"objection_handling": {"critical_objection_action": "deny"},
	"commitment": {"allow_decline_over_approval": false},
}

default version := 1

version := input.policy.schema_version

default given := {}

given := input.policy.rules

cfg := object.union(defaults, given) if {
	version >= 2
} else := object.union(object.union(defaults, given), v1_reset)

default positive := false

positive := input.commitment.outcome_positive

default participants := []

participants := input.session.participants

known_algorithms := {"none", "majority", "supermajority", "unanimous", "weighted", "plurality"}

# --- Step 1: a standing critical objection (counted session-wide, A18). ---

critical_count := count([1 | input.state.objections[_].severity == "critical"])

standing_veto if {
	o := cfg.objection_handling
	o.critical_severity_vetoes == true
	critical_count >= o.veto_threshold
}

veto_text := sprintf("%d critical objection(s) stand against a veto threshold of %d", [critical_count, cfg.objection_handling.veto_threshold])

# --- Step 2: evaluation prerequisites. Qualifying evaluations are the
# non-REVIEW ones, with a confidence of at least minimum_confidence when
# that is above 0. ---

evaluations_missing if {
	e := cfg.evaluation
	e.required_before_voting == true
	e.minimum_confidence <= 0
	count([1 | input.state.evaluations[_].recommendation != "REVIEW"]) == 0
}

evaluations_missing if {
	e := cfg.evaluation
	e.required_before_voting == true
	min := e.minimum_confidence
	min > 0
	count([1 |
		some e in input.state.evaluations
		e.recommendation != "REVIEW"
		concord.float64_cmp(e.confidence, min) >= 0
	]) == 0
}

evaluation_text := sprintf("evaluation.required_before_voting: no evaluation other than REVIEW with confidence of at least %v was recorded", [cfg.evaluation.minimum_confidence]) if {
	cfg.evaluation.minimum_confidence > 0
} else := "evaluation.required_before_voting: no evaluation other than REVIEW was recorded"

# --- Step 4: the tally over the accepted ballots of every proposal.
# ABSTAIN is never decisive; under "weighted" neither is the ballot of a
# voter absent from weights (weight 0). Admission accepts only finite
# positive weights, so a decimal sign test equals the binary64 one. ---

tally := {"approve": a, "reject": r} if {
	cfg.voting.algorithm != "weighted"
	a := count([1 | input.state.votes[_][_].vote == "APPROVE"])
	r := count([1 | input.state.votes[_][_].vote == "REJECT"])
}

# Weights are summed in ballot order (proposal id, then voter: object keys
# iterate sorted), so that the binary64 sums are reproducible.
tally := {"approve": count(aw), "reject": count(rw), "approve_weight": concord.float64_sum(aw), "decisive_weight": concord.float64_sum(array.concat(aw, rw))} if {
	cfg.voting.algorithm == "weighted"
	w := cfg.voting.weights
	aw := [x | input.state.votes[_][v].vote == "APPROVE"; x := w[v]; x > 0]
	rw := [x | input.state.votes[_][v].vote == "REJECT"; x := w[v]; x > 0]
}

# Stored legacy supermajority descriptors without a threshold above 0.5
# use two thirds.
supermajority_threshold := t if {
	t := cfg.voting.threshold
	concord.float64_cmp(t, 0.5) > 0
} else := 0.6666666666666666

passed if {
	v := cfg.voting
	v.algorithm == "majority"
	t := tally
	concord.float64_cmp(concord.float64_div(t.approve, t.approve + t.reject), v.threshold) >= 0
}

passed if {
	cfg.voting.algorithm == "supermajority"
	t := tally
	concord.float64_cmp(concord.float64_div(t.approve, t.approve + t.reject), supermajority_threshold) >= 0
}

passed if {
	cfg.voting.algorithm == "unanimous"
	count(participants) > 0
	tally.reject == 0
	approvers := {v | input.state.votes[_][v].vote == "APPROVE"}
	count([p | some p in participants; not approvers[p]]) == 0
}

passed if {
	cfg.voting.algorithm == "weighted"
	concord.float64_cmp(concord.float64_div(tally.approve_weight, tally.decisive_weight), cfg.voting.threshold) >= 0
}

passed if {
	cfg.voting.algorithm == "plurality"
	tally.approve > tally.reject
}

# NoVotes is an empty decisive tally: 0/0 is never computed.
result := "no_votes" if {
	t := tally
	t.approve + t.reject == 0
} else := "passed" if {
	passed
} else := "failed"

tally_text := sprintf("%s: %d approve, %d reject%s", [cfg.voting.algorithm, tally.approve, tally.reject, requirement_text])

requirement_text := sprintf(", approve weight %v of %v, threshold %v", [tally.approve_weight, tally.decisive_weight, cfg.voting.threshold]) if {
	cfg.voting.algorithm == "weighted"
} else := sprintf(", threshold %v", [cfg.voting.threshold]) if {
	cfg.voting.algorithm == "majority"
} else := sprintf(", threshold %v", [supermajority_threshold]) if {
	cfg.voting.algorithm == "supermajority"
} else := sprintf(", %d declared participant(s) must all approve", [count(participants)]) if {
	cfg.voting.algorithm == "unanimous"
} else := ""

# --- Step 5: the participation floor (A14: under every algorithm, in both
# directions, except an objection-authorized decline). Voters are the
# distinct senders of any Vote, ABSTAIN and weight 0 included; a
# percentage is on a 0-100 scale (A3). ---

voters := count({v | input.state.votes[_][v]})

quorum_met if {
	q := cfg.voting.quorum
	q.type == "count"
	concord.float64_cmp(voters, q.value) >= 0
}

quorum_met if {
	q := cfg.voting.quorum
	q.type == "percentage"
	n := count(participants)
	n > 0
	concord.float64_cmp(concord.float64_div(voters * 100, n), q.value) >= 0
}

quorum_met if {
	q := cfg.voting.quorum
	q.type == "percentage"
	count(participants) == 0
	q.value <= 0
}

quorum_text := sprintf("%d voter(s), quorum %v", [voters, cfg.voting.quorum.value]) if {
	cfg.voting.quorum.type == "count"
} else := sprintf("%d voter(s) of %d declared participants, quorum %v%%", [voters, count(participants), cfg.voting.quorum.value])

# --- The verdict: steps 1 to 6 in order; the first that decides wins. ---

face_value := {"allow": true, "reasons": ["face value: voting.algorithm none takes outcome_positive as sent"]}

# A rule set that sets none of the keys below (policy.default among them)
# can only take the commitment at face value; saying so first saves the
# common case the walk through every step.
verdict := face_value if {
	not input.policy.rules.voting
	not input.policy.rules.objection_handling
	not input.policy.rules.evaluation
	not input.policy.rules.commitment.require_vote_quorum
} else := {"allow": false, "reasons": [sprintf("%s: a positive commitment is vetoed", [veto_text])]} if {
	standing_veto
	positive == true
} else := {"allow": false, "reasons": [sprintf("%s: the commitment is vetoed", [veto_text])]} if {
	# "hold" reads exactly like "deny" on the wire; the session stays open.
	standing_veto
	cfg.objection_handling.critical_objection_action != "finalize_decline"
} else := {"allow": true, "reasons": ["objection-authorized decline: a standing critical objection finalizes the decline"]} if {
	# Skips every later step, the quorum floor included (issue #117), at
	# any tally.
	standing_veto
} else := {"allow": false, "reasons": [evaluation_text]} if {
	evaluations_missing
} else := {"allow": false, "reasons": [sprintf("voting.algorithm %q is not supported", [cfg.voting.algorithm])]} if {
	not known_algorithms[cfg.voting.algorithm]
} else := {"allow": false, "reasons": [sprintf("commitment.require_vote_quorum: the voting quorum is not met (%s)", [quorum_text])]} if {
	cfg.commitment.require_vote_quorum == true
	not quorum_met
} else := face_value if {
	cfg.voting.algorithm == "none"
} else := mapped

# Step 6, for a vote-authorized commitment.
# An allow carries a fixed basis (no formatting on the hot path); a denial
# carries the numbers.
mapped := {"allow": true, "reasons": ["the vote passed"]} if {
	result == "passed"
	positive == true
} else := {"allow": true, "reasons": ["the vote passed; commitment.allow_decline_over_approval lets a decline override it"]} if {
	result == "passed"
	cfg.commitment.allow_decline_over_approval == true
} else := {"allow": false, "reasons": [sprintf("the vote passed (%s); a negative commitment would override it and commitment.allow_decline_over_approval is off", [tally_text])]} if {
	result == "passed"
} else := {"allow": false, "reasons": [sprintf("the vote failed (%s); a positive commitment is not authorized", [tally_text])]} if {
	result == "failed"
	positive == true
} else := {"allow": true, "reasons": ["the vote failed with a decisive REJECT: the decline is authorized"]} if {
	result == "failed"
	tally.reject > 0
} else := {"allow": false, "reasons": [sprintf("decline guard: the vote failed (%s) but no decisive REJECT was cast, so a negative commitment is not authorized", [tally_text])]} if {
	result == "failed"
} else := {"allow": false, "reasons": [sprintf("no decisive ballots (%s): under schema_version %d an empty tally authorizes no commitment", [cfg.voting.algorithm, version])]} if {
	version >= 3
} else := {"allow": false, "reasons": [sprintf("no decisive ballots (%s) and commitment.require_vote_quorum is on: a positive commitment is not authorized", [cfg.voting.algorithm])]} if {
	positive == true
	cfg.commitment.require_vote_quorum == true
} else := {"allow": true, "reasons": ["no decisive ballots: schema_version 1 and 2 keep the legacy fail-open reading for a positive commitment"]} if {
	positive == true
} else := {"allow": false, "reasons": [sprintf("no decisive ballots (%s): a negative commitment needs at least one decisive REJECT", [cfg.voting.algorithm])]}

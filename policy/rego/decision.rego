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
# This module runs on every Decision Commitment, so it is written in three
# layers that the engine can evaluate separately (RATIONALE, "Policy:
# evaluation in stages"):
#
#   policy constants  rules that read input.policy only (cfg and the names
#                     below it); the engine evaluates them once per policy;
#   tallies           one comprehension each over input.state and the
#                     participants; the engine computes the same numbers
#                     in Go from the view (tally.go, tested against these
#                     rules);
#   steps             the algorithm, reading constants, tallies and the
#                     commitment's polarity.
#
# Evaluated as a whole (the Rego tests, uploaded policies that reuse it),
# it computes every layer itself.
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

# --- Policy constants: input.policy only. ---

default version := 1

version := input.policy.schema_version

default given := {}

given := input.policy.rules

cfg := object.union(defaults, given) if {
	version >= 2
} else := object.union(object.union(defaults, given), v1_reset)

known_algorithms := {"none", "majority", "supermajority", "unanimous", "weighted", "plurality"}

algorithm := cfg.voting.algorithm

default algorithm_known := false

algorithm_known if known_algorithms[algorithm]

threshold := cfg.voting.threshold

weights := cfg.voting.weights

# Stored legacy supermajority descriptors without a threshold above 0.5
# use two thirds.
supermajority_threshold := t if {
	t := threshold
	concord.float64_cmp(t, 0.5) > 0
} else := 0.6666666666666666

quorum_type := cfg.voting.quorum.type

quorum_value := cfg.voting.quorum.value

default quorum_required := false

quorum_required if cfg.commitment.require_vote_quorum == true

default decline_overrides := false

decline_overrides if cfg.commitment.allow_decline_over_approval == true

default vetoes := false

vetoes if cfg.objection_handling.critical_severity_vetoes == true

veto_threshold := cfg.objection_handling.veto_threshold

# "hold" reads exactly like "deny" on the wire; the session stays open.
default veto_holds := false

veto_holds if cfg.objection_handling.critical_objection_action != "finalize_decline"

default evaluations_required := false

evaluations_required if cfg.evaluation.required_before_voting == true

confidence_floor := cfg.evaluation.minimum_confidence

face_value := {"allow": true, "reasons": ["face value: voting.algorithm none takes outcome_positive as sent"]}

# A rule set that sets none of the keys below (policy.default among them)
# can only take the commitment at face value, whatever the session holds.
policy_verdict := face_value if {
	not input.policy.rules.voting
	not input.policy.rules.objection_handling
	not input.policy.rules.evaluation
	not input.policy.rules.commitment.require_vote_quorum
}

# --- Tallies: input.state and input.session.participants. ---

default positive := false

positive := input.commitment.outcome_positive

default participants := []

participants := input.session.participants

participant_count := count(participants)

# Standing critical objections are counted session-wide (A18).
critical_count := count([1 | input.state.objections[_].severity == "critical"])

# Qualifying evaluations are the non-REVIEW ones, with a confidence of at
# least minimum_confidence when that is above 0.
review_free_evaluations := count([1 | input.state.evaluations[_].recommendation != "REVIEW"])

qualifying_evaluations := count([1 |
	some e in input.state.evaluations
	e.recommendation != "REVIEW"
	concord.float64_cmp(e.confidence, confidence_floor) >= 0
])

# The tally over the accepted ballots of every proposal. ABSTAIN is never
# decisive; under "weighted" neither is the ballot of a voter absent from
# weights (weight 0). Admission accepts only finite positive weights, so a
# decimal sign test equals the binary64 one.
tally := {"approve": a, "reject": r} if {
	algorithm != "weighted"
	a := count([1 | input.state.votes[_][_].vote == "APPROVE"])
	r := count([1 | input.state.votes[_][_].vote == "REJECT"])
}

# Weights are summed in ballot order (proposal id, then voter: object keys
# iterate sorted), so that the binary64 sums are reproducible.
tally := {"approve": count(aw), "reject": count(rw), "approve_weight": concord.float64_sum(aw), "decisive_weight": concord.float64_sum(array.concat(aw, rw))} if {
	algorithm == "weighted"
	w := weights
	aw := [x | input.state.votes[_][v].vote == "APPROVE"; x := w[v]; x > 0]
	rw := [x | input.state.votes[_][v].vote == "REJECT"; x := w[v]; x > 0]
}

# Voters are the distinct senders of any Vote, ABSTAIN and weight 0
# included.
voters := count({v | input.state.votes[_][v]})

approvers := {v | input.state.votes[_][v].vote == "APPROVE"}

# Declared participants who approved no proposal.
unapproved_participants := count([p | some p in participants; not approvers[p]])

# --- Step 1: a standing critical objection. ---

standing_veto if {
	vetoes
	critical_count >= veto_threshold
}

veto_text := sprintf("%d critical objection(s) stand against a veto threshold of %d", [critical_count, veto_threshold])

# --- Step 2: evaluation prerequisites. ---

evaluations_missing if {
	evaluations_required
	confidence_floor <= 0
	review_free_evaluations == 0
}

evaluations_missing if {
	evaluations_required
	confidence_floor > 0
	qualifying_evaluations == 0
}

evaluation_text := sprintf("evaluation.required_before_voting: no evaluation other than REVIEW with confidence of at least %v was recorded", [confidence_floor]) if {
	confidence_floor > 0
} else := "evaluation.required_before_voting: no evaluation other than REVIEW was recorded"

# --- Step 4: the vote. ---

passed if {
	algorithm == "majority"
	t := tally
	concord.float64_cmp(concord.float64_div(t.approve, t.approve + t.reject), threshold) >= 0
}

passed if {
	algorithm == "supermajority"
	t := tally
	concord.float64_cmp(concord.float64_div(t.approve, t.approve + t.reject), supermajority_threshold) >= 0
}

passed if {
	algorithm == "unanimous"
	participant_count > 0
	tally.reject == 0
	unapproved_participants == 0
}

passed if {
	algorithm == "weighted"
	concord.float64_cmp(concord.float64_div(tally.approve_weight, tally.decisive_weight), threshold) >= 0
}

passed if {
	algorithm == "plurality"
	tally.approve > tally.reject
}

# NoVotes is an empty decisive tally: 0/0 is never computed.
result := "no_votes" if {
	t := tally
	t.approve + t.reject == 0
} else := "passed" if {
	passed
} else := "failed"

tally_text := sprintf("%s: %d approve, %d reject%s", [algorithm, tally.approve, tally.reject, requirement_text])

requirement_text := sprintf(", approve weight %v of %v, threshold %v", [tally.approve_weight, tally.decisive_weight, threshold]) if {
	algorithm == "weighted"
} else := sprintf(", threshold %v", [threshold]) if {
	algorithm == "majority"
} else := sprintf(", threshold %v", [supermajority_threshold]) if {
	algorithm == "supermajority"
} else := sprintf(", %d declared participant(s) must all approve", [participant_count]) if {
	algorithm == "unanimous"
} else := ""

# --- Step 5: the participation floor (A14: under every algorithm, in both
# directions, except an objection-authorized decline). A percentage is on
# a 0-100 scale (A3). ---

quorum_met if {
	quorum_type == "count"
	concord.float64_cmp(voters, quorum_value) >= 0
}

quorum_met if {
	quorum_type == "percentage"
	n := participant_count
	n > 0
	concord.float64_cmp(concord.float64_div(voters * 100, n), quorum_value) >= 0
}

quorum_met if {
	quorum_type == "percentage"
	participant_count == 0
	quorum_value <= 0
}

quorum_text := sprintf("%d voter(s), quorum %v", [voters, quorum_value]) if {
	quorum_type == "count"
} else := sprintf("%d voter(s) of %d declared participants, quorum %v%%", [voters, participant_count, quorum_value])

# --- The verdict: steps 1 to 6 in order; the first that decides wins. ---

verdict := v if {
	v := policy_verdict
} else := commitment_verdict

commitment_verdict := veto_verdict if {
	standing_veto
} else := {"allow": false, "reasons": [evaluation_text]} if {
	evaluations_missing
} else := {"allow": false, "reasons": [sprintf("voting.algorithm %q is not supported", [algorithm])]} if {
	not algorithm_known
} else := {"allow": false, "reasons": [sprintf("commitment.require_vote_quorum: the voting quorum is not met (%s)", [quorum_text])]} if {
	quorum_required
	not quorum_met
} else := face_value if {
	algorithm == "none"
} else := mapped

# Step 1 decides: a positive commitment is vetoed; a negative one is too
# unless the objection finalizes the decline, which skips every later step,
# the quorum floor included (issue #117), at any tally.
veto_verdict := {"allow": false, "reasons": [sprintf("%s: a positive commitment is vetoed", [veto_text])]} if {
	positive == true
} else := {"allow": false, "reasons": [sprintf("%s: the commitment is vetoed", [veto_text])]} if {
	veto_holds
} else := {"allow": true, "reasons": ["objection-authorized decline: a standing critical objection finalizes the decline"]}

# Step 6, for a vote-authorized commitment.
# An allow carries a fixed basis (no formatting on the hot path); a denial
# carries the numbers.
mapped := {"allow": true, "reasons": ["the vote passed"]} if {
	result == "passed"
	positive == true
} else := {"allow": true, "reasons": ["the vote passed; commitment.allow_decline_over_approval lets a decline override it"]} if {
	result == "passed"
	decline_overrides
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
} else := {"allow": false, "reasons": [sprintf("no decisive ballots (%s): under schema_version %d an empty tally authorizes no commitment", [algorithm, version])]} if {
	version >= 3
} else := {"allow": false, "reasons": [sprintf("no decisive ballots (%s) and commitment.require_vote_quorum is on: a positive commitment is not authorized", [algorithm])]} if {
	positive == true
	quorum_required
} else := {"allow": true, "reasons": ["no decisive ballots: schema_version 1 and 2 keep the legacy fail-open reading for a positive commitment"]} if {
	positive == true
} else := {"allow": false, "reasons": [sprintf("no decisive ballots (%s): a negative commitment needs at least one decisive REJECT", [algorithm])]}

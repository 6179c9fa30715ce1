# Commitment authority for every mode (RFC-MACP-0012 §5, digest §5.6).
#
# input.policy is the descriptor bound to the session, with its rules
# parsed; input.session carries the initiator and the declared
# participants; input.sender is the authenticated sender. The built-in
# modes read commitment.authority (initiator_only by default):
#
#   initiator_only   the initiator;
#   any_participant  the initiator or any declared participant;
#   designated_role  a sender listed literally in designated_roles.
#
# multi_round and every other extension mode keep the Commitment to the
# initiator whatever the rules say. This module runs on every Commitment,
# so the allow path is a short chain of direct references.
package concord.builtin.authority

builtin_modes := {
	"macp.mode.decision.v1",
	"macp.mode.proposal.v1",
	"macp.mode.task.v1",
	"macp.mode.handoff.v1",
	"macp.mode.quorum.v1",
}

# --- Policy constants: input.policy and input.session.mode only (the
# engine evaluates them once per policy and mode). ---

default authority := "initiator_only"

authority := input.policy.rules.commitment.authority if builtin_modes[input.session.mode]

known_authorities := {"initiator_only", "any_participant", "designated_role"}

default initiator_commits := false

initiator_commits if {
	authority != "designated_role"
	known_authorities[authority]
}

default participants_commit := false

participants_commit if authority == "any_participant"

default roles_commit := false

roles_commit if authority == "designated_role"

# --- The sender. ---

default sender := ""

sender := input.sender

default sender_participates := false

sender_participates if input.session.participants[_] == sender

allowed := {"allow": true, "reasons": []}

verdict := allowed if {
	initiator_commits
	sender != ""
	sender == input.session.initiator
} else := allowed if {
	participants_commit
	sender != ""
	sender_participates
} else := allowed if {
	roles_commit
	sender != ""
	input.policy.rules.commitment.designated_roles[_] == sender
} else := {"allow": false, "reasons": [reason]}

default initiator := ""

initiator := input.session.initiator

reason := sprintf("only the initiator %q may commit this session; %q is not the initiator", [initiator, sender]) if {
	authority == "initiator_only"
} else := sprintf("only the initiator or a declared participant may commit this session; %q is neither", [sender]) if {
	authority == "any_participant"
} else := sprintf("only a designated role (%s) may commit this session; %q is not one", [concat(", ", input.policy.rules.commitment.designated_roles), sender]) if {
	authority == "designated_role"
} else := sprintf("commitment authority %q is not known, so nobody may commit", [authority])

# Commitment governance for macp.mode.proposal.v1 (RFC-MACP-0012 §4.3,
# digest §7.7): more CounterProposals than counter_proposal.max_rounds deny
# the commitment. The mode already refuses the CounterProposal that would
# exceed the limit, so this is a second line that replay of old sessions
# may still reach. input.state.counter_proposals comes from the Proposal
# mode's state view. Without a limit the policy alone decides
# (policy_verdict, which the engine evaluates once per policy).
package concord.builtin.proposal

default rules := {}

rules := input.policy.rules

default max_rounds := 0

max_rounds := rules.counter_proposal.max_rounds

default counter_proposals := 0

counter_proposals := input.state.counter_proposals

deny contains msg if {
	max_rounds > 0
	counter_proposals > max_rounds
	msg := sprintf("counter_proposal.max_rounds is %v but %v counter-proposals were made", [max_rounds, counter_proposals])
}

policy_verdict := {"allow": true, "reasons": []} if not max_rounds > 0

verdict := v if {
	v := policy_verdict
} else := commitment_verdict

commitment_verdict := {"allow": count(deny) == 0, "reasons": sort(deny)}

# Commitment governance for macp.mode.task.v1 (RFC-MACP-0012 §4.4, digest
# §7.7): with completion.require_output, a positive commitment needs a
# terminal TaskComplete with non-empty output. input.state.output_present
# comes from the Task mode's state view. A negative commitment binds a
# failure, which has no output to require. Without the rule the policy
# alone decides (policy_verdict, which the engine evaluates once per
# policy).
package concord.builtin.task

default rules := {}

rules := input.policy.rules

default require_output := false

require_output := rules.completion.require_output

default positive := false

positive := input.commitment.outcome_positive

default output_present := false

output_present := input.state.output_present

deny contains "completion.require_output: the task completed without output, so a positive commitment is not authorized" if {
	require_output == true
	positive == true
	output_present != true
}

policy_verdict := {"allow": true, "reasons": []} if require_output != true

verdict := v if {
	v := policy_verdict
} else := commitment_verdict

commitment_verdict := {"allow": count(deny) == 0, "reasons": sort(deny)}

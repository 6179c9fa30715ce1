package concord.builtin.modes_test

import data.concord.builtin.extension
import data.concord.builtin.handoff
import data.concord.builtin.proposal
import data.concord.builtin.quorum
import data.concord.builtin.task

pol(rules) := {"policy_id": "policy.test", "mode": "*", "schema_version": 1, "rules": rules}

test_proposal_max_rounds if {
	rules := {"counter_proposal": {"max_rounds": 2}}
	proposal.verdict.allow with input as {"policy": pol(rules), "state": {"counter_proposals": 2}}
	v := proposal.verdict with input as {"policy": pol(rules), "state": {"counter_proposals": 3}}
	not v.allow
	count(v.reasons) == 1
}

test_proposal_zero_max_rounds_is_unlimited if {
	proposal.verdict.allow with input as {"policy": pol({}), "state": {"counter_proposals": 99}}
}

task_input(rules, positive, output) := {
	"policy": pol(rules),
	"commitment": {"outcome_positive": positive},
	"state": {"output_present": output},
}

test_task_require_output if {
	rules := {"completion": {"require_output": true}}
	task.verdict.allow with input as task_input(rules, true, true)
	v := task.verdict with input as task_input(rules, true, false)
	not v.allow
	count(v.reasons) == 1
}

test_task_require_output_leaves_failures_alone if {
	rules := {"completion": {"require_output": true}}
	task.verdict.allow with input as task_input(rules, false, false)
}

test_task_without_rule_allows if {
	task.verdict.allow with input as task_input({}, true, false)
}

test_handoff_quorum_extension_allow if {
	handoff.verdict.allow
	quorum.verdict.allow with input as {"policy": pol({"threshold": {"type": "n_of_m", "value": 3}})}
	extension.verdict.allow
}

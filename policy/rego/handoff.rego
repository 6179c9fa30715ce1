# Commitment governance for macp.mode.handoff.v1 (digest §7.7): none. The
# handoff rules act as mode parameters (implicit-accept timer) and through
# commitment authority.
package concord.builtin.handoff

verdict := {"allow": true, "reasons": []}

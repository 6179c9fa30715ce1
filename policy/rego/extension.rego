# Commitment governance for ext.multi_round.v1 and every other extension
# mode (digest §7.7): none. Their commitments are initiator-only, which the
# authority module enforces.
package concord.builtin.extension

verdict := {"allow": true, "reasons": []}

# Commitment governance for macp.mode.quorum.v1 (digest §7.7, A17): none.
# The policy threshold replaces required_approvals inside the mode's own
# eligibility check, which refuses an ineligible Commitment with
# INVALID_ENVELOPE before governance runs.
package concord.builtin.quorum

verdict := {"allow": true, "reasons": []}

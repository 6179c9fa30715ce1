// Package proposal implements the MACP Proposal mode, macp.mode.proposal.v1
// (RFC-MACP-0008): a bounded negotiation over offers and counteroffers that
// ends with one Commitment binding either an agreed proposal or a terminal
// rejection.
//
// The package is a pure function from (state, envelope, session) to
// (verdict, new state); the host has already checked the envelope, the
// session lifecycle, the Commitment's authority and its common payload fields,
// and applies the bound policy's commitment governance after this mode
// accepts a Commitment.
//
// # Rules
//
//   - Proposal, CounterProposal, Accept, Reject and Withdraw come from
//     declared participants only (FORBIDDEN otherwise, before the payload is
//     looked at). A message type the mode does not define is
//     INVALID_ENVELOPE whoever sends it.
//   - proposal_id is non-empty and unique across Proposals and
//     CounterProposals.
//   - CounterProposal names an existing proposal in supersedes_proposal_id
//     (live or withdrawn) and mints a new live proposal; the original stays
//     live. With policy counter_proposal.max_rounds > 0, a CounterProposal
//     once that many were accepted is INVALID_ENVELOPE.
//   - Accept and Reject target a live proposal. A participant's later Accept
//     replaces its earlier one. A Reject is terminal when it says so or when
//     policy rejection.terminal_on_any_reject is set; every Reject is logged.
//   - Withdraw is allowed only to the proposal's author (FORBIDDEN) and only
//     once (INVALID_ENVELOPE). It marks the proposal Withdrawn, clears the
//     accepts pointing at it, and its terminal rejections stop standing.
//   - Commitment needs phase Converged or TerminalRejected, and its
//     outcome_positive must match a branch that holds: true needs a converged
//     live proposal, false needs a standing terminal rejection.
//
// # Phase
//
// Recomputed after every accepted message: TerminalRejected if a terminal
// rejection of a live proposal stands; else Converged if a live proposal meets
// policy acceptance.criterion — all_parties (default: every declared
// participant's current accept names it), counterparty (every declared
// participant but its proposer), initiator (the initiator's current accept) —
// where an empty set of required accepters never converges; else Negotiating.
// Committed after the Commitment.
//
// # View
//
// View renders {phase, accepts{participant: proposal_id},
// proposals{id: {proposal_id, proposer, disposition: Live|Withdrawn, kind,
// supersedes_proposal_id, title, summary, tags}}, proposal_order,
// rejections[{proposal_id, sender, terminal, standing, reason}],
// counter_proposals, converged_proposal_id, rules{criterion, max_rounds,
// terminal_on_any_reject}}, with arrays in acceptance order. Acceptance is
// only in accepts, one current accept per participant, never on the
// proposal records (the parity contract's acceptance_tracking per_sender).
//
// # State
//
// The state is a compact protobuf-wire message written field by field in a
// fixed order (see state.go); the policy rules the mode needs are parsed once
// at SessionStart and kept in it.
package proposal

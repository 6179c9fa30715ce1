// Package task implements the MACP Task mode, macp.mode.task.v1
// (RFC-MACP-0009), as a pure, deterministic guest.Mode: the initiator
// delegates one bounded task, one participant takes it on, reports progress
// and a terminal outcome, and a Commitment binds success or failure.
//
// The host has already checked the envelope, the session lifecycle, the
// Commitment's authority and its common payload fields, and applies the bound
// policy's commitment governance (completion.require_output) after this mode
// accepts a Commitment; the view exposes output_present for it.
//
// # Rules
//
//   - TaskRequest: the initiator only (its role; it need not be a declared
//     participant), else FORBIDDEN. At most one per session; task_id
//     non-empty; requested_assignee, when set, a declared participant. Else
//     INVALID_ENVELOPE.
//   - Every other task message comes from a declared participant (FORBIDDEN)
//     and needs the request (INVALID_ENVELOPE); its task_id must equal the
//     request's and a non-empty payload assignee must equal the sender
//     (INVALID_ENVELOPE).
//   - TaskAccept / TaskReject: the requested assignee when one was named,
//     else any declared participant but the initiator (FORBIDDEN otherwise).
//     The first TaskAccept makes the sender the active assignee; another
//     while assigned is INVALID_ENVELOPE. A participant declines at most once
//     and cannot accept after declining. Without policy
//     assignment.allow_reassignment_on_reject, a TaskAccept after any
//     TaskReject and a TaskReject by the active assignee are refused; with it
//     the assignee's TaskReject returns the task to Requested. A TaskReject
//     by anyone else while assigned, or any answer after the terminal report,
//     is INVALID_ENVELOPE. Refusals the policy flag decides are
//     INVALID_ENVELOPE, never POLICY_DENIED (digest A12).
//   - TaskUpdate, TaskComplete, TaskFail: the active assignee only
//     (FORBIDDEN), and only before the terminal report (INVALID_ENVELOPE).
//     TaskUpdate.progress must be a finite number. TaskComplete or TaskFail
//     sets the single terminal report; the session stays open.
//   - Commitment needs the terminal report (INVALID_ENVELOPE); either
//     polarity is allowed after either report.
//   - A message type the mode does not define is INVALID_ENVELOPE.
//
// # Phase
//
// AwaitingRequest (no TaskRequest yet) → Requested (no active assignee) →
// Assigned → Completed or Failed (the terminal report) → Committed. A
// permitted reassignment goes from Assigned back to Requested.
//
// # View
//
// View renders {phase, task_id, task{task_id, title, requester,
// requested_assignee, deadline_unix_ms, input_present} | null,
// requested_assignee, active_assignee, assignments[], rejections[{sender,
// reason, released}], update_count, last_update{status, progress, message,
// partial_output_present} | null, terminal_report{outcome: complete|fail,
// assignee, message_id, output_present, output_size, summary, error_code,
// reason, retryable, idempotency_key{task_id, assignee, message_id}} | null,
// output_present, rules{allow_reassignment_on_reject}}. Strings are "" when
// unset; arrays are in acceptance order.
//
// # State
//
// The state is a compact protobuf-wire message written field by field in a
// fixed order (see state.go). It keeps what the rules and the view need,
// not the task's instructions, input or outputs, which stay in the log.
package task

package task

import (
	"fmt"
	"strings"

	"github.com/concord-macp/concord/abi/guest"
	"github.com/concord-macp/concord/macperr"
)

// Identity of the mode.
const (
	ModeName    = "macp.mode.task.v1"
	ModeVersion = "1.0.0"
)

// Message types of the mode.
const (
	MsgSessionStart = "SessionStart"
	MsgTaskRequest  = "TaskRequest"
	MsgTaskAccept   = "TaskAccept"
	MsgTaskReject   = "TaskReject"
	MsgTaskUpdate   = "TaskUpdate"
	MsgTaskComplete = "TaskComplete"
	MsgTaskFail     = "TaskFail"
	MsgCommitment   = "Commitment"
)

// reassignmentFlag names the policy rule that governs reassignment, for
// rejection messages.
const reassignmentFlag = "assignment.allow_reassignment_on_reject"

// Mode is the Task mode. Its zero value is ready to use and it holds no
// data: everything lives in the state bytes.
type Mode struct{}

var _ guest.Mode = Mode{}

// Describe returns the mode's descriptor.
func (Mode) Describe() guest.Descriptor {
	return guest.Descriptor{
		Mode:        ModeName,
		ModeVersion: ModeVersion,
		Title:       "Task Mode",
		Description: "The initiator delegates one bounded task; one participant accepts it, reports " +
			"progress and completion or failure; a Commitment binds the outcome.",
		DeterminismClass: "structural-only",
		ParticipantModel: "orchestrated",
		MessageTypes: []string{MsgSessionStart, MsgTaskRequest, MsgTaskAccept, MsgTaskReject, MsgTaskUpdate,
			MsgTaskComplete, MsgTaskFail, MsgCommitment},
		TerminalMessageTypes: []string{MsgCommitment},
		SchemaURIs: map[string]string{
			"protobuf": "proto/macp/modes/task/v1/task.proto",
		},
	}
}

// rejection is a handler's refusal of an envelope.
type rejection struct {
	code macperr.Code
	msg  string
}

func reject(code macperr.Code, format string, args ...any) *rejection {
	return &rejection{code: code, msg: fmt.Sprintf(format, args...)}
}

type handler func(s *state, env *guest.Envelope, sess *guest.Session) *rejection

// Step decides on one envelope; see the package documentation.
func (Mode) Step(req *guest.StepRequest) guest.Result {
	env := &req.Envelope
	sess := &req.Session
	var handle handler
	switch env.MessageType {
	case MsgSessionStart:
		if len(req.State) != 0 {
			return guest.Reject(macperr.InvalidEnvelope, "the session has already started")
		}
		return start(sess)
	case MsgTaskRequest:
		handle = onRequest
	case MsgTaskAccept:
		handle = onAccept
	case MsgTaskReject:
		handle = onReject
	case MsgTaskUpdate:
		handle = onUpdate
	case MsgTaskComplete:
		handle = onComplete
	case MsgTaskFail:
		handle = onFail
	case MsgCommitment:
	default:
		return guest.Reject(macperr.InvalidEnvelope, "message type %q is not part of %s", env.MessageType, ModeName)
	}
	s, res, ok := guest.Begin(req, start, decodeState, func(s *state) bool { return s.Committed })
	if !ok {
		return res
	}
	if handle == nil {
		handle = onCommitment
	}
	if r := handle(s, env, sess); r != nil {
		return guest.Reject(r.code, "%s", r.msg)
	}
	return guest.Accept(s.encode())
}

func start(sess *guest.Session) guest.Result {
	s := &state{}
	if err := parseRules(sess.PolicyRules, s); err != nil {
		return guest.Reject(macperr.InvalidEnvelope, "%v", err)
	}
	return guest.Accept(s.encode())
}

func onRequest(s *state, env *guest.Envelope, sess *guest.Session) *rejection {
	if env.Sender != sess.Initiator {
		return reject(macperr.Forbidden, "TaskRequest may only be sent by the initiator %q", sess.Initiator)
	}
	p, err := decodeRequest(env.Payload)
	if err != nil {
		return reject(macperr.InvalidEnvelope, "TaskRequestPayload: %v", err)
	}
	if s.Task != nil {
		return reject(macperr.InvalidEnvelope, "task %q was already requested; a session holds one TaskRequest", s.Task.ID)
	}
	if strings.TrimSpace(p.TaskID) == "" {
		return reject(macperr.InvalidEnvelope, "task_id is empty")
	}
	if p.RequestedAssignee != "" && !sess.IsParticipant(p.RequestedAssignee) {
		return reject(macperr.InvalidEnvelope, "requested_assignee %q is not a declared participant", p.RequestedAssignee)
	}
	s.Task = &taskRecord{
		ID:                p.TaskID,
		Title:             p.Title,
		Requester:         env.Sender,
		RequestedAssignee: p.RequestedAssignee,
		DeadlineUnixMs:    p.DeadlineUnixMs,
		InputSize:         p.InputSize,
	}
	return nil
}

// requireTask checks what every message after the request needs: a
// declared participant as sender, then the request itself.
func requireTask(s *state, env *guest.Envelope, sess *guest.Session) *rejection {
	if !sess.IsParticipant(env.Sender) {
		return reject(macperr.Forbidden, "%s may only be sent by a declared participant; %q is not one",
			env.MessageType, env.Sender)
	}
	if s.Task == nil {
		return reject(macperr.InvalidEnvelope, "%s before the TaskRequest", env.MessageType)
	}
	return nil
}

// checkRefs checks the payload's task_id and, when set, its assignee.
func checkRefs(s *state, env *guest.Envelope, taskID, assignee string) *rejection {
	if taskID != s.Task.ID {
		return reject(macperr.InvalidEnvelope, "task_id %q does not name the requested task %q", taskID, s.Task.ID)
	}
	if assignee != "" && assignee != env.Sender {
		return reject(macperr.InvalidEnvelope, "assignee %q is not the sender %q", assignee, env.Sender)
	}
	return nil
}

// answer checks a TaskAccept or TaskReject up to the assignment rules and
// returns its payload.
func answer(s *state, env *guest.Envelope, sess *guest.Session) (answerPayload, *rejection) {
	var p answerPayload
	if r := requireTask(s, env, sess); r != nil {
		return p, r
	}
	switch {
	case env.Sender == s.ActiveAssignee:
	case s.Task.RequestedAssignee != "":
		if env.Sender != s.Task.RequestedAssignee {
			return p, reject(macperr.Forbidden, "only the requested assignee %q may answer the task",
				s.Task.RequestedAssignee)
		}
	case env.Sender == sess.Initiator:
		return p, reject(macperr.Forbidden, "the initiator cannot take on its own open task")
	}
	p, err := decodeAnswer(env.Payload)
	if err != nil {
		return p, reject(macperr.InvalidEnvelope, "%sPayload: %v", env.MessageType, err)
	}
	if r := checkRefs(s, env, p.TaskID, p.Assignee); r != nil {
		return p, r
	}
	return p, beforeReport(s)
}

func onAccept(s *state, env *guest.Envelope, sess *guest.Session) *rejection {
	if _, r := answer(s, env, sess); r != nil {
		return r
	}
	switch {
	case s.ActiveAssignee != "":
		return reject(macperr.InvalidEnvelope, "the task is already assigned to %q", s.ActiveAssignee)
	case s.rejected(env.Sender):
		return reject(macperr.InvalidEnvelope, "%q already declined the task", env.Sender)
	case len(s.Rejections) > 0 && !s.AllowReassignment:
		return reject(macperr.InvalidEnvelope, "the task was declined and policy %s is false", reassignmentFlag)
	}
	s.ActiveAssignee = env.Sender
	s.Assignments = append(s.Assignments, env.Sender)
	return nil
}

func onReject(s *state, env *guest.Envelope, sess *guest.Session) *rejection {
	p, r := answer(s, env, sess)
	if r != nil {
		return r
	}
	rec := rejectionRecord{Sender: env.Sender, Reason: p.Reason}
	switch {
	case s.ActiveAssignee == env.Sender:
		if !s.AllowReassignment {
			return reject(macperr.InvalidEnvelope, "TaskAccept is irrevocable: policy %s is false", reassignmentFlag)
		}
		s.ActiveAssignee = ""
		rec.Released = true
	case s.ActiveAssignee != "":
		return reject(macperr.InvalidEnvelope, "the task is assigned to %q", s.ActiveAssignee)
	case s.rejected(env.Sender):
		return reject(macperr.InvalidEnvelope, "%q already declined the task", env.Sender)
	}
	s.Rejections = append(s.Rejections, rec)
	return nil
}

// requireAssignee checks the sender of a TaskUpdate, TaskComplete or
// TaskFail.
func requireAssignee(s *state, env *guest.Envelope, sess *guest.Session) *rejection {
	if r := requireTask(s, env, sess); r != nil {
		return r
	}
	if s.ActiveAssignee == "" {
		return reject(macperr.Forbidden, "%s may only be sent by the active assignee; the task has none",
			env.MessageType)
	}
	if env.Sender != s.ActiveAssignee {
		return reject(macperr.Forbidden, "%s may only be sent by the active assignee %q", env.MessageType,
			s.ActiveAssignee)
	}
	return nil
}

// beforeReport refuses a message after the terminal report.
func beforeReport(s *state) *rejection {
	if s.Report != nil {
		return reject(macperr.InvalidEnvelope, "the task already has its terminal report")
	}
	return nil
}

func onUpdate(s *state, env *guest.Envelope, sess *guest.Session) *rejection {
	if r := requireAssignee(s, env, sess); r != nil {
		return r
	}
	p, err := decodeUpdate(env.Payload)
	if err != nil {
		return reject(macperr.InvalidEnvelope, "TaskUpdatePayload: %v", err)
	}
	if r := checkRefs(s, env, p.TaskID, ""); r != nil {
		return r
	}
	if r := beforeReport(s); r != nil {
		return r
	}
	s.UpdateCount++
	s.LastUpdate = &updateRecord{Status: p.Status, Progress: p.Progress, Message: p.Message,
		PartialOutputSize: p.PartialOutputSize}
	return nil
}

func onComplete(s *state, env *guest.Envelope, sess *guest.Session) *rejection {
	if r := requireAssignee(s, env, sess); r != nil {
		return r
	}
	p, err := decodeComplete(env.Payload)
	if err != nil {
		return reject(macperr.InvalidEnvelope, "TaskCompletePayload: %v", err)
	}
	if r := checkRefs(s, env, p.TaskID, p.Assignee); r != nil {
		return r
	}
	if r := beforeReport(s); r != nil {
		return r
	}
	s.Report = &reportRecord{Outcome: outcomeComplete, Assignee: env.Sender, MessageID: env.MessageID,
		OutputSize: p.OutputSize, Summary: p.Summary}
	return nil
}

func onFail(s *state, env *guest.Envelope, sess *guest.Session) *rejection {
	if r := requireAssignee(s, env, sess); r != nil {
		return r
	}
	p, err := decodeFail(env.Payload)
	if err != nil {
		return reject(macperr.InvalidEnvelope, "TaskFailPayload: %v", err)
	}
	if r := checkRefs(s, env, p.TaskID, p.Assignee); r != nil {
		return r
	}
	if r := beforeReport(s); r != nil {
		return r
	}
	s.Report = &reportRecord{Outcome: outcomeFail, Assignee: env.Sender, MessageID: env.MessageID,
		ErrorCode: p.ErrorCode, Reason: p.Reason, Retryable: p.Retryable}
	return nil
}

// onCommitment applies the mode's eligibility rule to a Commitment whose
// authority and common fields the host has already checked.
func onCommitment(s *state, env *guest.Envelope, _ *guest.Session) *rejection {
	if _, err := guest.DecodeCommitment(env.Payload); err != nil {
		return reject(macperr.InvalidEnvelope, "CommitmentPayload: %v", err)
	}
	if s.Report == nil {
		return reject(macperr.InvalidEnvelope, "a Commitment needs the assignee's TaskComplete or TaskFail first")
	}
	s.Committed = true
	return nil
}

package task

import (
	"bytes"
	"encoding/json"

	"github.com/concord-macp/concord/abi/guest"
)

type viewJSON struct {
	Phase             string          `json:"phase"`
	TaskID            string          `json:"task_id"`
	Task              *taskView       `json:"task"`
	RequestedAssignee string          `json:"requested_assignee"`
	ActiveAssignee    string          `json:"active_assignee"`
	Assignments       []string        `json:"assignments"`
	Rejections        []rejectionView `json:"rejections"`
	UpdateCount       uint64          `json:"update_count"`
	LastUpdate        *updateView     `json:"last_update"`
	TerminalReport    *reportView     `json:"terminal_report"`
	// OutputPresent is true when the terminal report is a TaskComplete with
	// non-empty output: what policy completion.require_output asks for.
	OutputPresent bool      `json:"output_present"`
	Rules         rulesView `json:"rules"`
}

type taskView struct {
	TaskID            string `json:"task_id"`
	Title             string `json:"title"`
	Requester         string `json:"requester"`
	RequestedAssignee string `json:"requested_assignee"`
	DeadlineUnixMs    int64  `json:"deadline_unix_ms"`
	InputPresent      bool   `json:"input_present"`
}

type rejectionView struct {
	Sender   string `json:"sender"`
	Reason   string `json:"reason"`
	Released bool   `json:"released"`
}

type updateView struct {
	Status               string  `json:"status"`
	Progress             float64 `json:"progress"`
	Message              string  `json:"message"`
	PartialOutputPresent bool    `json:"partial_output_present"`
}

type reportView struct {
	// Outcome is "complete" or "fail".
	Outcome        string         `json:"outcome"`
	Assignee       string         `json:"assignee"`
	MessageID      string         `json:"message_id"`
	OutputPresent  bool           `json:"output_present"`
	OutputSize     uint64         `json:"output_size"`
	Summary        string         `json:"summary"`
	ErrorCode      string         `json:"error_code"`
	Reason         string         `json:"reason"`
	Retryable      bool           `json:"retryable"`
	IdempotencyKey idempotencyKey `json:"idempotency_key"`
}

// idempotencyKey is RFC-MACP-0009 §8's key for side effects of the task
// outcome: task_id + assignee + message_id of the first accepted
// TaskComplete or TaskFail.
type idempotencyKey struct {
	TaskID    string `json:"task_id"`
	Assignee  string `json:"assignee"`
	MessageID string `json:"message_id"`
}

type rulesView struct {
	AllowReassignmentOnReject bool `json:"allow_reassignment_on_reject"`
}

// View renders the state as the mode-state JSON object; see the package
// documentation for its keys.
func (Mode) View(b []byte, _ *guest.Session) ([]byte, error) {
	s, err := decodeState(b)
	if err != nil {
		return nil, err
	}
	v := viewJSON{
		Phase:          s.phase(),
		ActiveAssignee: s.ActiveAssignee,
		Assignments:    append([]string{}, s.Assignments...),
		Rejections:     make([]rejectionView, 0, len(s.Rejections)),
		UpdateCount:    s.UpdateCount,
		Rules:          rulesView{AllowReassignmentOnReject: s.AllowReassignment},
	}
	if t := s.Task; t != nil {
		v.TaskID = t.ID
		v.RequestedAssignee = t.RequestedAssignee
		v.Task = &taskView{TaskID: t.ID, Title: t.Title, Requester: t.Requester,
			RequestedAssignee: t.RequestedAssignee, DeadlineUnixMs: t.DeadlineUnixMs, InputPresent: t.InputSize > 0}
	}
	for _, r := range s.Rejections {
		v.Rejections = append(v.Rejections, rejectionView(r))
	}
	if u := s.LastUpdate; u != nil {
		v.LastUpdate = &updateView{Status: u.Status, Progress: u.Progress, Message: u.Message,
			PartialOutputPresent: u.PartialOutputSize > 0}
	}
	if r := s.Report; r != nil {
		rv := &reportView{Outcome: "fail", Assignee: r.Assignee, MessageID: r.MessageID,
			OutputPresent: r.OutputSize > 0, OutputSize: r.OutputSize, Summary: r.Summary,
			ErrorCode: r.ErrorCode, Reason: r.Reason, Retryable: r.Retryable,
			IdempotencyKey: idempotencyKey{MessageID: r.MessageID, Assignee: r.Assignee}}
		if r.Outcome == outcomeComplete {
			rv.Outcome = "complete"
		}
		if s.Task != nil {
			rv.IdempotencyKey.TaskID = s.Task.ID
		}
		v.TerminalReport = rv
		v.OutputPresent = rv.OutputPresent
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

package task

import (
	"errors"
	"fmt"
	"math"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/concord-macp/concord/abi/guest"
)

// taskRecord is the accepted TaskRequest.
type taskRecord struct {
	ID                string
	Title             string
	Requester         string
	RequestedAssignee string
	DeadlineUnixMs    int64
	InputSize         uint64
}

// rejectionRecord is one accepted TaskReject.
type rejectionRecord struct {
	Sender string
	Reason string
	// Released is true when the sender was the active assignee and the
	// reject returned the task to Requested.
	Released bool
}

// updateRecord is the latest accepted TaskUpdate.
type updateRecord struct {
	Status            string
	Progress          float64
	Message           string
	PartialOutputSize uint64
}

// outcome is the kind of terminal report.
type outcome uint64

const (
	outcomeComplete outcome = 1
	outcomeFail     outcome = 2
)

// reportRecord is the terminal report: the accepted TaskComplete or TaskFail.
type reportRecord struct {
	Outcome   outcome
	Assignee  string
	MessageID string
	// OutputSize is TaskComplete.output's length.
	OutputSize uint64
	Summary    string
	ErrorCode  string
	Reason     string
	Retryable  bool
}

// state is the whole mode state.
type state struct {
	AllowReassignment bool
	Task              *taskRecord
	ActiveAssignee    string
	// Assignments lists every participant that became the active assignee,
	// in order.
	Assignments []string
	Rejections  []rejectionRecord
	UpdateCount uint64
	LastUpdate  *updateRecord
	Report      *reportRecord
	Committed   bool
}

// State field numbers.
const (
	fAllowReassignment = 1
	fTask              = 2
	fActiveAssignee    = 3
	fAssignment        = 4
	fRejection         = 5
	fUpdateCount       = 6
	fLastUpdate        = 7
	fReport            = 8
	fCommitted         = 9
	// fFormat holds formatVersion; it also keeps the encoding of a fresh
	// session non-empty, so that it differs from "no state".
	fFormat = 15
)

// formatVersion is the version of this state encoding.
const formatVersion = 1

// phase names the session's progress; see the package documentation.
func (s *state) phase() string {
	switch {
	case s.Committed:
		return "Committed"
	case s.Report != nil && s.Report.Outcome == outcomeComplete:
		return "Completed"
	case s.Report != nil:
		return "Failed"
	case s.ActiveAssignee != "":
		return "Assigned"
	case s.Task != nil:
		return "Requested"
	}
	return "AwaitingRequest"
}

func (s *state) rejected(participant string) bool {
	for _, r := range s.Rejections {
		if r.Sender == participant {
			return true
		}
	}
	return false
}

// encode writes the state as protobuf wire bytes in a fixed field order.
func (s *state) encode() []byte {
	b := guest.AppendVarint(nil, fFormat, formatVersion)
	b = appendBool(b, fAllowReassignment, s.AllowReassignment)
	if t := s.Task; t != nil {
		var m []byte
		m = guest.AppendString(m, 1, t.ID)
		m = guest.AppendString(m, 2, t.Title)
		m = guest.AppendString(m, 3, t.Requester)
		m = guest.AppendString(m, 4, t.RequestedAssignee)
		m = guest.AppendVarint(m, 5, uint64(t.DeadlineUnixMs))
		m = guest.AppendVarint(m, 6, t.InputSize)
		b = appendMessage(b, fTask, m)
	}
	b = guest.AppendString(b, fActiveAssignee, s.ActiveAssignee)
	for _, a := range s.Assignments {
		b = protowire.AppendTag(b, fAssignment, protowire.BytesType)
		b = protowire.AppendString(b, a)
	}
	for _, r := range s.Rejections {
		var m []byte
		m = guest.AppendString(m, 1, r.Sender)
		m = guest.AppendString(m, 2, r.Reason)
		m = appendBool(m, 3, r.Released)
		b = appendMessage(b, fRejection, m)
	}
	b = guest.AppendVarint(b, fUpdateCount, s.UpdateCount)
	if u := s.LastUpdate; u != nil {
		var m []byte
		m = guest.AppendString(m, 1, u.Status)
		if u.Progress != 0 {
			m = protowire.AppendTag(m, 2, protowire.Fixed64Type)
			m = protowire.AppendFixed64(m, math.Float64bits(u.Progress))
		}
		m = guest.AppendString(m, 3, u.Message)
		m = guest.AppendVarint(m, 4, u.PartialOutputSize)
		b = appendMessage(b, fLastUpdate, m)
	}
	if r := s.Report; r != nil {
		var m []byte
		m = guest.AppendVarint(m, 1, uint64(r.Outcome))
		m = guest.AppendString(m, 2, r.Assignee)
		m = guest.AppendString(m, 3, r.MessageID)
		m = guest.AppendVarint(m, 4, r.OutputSize)
		m = guest.AppendString(m, 5, r.Summary)
		m = guest.AppendString(m, 6, r.ErrorCode)
		m = guest.AppendString(m, 7, r.Reason)
		m = appendBool(m, 8, r.Retryable)
		b = appendMessage(b, fReport, m)
	}
	b = appendBool(b, fCommitted, s.Committed)
	return b
}

var errWireType = errors.New("unexpected wire type")

// decodeState parses bytes written by encode. Unknown fields are skipped.
func decodeState(b []byte) (*state, error) {
	s := &state{}
	var format uint64
	err := guest.EachField(b, func(num protowire.Number, typ protowire.Type, v []byte, n uint64) error {
		var want protowire.Type
		switch num {
		case fFormat, fAllowReassignment, fUpdateCount, fCommitted:
			want = protowire.VarintType
		case fTask, fActiveAssignee, fAssignment, fRejection, fLastUpdate, fReport:
			want = protowire.BytesType
		default:
			return nil
		}
		if typ != want {
			return fmt.Errorf("state field %d: %w", num, errWireType)
		}
		var err error
		switch num {
		case fFormat:
			format = n
		case fAllowReassignment:
			s.AllowReassignment = n != 0
		case fUpdateCount:
			s.UpdateCount = n
		case fCommitted:
			s.Committed = n != 0
		case fActiveAssignee:
			s.ActiveAssignee = string(v)
		case fAssignment:
			s.Assignments = append(s.Assignments, string(v))
		case fTask:
			s.Task, err = decodeTaskRecord(v)
		case fRejection:
			var r rejectionRecord
			r, err = decodeRejectionRecord(v)
			s.Rejections = append(s.Rejections, r)
		case fLastUpdate:
			s.LastUpdate, err = decodeUpdateRecord(v)
		case fReport:
			s.Report, err = decodeReportRecord(v)
		}
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("task state: %w", err)
	}
	if format != formatVersion {
		return nil, fmt.Errorf("task state: format version %d, want %d", format, formatVersion)
	}
	return s, nil
}

// record walks an embedded state record, checking that each field it knows
// has the wire type the encoder wrote (varint for the numbers in varints,
// fixed64 for those in fixed, bytes otherwise).
func record(b []byte, varints, fixed []protowire.Number, fn func(num protowire.Number, v []byte, n uint64)) error {
	return guest.EachField(b, func(num protowire.Number, typ protowire.Type, v []byte, n uint64) error {
		want := protowire.BytesType
		for _, x := range varints {
			if x == num {
				want = protowire.VarintType
			}
		}
		for _, x := range fixed {
			if x == num {
				want = protowire.Fixed64Type
			}
		}
		if typ != want {
			return fmt.Errorf("record field %d: %w", num, errWireType)
		}
		fn(num, v, n)
		return nil
	})
}

func decodeTaskRecord(b []byte) (*taskRecord, error) {
	t := &taskRecord{}
	err := record(b, []protowire.Number{5, 6}, nil, func(num protowire.Number, v []byte, n uint64) {
		switch num {
		case 1:
			t.ID = string(v)
		case 2:
			t.Title = string(v)
		case 3:
			t.Requester = string(v)
		case 4:
			t.RequestedAssignee = string(v)
		case 5:
			t.DeadlineUnixMs = int64(n)
		case 6:
			t.InputSize = n
		}
	})
	return t, err
}

func decodeRejectionRecord(b []byte) (rejectionRecord, error) {
	var r rejectionRecord
	err := record(b, []protowire.Number{3}, nil, func(num protowire.Number, v []byte, n uint64) {
		switch num {
		case 1:
			r.Sender = string(v)
		case 2:
			r.Reason = string(v)
		case 3:
			r.Released = n != 0
		}
	})
	return r, err
}

func decodeUpdateRecord(b []byte) (*updateRecord, error) {
	u := &updateRecord{}
	err := record(b, []protowire.Number{4}, []protowire.Number{2}, func(num protowire.Number, v []byte, n uint64) {
		switch num {
		case 1:
			u.Status = string(v)
		case 2:
			u.Progress = math.Float64frombits(n)
		case 3:
			u.Message = string(v)
		case 4:
			u.PartialOutputSize = n
		}
	})
	return u, err
}

func decodeReportRecord(b []byte) (*reportRecord, error) {
	r := &reportRecord{}
	err := record(b, []protowire.Number{1, 4, 8}, nil, func(num protowire.Number, v []byte, n uint64) {
		switch num {
		case 1:
			r.Outcome = outcome(n)
		case 2:
			r.Assignee = string(v)
		case 3:
			r.MessageID = string(v)
		case 4:
			r.OutputSize = n
		case 5:
			r.Summary = string(v)
		case 6:
			r.ErrorCode = string(v)
		case 7:
			r.Reason = string(v)
		case 8:
			r.Retryable = n != 0
		}
	})
	if err == nil && r.Outcome != outcomeComplete && r.Outcome != outcomeFail {
		err = fmt.Errorf("report: bad outcome %d", uint64(r.Outcome))
	}
	return r, err
}

func appendBool(b []byte, num protowire.Number, v bool) []byte {
	if !v {
		return b
	}
	return guest.AppendVarint(b, num, 1)
}

// appendMessage appends an embedded message, even an empty one.
func appendMessage(b []byte, num protowire.Number, m []byte) []byte {
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return protowire.AppendBytes(b, m)
}

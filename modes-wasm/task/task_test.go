package task

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"testing"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/concord-macp/concord/abi/guest"
	"github.com/concord-macp/concord/macperr"
	taskv1 "github.com/concord-macp/concord/proto/macp/modes/task/v1"
	macpv1 "github.com/concord-macp/concord/proto/macp/v1"
)

const (
	planner  = "agent://planner"
	worker   = "agent://worker"
	helper   = "agent://helper"
	outsider = "agent://outsider"
	ie       = macperr.InvalidEnvelope
	forbid   = macperr.Forbidden
	realloc  = `{"assignment":{"allow_reassignment_on_reject":true}}`
)

func session(rules string, participants ...string) guest.Session {
	if participants == nil {
		participants = []string{planner, worker, helper}
	}
	return guest.Session{
		SessionID: "0123456789abcdefghijklmn", Mode: ModeName, ModeVersion: ModeVersion,
		ConfigurationVersion: "cfg-1", PolicyVersion: "policy.default", Initiator: planner,
		Participants: participants, PolicyRules: rules, PolicySchemaVersion: 1,
	}
}

func enc(t *testing.T, m proto.Message) []byte {
	t.Helper()
	b, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// step is one envelope of a scripted session and its expected outcome
// ("" = accepted).
type step struct {
	sender, typ string
	payload     []byte
	want        macperr.Code
}

func (s step) fails(code macperr.Code) step { s.want = code; return s }

func request(t *testing.T, from, id, assignee string) step {
	return step{from, MsgTaskRequest, enc(t, &taskv1.TaskRequestPayload{TaskId: id, Title: "Build",
		Instructions: "Do it", RequestedAssignee: assignee, Input: []byte("in"), DeadlineUnixMs: 99}), ""}
}

func acceptMsg(t *testing.T, from string) step {
	return step{from, MsgTaskAccept, enc(t, &taskv1.TaskAcceptPayload{TaskId: "t1", Assignee: from}), ""}
}

func rejectMsg(t *testing.T, from string) step {
	return step{from, MsgTaskReject, enc(t, &taskv1.TaskRejectPayload{TaskId: "t1", Assignee: from, Reason: "busy"}), ""}
}

func update(t *testing.T, from string, progress float64) step {
	return step{from, MsgTaskUpdate, enc(t, &taskv1.TaskUpdatePayload{TaskId: "t1", Status: "running",
		Progress: progress, Message: "m", PartialOutput: []byte("p")}), ""}
}

func complete(t *testing.T, from string, output string) step {
	return step{from, MsgTaskComplete, enc(t, &taskv1.TaskCompletePayload{TaskId: "t1", Assignee: from,
		Output: []byte(output), Summary: "done"}), ""}
}

func fail(t *testing.T, from string) step {
	return step{from, MsgTaskFail, enc(t, &taskv1.TaskFailPayload{TaskId: "t1", Assignee: from,
		ErrorCode: "BUILD_FAILED", Reason: "broken", Retryable: true}), ""}
}

func commitMsg(t *testing.T, positive bool) step {
	action := "task.completed"
	if !positive {
		action = "task.failed"
	}
	return step{planner, MsgCommitment, enc(t, &macpv1.CommitmentPayload{CommitmentId: "c1", Action: action,
		AuthorityScope: "test", Reason: "r", ModeVersion: ModeVersion, ConfigurationVersion: "cfg-1",
		OutcomePositive: positive}), ""}
}

// run starts a session, applies the steps checking each outcome, and returns
// the final state bytes.
func run(t *testing.T, sess guest.Session, steps ...step) []byte {
	t.Helper()
	var m Mode
	res := m.Step(&guest.StepRequest{Envelope: guest.Envelope{MessageType: MsgSessionStart, Sender: sess.Initiator},
		Session: sess})
	if !res.Accepted {
		t.Fatalf("SessionStart: %s %s", res.Code, res.Message)
	}
	checkRoundTrip(t, res.State)
	st := res.State
	for i, s := range steps {
		res := m.Step(&guest.StepRequest{
			State: st,
			Envelope: guest.Envelope{MessageType: s.typ, MessageID: fmt.Sprintf("m%d", i+1), Sender: s.sender,
				Payload: s.payload},
			Session: sess,
		})
		switch {
		case s.want == "" && !res.Accepted:
			t.Fatalf("step %d %s from %s: rejected %s: %s", i+1, s.typ, s.sender, res.Code, res.Message)
		case s.want != "" && res.Accepted:
			t.Fatalf("step %d %s from %s: accepted, want %s", i+1, s.typ, s.sender, s.want)
		case s.want != "" && res.Code != s.want:
			t.Fatalf("step %d %s from %s: code %s (%s), want %s", i+1, s.typ, s.sender, res.Code, res.Message, s.want)
		case res.Accepted:
			checkRoundTrip(t, res.State)
			st = res.State
		}
	}
	return st
}

func view(t *testing.T, st []byte) map[string]any {
	t.Helper()
	b, err := Mode{}.View(st, nil)
	if err != nil {
		t.Fatal(err)
	}
	var v map[string]any
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatal(err)
	}
	return v
}

func phaseOf(t *testing.T, st []byte) string {
	t.Helper()
	s, err := decodeState(st)
	if err != nil {
		t.Fatal(err)
	}
	return s.phase()
}

func TestDescribe(t *testing.T) {
	d := Mode{}.Describe()
	if d.Mode != "macp.mode.task.v1" || d.ModeVersion != "1.0.0" || d.DeterminismClass != "structural-only" ||
		d.ParticipantModel != "orchestrated" || d.Title == "" || d.Description == "" || d.SchemaURIs["protobuf"] == "" {
		t.Fatalf("descriptor %+v", d)
	}
	want := []string{"SessionStart", "TaskRequest", "TaskAccept", "TaskReject", "TaskUpdate", "TaskComplete",
		"TaskFail", "Commitment"}
	if !slices.Equal(d.MessageTypes, want) || !slices.Equal(d.TerminalMessageTypes, []string{"Commitment"}) {
		t.Fatalf("descriptor %+v", d)
	}
}

func TestSessionStart(t *testing.T) {
	cases := []struct {
		name, rules string
		want        macperr.Code
		allow       bool
	}{
		{"empty", "", "", false},
		{"default", "{}", "", false},
		{"allow", realloc, "", true},
		{"explicit false", `{"assignment":{"allow_reassignment_on_reject":false}}`, "", false},
		{"other keys ignored", `{"completion":{"require_output":true},"commitment":{"authority":"any_participant"}}`,
			"", false},
		{"wrong type", `{"assignment":{"allow_reassignment_on_reject":1}}`, ie, false},
		{"not an object", `"x"`, ie, false},
		{"malformed", `{`, ie, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			res := Mode{}.Step(&guest.StepRequest{Envelope: guest.Envelope{MessageType: MsgSessionStart},
				Session: session(c.rules)})
			if c.want != "" {
				if res.Accepted || res.Code != c.want {
					t.Fatalf("got %v %s %s, want %s", res.Accepted, res.Code, res.Message, c.want)
				}
				return
			}
			if !res.Accepted {
				t.Fatalf("rejected %s %s", res.Code, res.Message)
			}
			s, err := decodeState(res.State)
			if err != nil {
				t.Fatal(err)
			}
			if s.AllowReassignment != c.allow || s.phase() != "AwaitingRequest" {
				t.Fatalf("state %+v", s)
			}
		})
	}
}

func TestStateGuards(t *testing.T) {
	var m Mode
	sess := session("{}")
	st := run(t, sess)
	for _, c := range []struct {
		name  string
		state []byte
		typ   string
		want  macperr.Code
	}{
		{"second SessionStart", st, MsgSessionStart, ie},
		{"no state", nil, MsgTaskRequest, macperr.InternalError},
		{"corrupt state", []byte{0xff}, MsgTaskRequest, macperr.InternalError},
		{"unknown format", protowire.AppendVarint(protowire.AppendTag(nil, fFormat, protowire.VarintType), 2),
			MsgTaskRequest, macperr.InternalError},
		{"wrong wire type", protowire.AppendString(protowire.AppendTag(st, fUpdateCount, protowire.BytesType), "x"),
			MsgTaskRequest, macperr.InternalError},
		{"unknown type", st, "Vote", ie},
		{"unknown type, lower case", st, "task_request", ie},
	} {
		t.Run(c.name, func(t *testing.T) {
			res := m.Step(&guest.StepRequest{State: c.state, Envelope: guest.Envelope{MessageType: c.typ,
				Sender: planner}, Session: sess})
			if res.Accepted || res.Code != c.want {
				t.Fatalf("got %v %s (%s), want %s", res.Accepted, res.Code, res.Message, c.want)
			}
		})
	}
}

func TestTaskRequest(t *testing.T) {
	sess := session("{}")
	badUTF8 := protowire.AppendString(protowire.AppendTag(nil, 1, protowire.BytesType), "t\xff")
	st := run(t, sess,
		request(t, worker, "t1", worker).fails(forbid),
		request(t, outsider, "t1", worker).fails(forbid),
		step{worker, MsgTaskRequest, []byte{0x0a, 0x09}, forbid},
		step{planner, MsgTaskRequest, []byte{0x0a, 0x09}, ie},
		step{planner, MsgTaskRequest, badUTF8, ie},
		request(t, planner, "", worker).fails(ie),
		request(t, planner, " \t", worker).fails(ie),
		request(t, planner, "t1", outsider).fails(ie),
		request(t, planner, "t1", worker),
		request(t, planner, "t2", worker).fails(ie),
		request(t, planner, "t1", worker).fails(ie),
	)
	v := view(t, st)
	if v["phase"] != "Requested" || v["task_id"] != "t1" || v["requested_assignee"] != worker ||
		v["active_assignee"] != "" {
		t.Fatalf("view %v", v)
	}
	task := v["task"].(map[string]any)
	if task["requester"] != planner || task["title"] != "Build" || task["deadline_unix_ms"] != 99.0 ||
		task["input_present"] != true {
		t.Fatalf("task %v", task)
	}
	// The initiator need not be a declared participant (digest A11), and
	// the assignee may be left open.
	st = run(t, session("{}", worker, helper), request(t, planner, "t1", ""))
	if phaseOf(t, st) != "Requested" {
		t.Fatal(phaseOf(t, st))
	}
}

func TestBeforeRequest(t *testing.T) {
	run(t, session("{}"),
		acceptMsg(t, worker).fails(ie),
		rejectMsg(t, worker).fails(ie),
		update(t, worker, 0.1).fails(ie),
		complete(t, worker, "x").fails(ie),
		fail(t, worker).fails(ie),
		acceptMsg(t, outsider).fails(forbid),
		update(t, outsider, 0.1).fails(forbid),
		commitMsg(t, true).fails(ie),
		commitMsg(t, false).fails(ie),
	)
}

func TestAcceptRequestedAssignee(t *testing.T) {
	sess := session("{}")
	wrongTask := step{worker, MsgTaskAccept, enc(t, &taskv1.TaskAcceptPayload{TaskId: "t2"}), ""}
	wrongAssignee := step{worker, MsgTaskAccept, enc(t, &taskv1.TaskAcceptPayload{TaskId: "t1", Assignee: helper}), ""}
	noAssignee := step{worker, MsgTaskAccept, enc(t, &taskv1.TaskAcceptPayload{TaskId: "t1"}), ""}
	st := run(t, sess,
		request(t, planner, "t1", worker),
		acceptMsg(t, helper).fails(forbid),
		acceptMsg(t, planner).fails(forbid),
		acceptMsg(t, outsider).fails(forbid),
		step{helper, MsgTaskAccept, []byte{0xff}, forbid},
		step{worker, MsgTaskAccept, []byte{0xff}, ie},
		wrongTask.fails(ie),
		wrongAssignee.fails(ie),
		noAssignee,
		acceptMsg(t, worker).fails(ie),
		acceptMsg(t, helper).fails(forbid),
	)
	v := view(t, st)
	if v["phase"] != "Assigned" || v["active_assignee"] != worker || fmt.Sprint(v["assignments"]) != "["+worker+"]" {
		t.Fatalf("view %v", v)
	}
}

func TestAcceptOpenTask(t *testing.T) {
	sess := session("{}")
	run(t, sess,
		request(t, planner, "t1", ""),
		acceptMsg(t, planner).fails(forbid), // the initiator cannot take its own open task
		acceptMsg(t, outsider).fails(forbid),
		acceptMsg(t, helper),
		acceptMsg(t, worker).fails(ie),
		rejectMsg(t, worker).fails(ie), // not the assignee, while assigned
		rejectMsg(t, helper).fails(ie), // irrevocable without the policy flag
	)
	// The requested assignee may be the initiator itself when it is listed.
	run(t, session("{}", planner, worker), request(t, planner, "t1", planner), acceptMsg(t, planner))
}

func TestRejectWithoutReassignment(t *testing.T) {
	sess := session("{}")
	st := run(t, sess,
		request(t, planner, "t1", ""),
		rejectMsg(t, worker),
		rejectMsg(t, worker).fails(ie), // at most once
		acceptMsg(t, worker).fails(ie), // no accept after declining
		acceptMsg(t, helper).fails(ie), // no accept after any rejection without the flag
		rejectMsg(t, planner).fails(forbid),
		rejectMsg(t, helper),
	)
	v := view(t, st)
	rej := v["rejections"].([]any)
	if v["phase"] != "Requested" || len(rej) != 2 || rej[0].(map[string]any)["sender"] != worker ||
		rej[0].(map[string]any)["reason"] != "busy" || rej[0].(map[string]any)["released"] != false {
		t.Fatalf("view %v", v)
	}
	// With a requested assignee, only that participant answers.
	run(t, sess, request(t, planner, "t1", worker), rejectMsg(t, helper).fails(forbid), rejectMsg(t, worker),
		acceptMsg(t, worker).fails(ie))
}

func TestReassignment(t *testing.T) {
	sess := session(realloc)
	st := run(t, sess,
		request(t, planner, "t1", ""),
		rejectMsg(t, helper),
		acceptMsg(t, worker), // another participant may accept after a rejection
		update(t, worker, 0.2),
		rejectMsg(t, helper).fails(ie), // not the assignee
		rejectMsg(t, worker),           // the assignee gives the task back
		update(t, worker, 0.3).fails(forbid),
		acceptMsg(t, worker).fails(ie), // declined once: cannot take it again
		acceptMsg(t, helper).fails(ie), // helper declined before
	)
	v := view(t, st)
	if v["phase"] != "Requested" || v["active_assignee"] != "" || fmt.Sprint(v["assignments"]) != "["+worker+"]" {
		t.Fatalf("view %v", v)
	}
	rej := v["rejections"].([]any)
	if len(rej) != 2 || rej[1].(map[string]any)["released"] != true || rej[1].(map[string]any)["sender"] != worker {
		t.Fatalf("rejections %v", rej)
	}
	// A third participant takes over and finishes.
	four := session(realloc, planner, worker, helper, "agent://spare")
	st = run(t, four, request(t, planner, "t1", ""), acceptMsg(t, worker), rejectMsg(t, worker),
		acceptMsg(t, "agent://spare"), complete(t, "agent://spare", "out"), commitMsg(t, true))
	if v := view(t, st); v["phase"] != "Committed" ||
		fmt.Sprint(v["assignments"]) != "["+worker+" agent://spare]" {
		t.Fatalf("view %v", v)
	}
	// A requested assignee that gives the task back leaves nobody eligible.
	run(t, sess, request(t, planner, "t1", worker), acceptMsg(t, worker), rejectMsg(t, worker),
		acceptMsg(t, helper).fails(forbid), acceptMsg(t, worker).fails(ie))
}

func TestAssigneeMessages(t *testing.T) {
	sess := session("{}")
	assigned := func() []step {
		return []step{request(t, planner, "t1", worker), acceptMsg(t, worker)}
	}
	nan := step{worker, MsgTaskUpdate, enc(t, &taskv1.TaskUpdatePayload{TaskId: "t1", Progress: math.NaN()}), ""}
	inf := step{worker, MsgTaskUpdate, enc(t, &taskv1.TaskUpdatePayload{TaskId: "t1", Progress: math.Inf(1)}), ""}
	otherTask := step{worker, MsgTaskUpdate, enc(t, &taskv1.TaskUpdatePayload{TaskId: "t9"}), ""}
	wrongAssignee := step{worker, MsgTaskComplete, enc(t, &taskv1.TaskCompletePayload{TaskId: "t1", Assignee: helper}), ""}
	wrongFailAssignee := step{worker, MsgTaskFail, enc(t, &taskv1.TaskFailPayload{TaskId: "t1", Assignee: helper}), ""}
	st := run(t, sess, append(assigned(),
		update(t, planner, 0.5).fails(forbid),
		update(t, helper, 0.5).fails(forbid),
		update(t, outsider, 0.5).fails(forbid),
		complete(t, helper, "x").fails(forbid),
		fail(t, planner).fails(forbid),
		step{helper, MsgTaskUpdate, []byte{0xff}, forbid},
		step{worker, MsgTaskUpdate, []byte{0xff}, ie},
		nan.fails(ie), inf.fails(ie), otherTask.fails(ie),
		wrongAssignee.fails(ie), wrongFailAssignee.fails(ie),
		update(t, worker, 0.25),
		update(t, worker, 0.75),
		complete(t, worker, "artifact"),
		update(t, worker, 1).fails(ie),
		complete(t, worker, "again").fails(ie),
		fail(t, worker).fails(ie),
		acceptMsg(t, worker).fails(ie),
		rejectMsg(t, worker).fails(ie),
	)...)
	v := view(t, st)
	if v["phase"] != "Completed" || v["update_count"] != 2.0 || v["output_present"] != true {
		t.Fatalf("view %v", v)
	}
	if lu := v["last_update"].(map[string]any); lu["progress"] != 0.75 || lu["status"] != "running" ||
		lu["partial_output_present"] != true {
		t.Fatalf("last_update %v", lu)
	}
	rep := v["terminal_report"].(map[string]any)
	if rep["outcome"] != "complete" || rep["assignee"] != worker || rep["output_size"] != 8.0 ||
		rep["summary"] != "done" || rep["message_id"] == "" {
		t.Fatalf("report %v", rep)
	}
	key := rep["idempotency_key"].(map[string]any)
	if key["task_id"] != "t1" || key["assignee"] != worker || key["message_id"] != rep["message_id"] {
		t.Fatalf("idempotency key %v", key)
	}
	// TaskFail, and a TaskComplete without output.
	st = run(t, sess, append(assigned(), fail(t, worker))...)
	v = view(t, st)
	rep = v["terminal_report"].(map[string]any)
	if v["phase"] != "Failed" || rep["outcome"] != "fail" || rep["error_code"] != "BUILD_FAILED" ||
		rep["reason"] != "broken" || rep["retryable"] != true || v["output_present"] != false {
		t.Fatalf("view %v", v)
	}
	st = run(t, sess, append(assigned(), complete(t, worker, ""))...)
	if v := view(t, st); v["output_present"] != false ||
		v["terminal_report"].(map[string]any)["output_present"] != false {
		t.Fatalf("view %v", v)
	}
}

func TestCommitment(t *testing.T) {
	sess := session("{}")
	base := func() []step { return []step{request(t, planner, "t1", worker), acceptMsg(t, worker)} }
	run(t, sess, append(base(), commitMsg(t, true).fails(ie), update(t, worker, 0.5), commitMsg(t, false).fails(ie))...)
	for _, c := range []struct {
		name     string
		report   step
		positive bool
	}{
		{"complete positive", complete(t, worker, "x"), true},
		{"complete negative", complete(t, worker, "x"), false},
		{"fail negative", fail(t, worker), false},
		{"fail positive", fail(t, worker), true},
	} {
		t.Run(c.name, func(t *testing.T) {
			st := run(t, sess, append(base(), c.report,
				step{planner, MsgCommitment, []byte{0x0a, 0x09}, ie},
				commitMsg(t, c.positive),
				commitMsg(t, c.positive).fails(ie),
				update(t, worker, 1).fails(ie),
			)...)
			if phaseOf(t, st) != "Committed" {
				t.Fatal(phaseOf(t, st))
			}
		})
	}
}

func TestDeterminism(t *testing.T) {
	sess := session(realloc)
	script := func() []step {
		return []step{request(t, planner, "t1", ""), rejectMsg(t, helper), acceptMsg(t, worker),
			update(t, worker, 0.5), complete(t, worker, "out")}
	}
	a, b := run(t, sess, script()...), run(t, sess, script()...)
	if !bytes.Equal(a, b) {
		t.Fatal("same history, different state bytes")
	}
	va, err := Mode{}.View(a, &sess)
	if err != nil {
		t.Fatal(err)
	}
	for range 10 {
		if vb, _ := (Mode{}).View(b, &sess); !bytes.Equal(va, vb) {
			t.Fatal("view not deterministic")
		}
	}
}

func TestViewShape(t *testing.T) {
	st := run(t, session("{}"))
	b, err := Mode{}.View(st, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"phase":"AwaitingRequest","task_id":"","task":null,"requested_assignee":"","active_assignee":"",` +
		`"assignments":[],"rejections":[],"update_count":0,"last_update":null,"terminal_report":null,` +
		`"output_present":false,"rules":{"allow_reassignment_on_reject":false}}`
	if string(b) != want {
		t.Fatalf("view\n%s\nwant\n%s", b, want)
	}
	if _, err := (Mode{}).View([]byte{0xff}, nil); err == nil {
		t.Fatal("corrupt state viewed")
	}
}

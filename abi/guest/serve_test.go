package guest

import (
	"errors"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	abiv1 "github.com/concord-macp/concord/proto/concord/abi/v1"
	macpv1 "github.com/concord-macp/concord/proto/macp/v1"
)

// echoMode accepts every envelope and returns state followed by the message
// type; "Panic" panics, and View fails on the state "bad".
type echoMode struct{}

func (echoMode) Describe() Descriptor {
	return Descriptor{Mode: "test.echo", ModeVersion: "1", SchemaURIs: map[string]string{"b": "2", "a": "1"}}
}

func (echoMode) Step(req *StepRequest) Result {
	switch req.Envelope.MessageType {
	case "Panic":
		panic("boom")
	case "Reject":
		return Reject("FORBIDDEN", "no %s", req.Envelope.Sender)
	}
	return Accept(append(req.State, req.Envelope.MessageType...))
}

func (echoMode) View(state []byte, s *Session) ([]byte, error) {
	switch string(state) {
	case "bad":
		return nil, errors.New("corrupt state")
	case "panic":
		panic("view boom")
	case "":
		return nil, nil
	}
	return []byte(`{"state":"` + string(state) + `","session":"` + s.SessionID + `"}`), nil
}

// panicDescribe panics in Describe.
type panicDescribe struct{ echoMode }

func (panicDescribe) Describe() Descriptor { panic("no descriptor") }

func step(t *testing.T, m Mode, in []byte) *abiv1.StepResponse {
	t.Helper()
	var resp abiv1.StepResponse
	if err := proto.Unmarshal(handleStep(m, in, nil), &resp); err != nil {
		t.Fatal(err)
	}
	return &resp
}

func stepReq(typ string, state []byte) []byte {
	b, _ := proto.Marshal(&abiv1.StepRequest{
		State:    state,
		Envelope: &macpv1.Envelope{MessageType: typ, Sender: "agent://x"},
	})
	return b
}

func TestHandleStep(t *testing.T) {
	resp := step(t, echoMode{}, stepReq("Vote", []byte("s:")))
	if resp.GetVerdict() != abiv1.Verdict_VERDICT_ACCEPT || string(resp.GetState()) != "s:Vote" {
		t.Fatalf("accept: %v", resp)
	}
	resp = step(t, echoMode{}, stepReq("Reject", nil))
	if resp.GetVerdict() != abiv1.Verdict_VERDICT_REJECT || resp.GetErrorCode() != "FORBIDDEN" ||
		resp.GetErrorMessage() != "no agent://x" {
		t.Fatalf("reject: %v", resp)
	}
}

func TestHandleStepRecoversPanic(t *testing.T) {
	resp := step(t, echoMode{}, stepReq("Panic", nil))
	if resp.GetVerdict() != abiv1.Verdict_VERDICT_REJECT || resp.GetErrorCode() != "INTERNAL_ERROR" ||
		!strings.Contains(resp.GetErrorMessage(), "boom") {
		t.Fatalf("panic: %v", resp)
	}
}

func TestHandleStepBadInput(t *testing.T) {
	for _, in := range [][]byte{{0xff}, {0x12, 0x10, 0x01}, {0x0c}} {
		resp := step(t, echoMode{}, in)
		if resp.GetVerdict() != abiv1.Verdict_VERDICT_REJECT || resp.GetErrorCode() != "INTERNAL_ERROR" ||
			!strings.Contains(resp.GetErrorMessage(), "decode StepRequest") {
			t.Fatalf("input %x: %v", in, resp)
		}
	}
	resp := step(t, nil, stepReq("Vote", nil))
	if resp.GetErrorCode() != "INTERNAL_ERROR" || !strings.Contains(resp.GetErrorMessage(), "guest.Serve") {
		t.Fatalf("no mode: %v", resp)
	}
}

// viewResult decodes a ViewResponse and the error fields it may carry.
func viewResult(t *testing.T, b []byte) (json, code, msg string) {
	t.Helper()
	err := EachField(b, func(num protowire.Number, _ protowire.Type, v []byte, _ uint64) error {
		switch num {
		case 1:
			json = string(v)
		case 2:
			code = string(v)
		case 3:
			msg = string(v)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return json, code, msg
}

func TestHandleView(t *testing.T) {
	req := func(state string) []byte {
		b, _ := proto.Marshal(&abiv1.ViewRequest{State: []byte(state), Session: &abiv1.Session{SessionId: "s1"}})
		return b
	}
	cases := []struct {
		state, json, code, msg string
	}{
		{"x", `{"state":"x","session":"s1"}`, "", ""},
		{"", `{}`, "", ""},
		{"bad", "", "INTERNAL_ERROR", "view: corrupt state"},
		{"panic", "", "INTERNAL_ERROR", "mode panicked in View: view boom"},
	}
	for _, c := range cases {
		json, code, msg := viewResult(t, handleView(echoMode{}, req(c.state), nil))
		if json != c.json || code != c.code || msg != c.msg {
			t.Errorf("state %q: got %q %q %q", c.state, json, code, msg)
		}
	}
	if _, code, _ := viewResult(t, handleView(echoMode{}, []byte{0xff}, nil)); code != "INTERNAL_ERROR" {
		t.Errorf("bad input: code %q", code)
	}
}

func TestHandleDescribe(t *testing.T) {
	b, ok := handleDescribe(echoMode{}, nil)
	var d macpv1.ModeDescriptor
	if !ok || proto.Unmarshal(b, &d) != nil || d.GetMode() != "test.echo" || d.GetSchemaUris()["b"] != "2" {
		t.Fatalf("describe: %v %v", ok, &d)
	}
	if _, ok := handleDescribe(panicDescribe{}, nil); ok {
		t.Fatal("panicking Describe reported ok")
	}
	if _, ok := handleDescribe(nil, nil); ok {
		t.Fatal("no mode reported ok")
	}
}

func TestServe(t *testing.T) {
	defer func() { registered = nil }()
	mustPanic := func(name string, f func()) {
		t.Helper()
		defer func() {
			if recover() == nil {
				t.Errorf("%s did not panic", name)
			}
		}()
		f()
	}
	mustPanic("Serve(nil)", func() { Serve(nil) })
	Serve(echoMode{})
	if registered == nil {
		t.Fatal("mode not registered")
	}
	mustPanic("second Serve", func() { Serve(echoMode{}) })
}

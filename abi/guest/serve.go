package guest

import (
	"fmt"

	"github.com/concord-macp/concord/macperr"
)

// registered is the mode this module serves. A WebAssembly module holds
// exactly one mode, and the host calls the exported ABI functions with
// nothing but pointers and lengths, so the mode has to live in a package
// variable. It is set once, by Serve, while the module initializes, and only
// read afterwards; an instance runs one call at a time, so no lock is needed.
var registered Mode

// Serve registers m as the mode of this module. Call it exactly once, from an
// init function of the mode's main package:
//
//	func init() { guest.Serve(myMode{}) }
//
// A module built with -buildmode=c-shared is a WASI reactor: its
// initialization runs package init functions but never main.main, so Serve
// must not be called from main. Serve panics when m is nil or when it is
// called twice; during initialization that fails the module's load with a
// clear error.
//
// Serve also compiles on other platforms (it only records m), so that mode
// packages build, vet and test natively.
func Serve(m Mode) {
	if m == nil {
		panic("guest: Serve called with a nil Mode")
	}
	if registered != nil {
		panic("guest: Serve called more than once")
	}
	registered = m
}

// handleStep decodes a StepRequest from in, runs m on it and appends the
// encoded StepResponse to out. It never panics: malformed input and panics
// inside the mode become rejections with code INTERNAL_ERROR.
func handleStep(m Mode, in, out []byte) []byte {
	res := runStep(m, in)
	return appendStepResponse(out, &res)
}

func runStep(m Mode, in []byte) (res Result) {
	if m == nil {
		return Reject(macperr.InternalError, "no mode registered: the module must call guest.Serve from init")
	}
	var req StepRequest
	if err := decodeStepRequest(in, &req); err != nil {
		return Reject(macperr.InternalError, "decode StepRequest: %v", err)
	}
	defer func() {
		if r := recover(); r != nil {
			res = Reject(macperr.InternalError, "mode panicked in Step: %v", r)
		}
	}()
	return m.Step(&req)
}

// handleView decodes a ViewRequest from in, runs m.View and appends the
// encoded ViewResponse to out. Errors and panics are reported in the
// response's error fields with code INTERNAL_ERROR.
func handleView(m Mode, in, out []byte) []byte {
	json, msg := runView(m, in)
	if msg != "" {
		return appendViewResponse(out, nil, macperr.InternalError, msg)
	}
	if len(json) == 0 {
		json = []byte("{}")
	}
	return appendViewResponse(out, json, "", "")
}

func runView(m Mode, in []byte) (json []byte, errMsg string) {
	if m == nil {
		return nil, "no mode registered: the module must call guest.Serve from init"
	}
	state, session, err := decodeViewRequest(in)
	if err != nil {
		return nil, fmt.Sprintf("decode ViewRequest: %v", err)
	}
	defer func() {
		if r := recover(); r != nil {
			json, errMsg = nil, fmt.Sprintf("mode panicked in View: %v", r)
		}
	}()
	json, err = m.View(state, &session)
	if err != nil {
		return nil, fmt.Sprintf("view: %v", err)
	}
	return json, ""
}

// handleDescribe appends m's encoded ModeDescriptor to out. It reports
// false, and appends nothing, when no mode is registered or Describe panics;
// the host then refuses to load the module.
func handleDescribe(m Mode, out []byte) (b []byte, ok bool) {
	if m == nil {
		return out, false
	}
	defer func() {
		if r := recover(); r != nil {
			b, ok = out, false
		}
	}()
	d := m.Describe()
	return appendDescriptor(out, &d), true
}

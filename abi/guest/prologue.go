package guest

import "github.com/concord-macp/concord/macperr"

// Begin is the prologue of a mode's Step that does not use Machine: the
// checks every mode makes before it looks at the message, with the
// specification's codes.
//
//   - A SessionStart on a session that has a state is refused with
//     INVALID_ENVELOPE; any other SessionStart is decided by start.
//   - Any other message without a state is refused with INTERNAL_ERROR (a
//     host that skipped SessionStart), as is a state decode cannot read.
//   - A message on a session that committed reports true is refused with
//     INVALID_ENVELOPE (the host closes the session first; this guards a
//     host bug).
//
// When ok is false res is the verdict; otherwise s is the decoded state.
//
//	s, res, ok := guest.Begin(req, start, Unmarshal, func(s *State) bool { return s.Commitment != nil })
//	if !ok {
//		return res
//	}
func Begin[S any](req *StepRequest, start func(*Session) Result, decode func([]byte) (S, error), committed func(S) bool) (s S, res Result, ok bool) {
	if req.Envelope.MessageType == msgSessionStart {
		if len(req.State) != 0 {
			return s, Reject(macperr.InvalidEnvelope, "the session has already started"), false
		}
		return s, start(&req.Session), false
	}
	if len(req.State) == 0 {
		return s, Reject(macperr.InternalError, "no mode state for %s: SessionStart was not applied", req.Envelope.MessageType), false
	}
	s, err := decode(req.State)
	switch {
	case err != nil:
		return s, Reject(macperr.InternalError, "%v", err), false
	case committed(s):
		return s, Reject(macperr.InvalidEnvelope, "the session is already committed"), false
	}
	return s, Result{}, true
}

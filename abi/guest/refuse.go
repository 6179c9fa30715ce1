package guest

import (
	"errors"
	"fmt"
	"strings"

	"github.com/concord-macp/concord/macperr"
)

// Invalid returns an error that rejects the envelope with INVALID_ENVELOPE:
// a malformed payload, a bad reference, a message in the wrong phase.
func Invalid(format string, args ...any) error {
	return macperr.New(macperr.InvalidEnvelope, format, args...)
}

// Forbidden returns an error that rejects the envelope with FORBIDDEN: the
// sender may not send it.
func Forbidden(format string, args ...any) error {
	return macperr.New(macperr.Forbidden, format, args...)
}

// RejectError turns an error of a mode's handler into a rejection. An error
// that carries a MACP code (Invalid, Forbidden, macperr.New) keeps it; any
// other error means the mode found the envelope invalid and is reported as
// INVALID_ENVELOPE with the error's text.
func RejectError(err error) Result {
	var e *macperr.Error
	if errors.As(err, &e) {
		return Result{Code: e.Code, Message: e.Message}
	}
	return Result{Code: macperr.InvalidEnvelope, Message: err.Error()}
}

// BlankError is the error of a payload field that must not be blank.
func BlankError(field string) error { return fmt.Errorf("field %q must not be blank", field) }

// RequiredError is the error of a payload field that must be given.
func RequiredError(field string) error { return fmt.Errorf("field %q is required", field) }

// RangeError is the error of a payload field whose value v is outside
// [lo, hi].
func RangeError(field string, v, lo, hi uint64) error {
	return fmt.Errorf("field %q must be between %d and %d, got %d", field, lo, hi, v)
}

// Blank reports whether s is empty after trimming white space.
func Blank(s string) bool { return strings.TrimSpace(s) == "" }

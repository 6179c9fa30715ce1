package guest

import (
	"fmt"
	"strings"
)

// ReadRules decodes the object under key in the policy rules text (a
// Session's PolicyRules) into dst, strictly: unknown keys inside it are
// refused, as in a payload. It reports false, leaving dst alone, when the
// rules are empty or have no such key (or it is null). Other keys of the
// rules, such as the host's "commitment", are not the mode's: their values
// are checked to be JSON and otherwise ignored. A mode reads its rules once,
// at SessionStart, and keeps what it needs in its state.
func ReadRules(text, key string, dst interface{ DecodePayload(src string) error }) (bool, error) {
	if t := strings.TrimSpace(text); t == "" || t == "null" {
		return false, nil
	}
	o := NewObject(text)
	raw, found := "", false
	for {
		k, ok := o.NextKey()
		if !ok {
			break
		}
		if k == key {
			raw, found = o.Raw(), true
		} else {
			o.Skip()
		}
	}
	if err := o.Err(); err != nil {
		return false, fmt.Errorf("policy rules: %w", err)
	}
	if !found || raw == "null" {
		return false, nil
	}
	if err := dst.DecodePayload(raw); err != nil {
		return false, fmt.Errorf("policy rules %q: %w", key, err)
	}
	return true, nil
}

// Package export is the file format of one session's recorded history
// (concord.admin.v1.SessionExport as JSON): its snapshot, its whole log and,
// for a session bound to uploaded Rego, the policy's source. The admin
// console downloads it, `concord session export` writes it, and `concord
// replay --file` replays it offline.
package export

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"google.golang.org/protobuf/encoding/protojson"

	adminv1 "github.com/concord-macp/concord/proto/concord/admin/v1"
)

// Format names the file format and its version.
const Format = "concord.session-export.v1"

// MaxFileBytes bounds a file Decode reads.
const MaxFileBytes = 256 << 20

// Encode writes f as indented JSON with the .proto field names, setting its
// format.
func Encode(w io.Writer, f *adminv1.SessionExport) error {
	if f.GetSession() == nil {
		return errors.New("export: no session")
	}
	f.Format = Format
	b, err := protojson.MarshalOptions{UseProtoNames: true}.Marshal(f)
	if err != nil {
		return fmt.Errorf("export: encode: %w", err)
	}
	// protojson varies its whitespace from build to build on purpose;
	// indenting the compact form gives a stable file.
	var out bytes.Buffer
	if err := json.Indent(&out, b, "", "  "); err != nil {
		return fmt.Errorf("export: encode: %w", err)
	}
	out.WriteByte('\n')
	if _, err := w.Write(out.Bytes()); err != nil {
		return fmt.Errorf("export: write: %w", err)
	}
	return nil
}

// Decode reads a file written by Encode and checks that it is one: the
// format, a session with an id, and a dense log from 1 that ends at the
// snapshot's last sequence. Anything else is an error saying what is
// wrong.
func Decode(r io.Reader) (*adminv1.SessionExport, error) {
	b, err := io.ReadAll(io.LimitReader(r, MaxFileBytes+1))
	if err != nil {
		return nil, fmt.Errorf("export: read: %w", err)
	}
	if len(b) > MaxFileBytes {
		return nil, fmt.Errorf("export: the file is larger than %d bytes", MaxFileBytes)
	}
	f := &adminv1.SessionExport{}
	if err := protojson.Unmarshal(b, f); err != nil {
		return nil, fmt.Errorf("export: not a session export: %w", err)
	}
	return f, Check(f)
}

// Check reports what is wrong with an export, if anything.
func Check(f *adminv1.SessionExport) error {
	if f.GetFormat() != Format {
		return fmt.Errorf("export: format %.64q is not %q", f.GetFormat(), Format)
	}
	if f.GetSession() == nil {
		return errors.New("export: the file has no session")
	}
	if f.GetSession().GetMetadata().GetSessionId() == "" {
		return errors.New("export: the session has no session_id")
	}
	for i, e := range f.GetEntries() {
		if e.GetSequence() != uint64(i+1) {
			return fmt.Errorf("export: entry %d has sequence %d; the log must be dense from 1", i+1, e.GetSequence())
		}
	}
	if last := f.GetSession().GetLastSequence(); last != uint64(len(f.GetEntries())) {
		return fmt.Errorf("export: the snapshot ends at sequence %d but the file has %d entries", last, len(f.GetEntries()))
	}
	return nil
}

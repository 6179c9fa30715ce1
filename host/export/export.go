// Package export is the file format of one session's recorded history: its
// snapshot and its whole log as JSON, what the admin UI downloads and
// `concord replay --file` replays. A file is self-contained for sessions of
// built-in modes; one bound to uploaded Rego carries the source too.
package export

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"google.golang.org/protobuf/encoding/protojson"

	storev1 "github.com/concord-macp/concord/proto/concord/store/v1"
)

// Format names the file format and its version.
const Format = "concord.session-export.v1"

// MaxFileBytes bounds a file Decode reads.
const MaxFileBytes = 256 << 20

// File is one exported session.
type File struct {
	// Session is the snapshot the log ends at.
	Session *storev1.Session
	// Entries is the session's log in sequence order, 1 to
	// Session.LastSequence.
	Entries []*storev1.Entry
	// PolicySource is the Rego source of the bound policy when it is an
	// uploaded one; nil otherwise.
	PolicySource []byte
	// ExportedAtUnixMs is when the file was written.
	ExportedAtUnixMs int64
}

// wire is the JSON shape: protobuf messages as protojson with field names
// as in the .proto files.
type wire struct {
	Format           string            `json:"format"`
	ExportedAtUnixMs int64             `json:"exported_at_unix_ms"`
	Session          json.RawMessage   `json:"session"`
	Entries          []json.RawMessage `json:"entries"`
	PolicySource     *string           `json:"policy_source,omitempty"`
}

var marshal = protojson.MarshalOptions{UseProtoNames: true}

// Encode writes f as indented JSON.
func Encode(w io.Writer, f *File) error {
	if f.Session == nil {
		return errors.New("export: no session")
	}
	out := wire{Format: Format, ExportedAtUnixMs: f.ExportedAtUnixMs, Entries: make([]json.RawMessage, 0, len(f.Entries))}
	var err error
	if out.Session, err = marshal.Marshal(f.Session); err != nil {
		return fmt.Errorf("export: encode session: %w", err)
	}
	for _, e := range f.Entries {
		b, err := marshal.Marshal(e)
		if err != nil {
			return fmt.Errorf("export: encode entry %d: %w", e.GetSequence(), err)
		}
		out.Entries = append(out.Entries, b)
	}
	if f.PolicySource != nil {
		s := string(f.PolicySource)
		out.PolicySource = &s
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(out); err != nil {
		return fmt.Errorf("export: write: %w", err)
	}
	return nil
}

// Decode reads a file written by Encode and checks that it is one: the
// format, a session with an id, and a dense log that ends at the
// snapshot's last sequence. Anything else is an error saying what is
// wrong.
func Decode(r io.Reader) (*File, error) {
	b, err := io.ReadAll(io.LimitReader(r, MaxFileBytes+1))
	if err != nil {
		return nil, fmt.Errorf("export: read: %w", err)
	}
	if len(b) > MaxFileBytes {
		return nil, fmt.Errorf("export: the file is larger than %d bytes", MaxFileBytes)
	}
	var in wire
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&in); err != nil {
		return nil, fmt.Errorf("export: not a session export (JSON): %w", err)
	}
	if in.Format != Format {
		return nil, fmt.Errorf("export: format %q is not %q", in.Format, Format)
	}
	unmarshal := protojson.UnmarshalOptions{}
	f := &File{Session: &storev1.Session{}, ExportedAtUnixMs: in.ExportedAtUnixMs}
	if len(in.Session) == 0 {
		return nil, errors.New("export: the file has no session")
	}
	if err := unmarshal.Unmarshal(in.Session, f.Session); err != nil {
		return nil, fmt.Errorf("export: session: %w", err)
	}
	if f.Session.GetMetadata().GetSessionId() == "" {
		return nil, errors.New("export: the session has no session_id")
	}
	for i, raw := range in.Entries {
		e := &storev1.Entry{}
		if err := unmarshal.Unmarshal(raw, e); err != nil {
			return nil, fmt.Errorf("export: entry %d: %w", i+1, err)
		}
		if e.GetSequence() != uint64(i+1) {
			return nil, fmt.Errorf("export: entry %d has sequence %d; the log must be dense from 1", i+1, e.GetSequence())
		}
		f.Entries = append(f.Entries, e)
	}
	if last := f.Session.GetLastSequence(); last != uint64(len(f.Entries)) {
		return nil, fmt.Errorf("export: the snapshot ends at sequence %d but the file has %d entries", last, len(f.Entries))
	}
	if in.PolicySource != nil {
		f.PolicySource = []byte(*in.PolicySource)
	}
	return f, nil
}

// Package storage is the contract between Concord and its durable store:
// the session log the kernel appends to, the small records the registries
// keep, and content-addressed blobs. Badger implements it on one machine
// (host/store); a distributed backend implements the same interface, and
// storagetest holds the contract tests every implementation must pass.
//
// A session is stored as its log (one Entry per accepted envelope or
// runtime record, sequences dense from 1), its head (the Session record
// after the latest entry, without the mode state), its latest state
// snapshot (the mode state after some entry), and a dedup index of the
// message ids of its agents' entries. The mode state after the head is
// recovered by stepping the mode over the entries after the snapshot, so a
// commit does not have to rewrite the whole state every time.
package storage

import (
	"context"
	"errors"

	storev1 "github.com/concord-macp/concord/proto/concord/store/v1"
)

var (
	// ErrNotFound: no such session, record or blob.
	ErrNotFound = errors.New("not found")
	// ErrInvalid: a Commit's arguments are malformed.
	ErrInvalid = errors.New("invalid commit")
	// ErrSequence: a Commit does not continue the session's log. This is
	// the fence that keeps two writers from both extending one session.
	ErrSequence = errors.New("sequence does not continue the log")
	// ErrTooLarge: one Commit exceeds what the store can write at once.
	ErrTooLarge = errors.New("commit too large")
	// ErrClosed: the store is closed or closing.
	ErrClosed = errors.New("closed")
	// ErrStop may be returned by an iteration callback to end the
	// iteration early; the iterating method then returns nil.
	ErrStop = errors.New("stop iteration")
	// ErrNoSpace: the store refused a write, before making any of it,
	// because it has no room for it (a full disk). The store stays usable
	// and takes writes again once there is room.
	ErrNoSpace = errors.New("no space left for the write")
)

// NoSpaceMessage is what clients are told of a write refused with
// ErrNoSpace; the details (sizes, paths) stay in the server's log.
const NoSpaceMessage = "the server's disk is full: nothing was stored; retry once the operator has freed space"

// Commit is one change to one session.
type Commit struct {
	// Session is the session after the change, mode state included. Its
	// last_sequence is the last entry's sequence.
	Session *storev1.Session
	// Entries continue the session's log: consecutive sequences, the first
	// right after the log's current end. A commit without entries replaces
	// the head only and must keep last_sequence unchanged.
	Entries []*storev1.Entry
	// SaveState stores Session's mode state as the session's state
	// snapshot at its last sequence. Otherwise the head keeps naming the
	// previous snapshot, and the entries since then recover the state.
	SaveState bool
}

// Pending is a queued Commit not yet known to be durable.
type Pending interface {
	// Wait returns once the commit is durable, with nil, or with why it is
	// not. If ctx ends first it returns ctx.Err() and the write may still
	// land.
	Wait(ctx context.Context) error
}

// Log is the session log.
type Log interface {
	// Enqueue queues c and returns without waiting for it to be durable.
	// Commits are written in the order they are queued; a caller may apply
	// a session's next change before the previous one is durable, and must
	// report a change as done only once its Wait returned nil.
	Enqueue(ctx context.Context, c Commit) (Pending, error)
	// Load returns session id's head (mode state empty) and its latest state
	// snapshot, or an error wrapping ErrNotFound.
	Load(ctx context.Context, id string) (head *storev1.Session, state *storev1.StateSnapshot, err error)
	// Head returns session id's head alone, mode state empty, or an error
	// wrapping ErrNotFound.
	Head(ctx context.Context, id string) (*storev1.Session, error)
	// Heads calls fn with every session's head, mode state empty, in
	// ascending byte order of session ids.
	Heads(ctx context.Context, fn func(head *storev1.Session) error) error
	// Entries calls fn, in sequence order, for each entry of session id
	// with a sequence greater than after.
	Entries(ctx context.Context, id string, after uint64, fn func(*storev1.Entry) error) error
	// Seen returns the sequence of the agent entry of session id that
	// carries messageID, if there is one (the dedup index).
	Seen(ctx context.Context, id, messageID string) (seq uint64, ok bool, err error)
}

// Kind names a keyspace of small records kept beside the log.
type Kind string

// The record kinds.
const (
	// Policies holds policy descriptors by policy id.
	Policies Kind = "policies"
	// ModeBindings holds which module serves which mode name.
	ModeBindings Kind = "mode-bindings"
	// ModeDeclarations holds mode descriptors registered without a module,
	// by mode name.
	ModeDeclarations Kind = "mode-declarations"
	// Audit holds per-session governance records under
	// "<session id>\x00<key>".
	Audit Kind = "audit"
	// GovernanceAudit holds the trail of governance actions (host/audit),
	// keyed so that key order is the order of writing.
	GovernanceAudit Kind = "governance-audit"
)

// Records holds small records by kind and key.
type Records interface {
	// Put writes value under key, durably.
	Put(ctx context.Context, kind Kind, key string, value []byte) error
	// Delete removes key, durably; a missing key is no error.
	Delete(ctx context.Context, kind Kind, key string) error
	// EachPrefix calls fn for every record of kind whose key starts with
	// prefix ("" for all), in ascending key order.
	EachPrefix(ctx context.Context, kind Kind, prefix string, fn func(key string, value []byte) error) error
	// EachBefore calls fn for every record of kind whose key sorts before
	// before ("" = every record), in descending key order.
	EachBefore(ctx context.Context, kind Kind, before string, fn func(key string, value []byte) error) error
}

// BlobKind names a namespace of blobs.
type BlobKind string

// The blob namespaces.
const (
	// Modules holds Wasm modules by sha256 (hex).
	Modules BlobKind = "modules"
	// RegoSources holds uploaded Rego policy sources by sha256 (hex).
	RegoSources BlobKind = "rego"
)

// Blobs holds content-addressed blobs, which may be larger than a record.
type Blobs interface {
	// PutBlob stores data under name; storing an existing name again is a
	// no-op.
	PutBlob(ctx context.Context, kind BlobKind, name string, data []byte) error
	// Blob returns the blob, or an error wrapping ErrNotFound.
	Blob(ctx context.Context, kind BlobKind, name string) ([]byte, error)
	// BlobNames lists the names of kind, in ascending order.
	BlobNames(ctx context.Context, kind BlobKind) ([]string, error)
}

// Store is everything Concord keeps durably.
type Store interface {
	Log
	Records
	Blobs
}

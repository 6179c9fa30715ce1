// Package jetstream is a storage.Store on NATS JetStream: the backend of a
// Concord cluster, where every node reads and writes the same replicated
// streams.
//
// # Layout
//
// The session log is one stream, <PREFIX>_LOG, with a subject per session,
// <prefix>.log.<session token>. Each message is a LogRecord: one or more
// consecutive commits of the session (its entries, the head after them,
// the latest state snapshot they saved), written as one message. Every
// message is published with Nats-Expected-Last-Subject-Sequence set to the
// stream sequence of the session's previous message, so that of two
// writers extending the same session from the same point exactly one
// succeeds; the other's commit fails with storage.ErrSequence. The head
// and the state travel with the entries, so a commit is one fenced write
// and there is nothing to leave half-written.
//
// A message without a state snapshot names the stream sequence of the one
// that holds the latest, and every message names its predecessor, so a
// load is one or two reads of single messages and a read of the log's tail
// walks back from the last message.
//
// Records are in one KV bucket, <PREFIX>_RECORDS, under "<kind>.<key>"
// (the key's parts between 0x00 bytes hex-encoded as tokens); blobs in one
// object store, <PREFIX>_BLOBS, named "<kind>/<name>"; both with the same
// replicas as the log. Few buckets mean few replicated groups to run.
//
// # Writers
//
// A commit is queued per session. While one message of a session is on
// its way, the commits queued after it wait and then leave together as the
// next message, so a busy session writes one message per round trip, not
// one per commit, and sessions write in parallel. A failed or fenced
// message fails every commit queued behind it (they build on it), and the
// handle forgets what it knew of the session's log, so that the next Load
// starts from the stream again.
//
// The dedup index (Seen) is kept per session by the handle that writes it:
// built from the log on first use, then extended with every queued commit.
// A handle that learns of another writer (a fenced commit, a Load that
// finds the log moved) rebuilds it.
package jetstream

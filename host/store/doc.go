// Package store is Concord's durable session log, kept in an embedded Badger
// database; it implements the storage contract (host/storage): every
// accepted envelope of a session as an Entry, the session's head, its latest
// state snapshot and a dedup index, written together in one transaction.
//
// # Durability and grouping
//
// Commit returns only once its write is fsynced. One committer goroutine owns
// all writes: it takes every Commit waiting in its queue, puts them into a
// single synced Badger transaction and then wakes each caller with its own
// result. While one group is being synced the next one gathers, so under load
// many Commits share one sync and a lone writer pays no extra latency. Stats
// reports how many Commits each transaction carried.
//
// The grouping is the store's own because Badger's is weak: it batches
// concurrent transactions into one write but still syncs its write-ahead log
// once per transaction. Measured on a 2-vCPU VM (BenchmarkCommit and
// BenchmarkBadgerTxn), 32 writers each committing synced transactions of
// their own reach about 11k/s; through the committer, about 40k/s.
//
// A Commit whose context ends while it waits returns ctx.Err(), but its write
// stays queued and may still land. Any later Commit of the same session is
// written after it (and fails with ErrSequence if it does not take the
// outcome into account); once such a Commit has returned, Session tells what
// happened. Callers that ack messages should therefore wait with a context
// that the client cannot cancel, such as context.WithoutCancel.
//
// A failed transaction commit leaves the store failed: that Commit and every
// later call, reads included, returns an error wrapping ErrFailed and the
// original cause, so nothing from a half-known write is ever served. Reopening
// the directory recovers the last consistent state (Badger drops incomplete
// transactions when it replays its write-ahead log).
//
// # A full disk
//
// Badger faults (SIGBUS) when a memory-mapped write finds the filesystem
// full, also in the flushes and compactions it runs on its own. The store
// therefore keeps a reserve of free space for Badger (see space.go) and
// admits a write only while the reserve stays free after it. A refused
// write wraps ErrDiskFull; it was never queued, so the store is not failed:
// reads keep working and writes are admitted again once space is freed.
// Writable reports the state for health checks. Open refuses a filesystem
// without room to flush the write-ahead log Badger left behind.
//
// # Key layout
//
// Every key starts with one byte naming the kind of record. A session id is
// followed by a 0x00 byte, which ids may not contain, so no id's keys are a
// prefix of another id's, and iterating a kind yields sessions in ascending
// byte order of their ids (the order ListSessions pages in).
//
//	0x00 "format"                        store format version (value "2")
//	0x01 <session id> 0x00 <seq uint64>  log entry, Entry; seq big-endian
//	0x02 <session id> 0x00               session head, Session without mode state
//	0x03 <name> 0x00 <chunk uint32>      blob chunk (module bytes, Rego sources)
//	0x04 <policy id>                     policy registry record
//	0x05 <mode>                          mode binding, ModeBinding
//	0x06 <name>                          blob manifest (length, chunk count)
//	0x07 <session id> 0x00 <key>         audit record
//	0x08 <mode>                          mode declaration, ModeDeclaration
//	0x10 <session id> 0x00               latest state snapshot, StateSnapshot
//	0x11 <session id> 0x00 <message id>  dedup index: the entry's sequence
//
// Big-endian sequences make a prefix scan of 0x01 <id> 0x00 return the
// session's log in sequence order, and a seek to a given sequence start a
// backfill there.
package store

// Package crashtest is Concord's crash-safety test. It drives a real
// `concord serve` process with agents running Decision, Task, Quorum and
// uploaded-mode sessions (with suspensions and cancellations) over gRPC,
// kills the process with SIGKILL at random moments — under load, during
// start-up, during the graceful drain after SIGTERM, and during module and
// policy uploads — and restarts it. Every agent retries each message with
// the same message id until it is answered, so after the run every
// session's log must hold exactly its script: every acknowledged message
// once, nothing else. Deliberate resends of acknowledged messages must be
// answered as duplicates, half-finished sessions must continue to their
// end, uploads that were acknowledged must survive, and sampled sessions
// must replay exactly with `concord replay --data-dir`.
//
//	make crashtest                     # 25 kills
//	go test ./internal/crashtest -args -kills=8 -budget=2m
package crashtest

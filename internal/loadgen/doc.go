// Package loadgen is the load generator behind `concord bench`: it drives
// concurrent agents (connect-go gRPC clients, as the MACP SDKs are) through
// real sessions against a running Concord server, measures the transport
// ceiling (a bare MACPRuntimeService handler answering a canned Ack) with
// the same clients in the same run, and reads the server's CPU and memory
// from /proc. Each scenario returns a Report that prints as text or JSON.
package loadgen

// Package fulldisk holds the full-disk test: a real `concord serve` on a
// 48 MiB tmpfs filled by agents sending Decision sessions with 60 KB
// proposals. The server must stay up, answer every write it cannot make
// durable with a code that names the disk, keep serving reads, report
// NOT_SERVING, take writes again by itself once the filesystem grows,
// refuse to start on a full disk with a clear message, and recover
// everything acknowledged. Without the privilege to mount a filesystem
// the test simulates the small disk at the store's lowest layer instead.
package fulldisk

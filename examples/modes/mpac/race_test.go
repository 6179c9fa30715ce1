//go:build race

package mpac

// sync.Pool drops items at random under the race detector, so allocation
// counts mean nothing there (see TestStepAllocations).
func init() { raceEnabled = true }

package loadgen

import (
	"slices"
	"sync"
	"time"
)

// Latencies collects the durations of individual calls. It is safe for
// concurrent use; each worker may also keep its own and Merge them.
type Latencies struct {
	mu sync.Mutex
	d  []time.Duration
}

// Add records one call's duration.
func (l *Latencies) Add(d time.Duration) {
	l.mu.Lock()
	l.d = append(l.d, d)
	l.mu.Unlock()
}

// Merge adds every duration of other.
func (l *Latencies) Merge(other *Latencies) {
	other.mu.Lock()
	d := slices.Clone(other.d)
	other.mu.Unlock()
	l.mu.Lock()
	l.d = append(l.d, d...)
	l.mu.Unlock()
}

// Count is the number of durations recorded.
func (l *Latencies) Count() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.d)
}

// Summary computes the quantiles of what was recorded.
func (l *Latencies) Summary() Quantiles {
	l.mu.Lock()
	d := slices.Clone(l.d)
	l.mu.Unlock()
	return Summarize(d)
}

// Quantiles summarises a set of durations. Quantiles use the nearest-rank
// method: the p-quantile of n sorted values is the value at rank ⌈p·n⌉, so
// it is always one of the measured values.
type Quantiles struct {
	Count int           `json:"count"`
	Mean  time.Duration `json:"mean_ns"`
	P50   time.Duration `json:"p50_ns"`
	P99   time.Duration `json:"p99_ns"`
	P999  time.Duration `json:"p999_ns"`
	Max   time.Duration `json:"max_ns"`
}

// Summarize returns the quantiles of d (which it sorts in place).
func Summarize(d []time.Duration) Quantiles {
	if len(d) == 0 {
		return Quantiles{}
	}
	slices.Sort(d)
	var sum time.Duration
	for _, x := range d {
		sum += x
	}
	return Quantiles{
		Count: len(d),
		Mean:  sum / time.Duration(len(d)),
		P50:   nearestRank(d, 0.50),
		P99:   nearestRank(d, 0.99),
		P999:  nearestRank(d, 0.999),
		Max:   d[len(d)-1],
	}
}

// nearestRank returns the p-quantile of sorted by the nearest-rank method.
func nearestRank(sorted []time.Duration, p float64) time.Duration {
	n := len(sorted)
	// ⌈p·n⌉ computed in integers (p has at most three decimals here) so
	// that 0.99·100 is exactly rank 99, not 100 by a rounding error.
	milli := int(p*1000 + 0.5)
	rank := (milli*n + 999) / 1000
	rank = max(rank, 1)
	return sorted[min(rank, n)-1]
}

// Median returns the median of xs (the mean of the two middle values for
// an even count), or 0 for none. xs is not modified.
func Median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

package loadgen

import (
	"math/rand/v2"
	"sync"
	"testing"
	"time"
)

func TestSummarizeNearestRank(t *testing.T) {
	// 1..1000 ms, shuffled: the p-quantile by nearest rank is ⌈p·n⌉ ms.
	d := make([]time.Duration, 1000)
	for i := range d {
		d[i] = time.Duration(i+1) * time.Millisecond
	}
	rand.Shuffle(len(d), func(i, j int) { d[i], d[j] = d[j], d[i] })
	q := Summarize(d)
	want := Quantiles{Count: 1000, Mean: 500500 * time.Microsecond, P50: 500 * time.Millisecond,
		P99: 990 * time.Millisecond, P999: 999 * time.Millisecond, Max: time.Second}
	if q != want {
		t.Fatalf("Summarize = %+v, want %+v", q, want)
	}
}

func TestSummarizeSmallSets(t *testing.T) {
	for _, tc := range []struct {
		in             []time.Duration
		p50, p99, p999 time.Duration
	}{
		{nil, 0, 0, 0},
		{[]time.Duration{7}, 7, 7, 7},
		{[]time.Duration{3, 1}, 1, 3, 3},
		{[]time.Duration{4, 1, 3, 2}, 2, 4, 4},
	} {
		q := Summarize(tc.in)
		if q.P50 != tc.p50 || q.P99 != tc.p99 || q.P999 != tc.p999 || q.Count != len(tc.in) {
			t.Errorf("Summarize(%v) = %+v, want p50 %d p99 %d p99.9 %d", tc.in, q, tc.p50, tc.p99, tc.p999)
		}
	}
}

func TestLatenciesConcurrentAddAndMerge(t *testing.T) {
	var all Latencies
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			var mine Latencies
			for i := range 100 {
				mine.Add(time.Duration(w*100 + i))
			}
			all.Merge(&mine)
		})
	}
	wg.Wait()
	q := all.Summary()
	if q.Count != 800 || q.Max != 799 || all.Count() != 800 {
		t.Fatalf("merged %+v (count %d), want 800 values up to 799", q, all.Count())
	}
}

func TestMedian(t *testing.T) {
	for _, tc := range []struct {
		in   []float64
		want float64
	}{{nil, 0}, {[]float64{3}, 3}, {[]float64{3, 1, 2}, 2}, {[]float64{4, 1, 3, 2}, 2.5}} {
		in := append([]float64(nil), tc.in...)
		if got := Median(in); got != tc.want {
			t.Errorf("Median(%v) = %v, want %v", tc.in, got, tc.want)
		}
		for i := range in {
			if in[i] != tc.in[i] {
				t.Fatalf("Median reordered its input: %v", in)
			}
		}
	}
}

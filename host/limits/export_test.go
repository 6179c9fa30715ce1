package limits

// BucketsForTest returns how many rate buckets the limiter holds.
func (l *Limiter) BucketsForTest() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.buckets[Start]) + len(l.buckets[Message])
}

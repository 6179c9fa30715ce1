package metrics

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	macpv1 "github.com/concord-macp/concord/proto/macp/v1"
)

// scrapeTimeout bounds the reads a scrape makes (the session count).
const scrapeTimeout = 5 * time.Second

var (
	sessionsDesc = prometheus.NewDesc("concord_sessions",
		"Sessions by state.", []string{"state"}, nil)
	instancesDesc = prometheus.NewDesc("concord_wasm_pool_instances",
		"Wasm instances alive in a module's pool, by state (idle or busy).", []string{"mode", "digest", "engine", "state"}, nil)
	createdDesc = prometheus.NewDesc("concord_wasm_pool_instances_created_total",
		"Wasm instances started for a module.", []string{"mode", "digest", "engine"}, nil)
	discardedDesc = prometheus.NewDesc("concord_wasm_pool_instances_discarded_total",
		"Wasm instances thrown away after a trap, timeout or other failure.", []string{"mode", "digest", "engine"}, nil)
	storeSizeDesc = prometheus.NewDesc("concord_store_size_bytes",
		"Bytes the store takes on disk, by part (lsm or vlog).", []string{"part"}, nil)
)

// scrapeCollector reads the gauges that are cheaper to compute when
// scraped than to keep up to date on every change.
type scrapeCollector struct{ m *Metrics }

func (c scrapeCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{sessionsDesc, instancesDesc, createdDesc, discardedDesc, storeSizeDesc} {
		ch <- d
	}
}

func (c scrapeCollector) Collect(ch chan<- prometheus.Metric) {
	src := c.m.src
	if src.SessionStates != nil {
		ctx, cancel := context.WithTimeout(context.Background(), scrapeTimeout)
		counts, err := src.SessionStates(ctx)
		cancel()
		if err != nil {
			src.Logger.Warn("metrics: count sessions", "err", err)
			ch <- prometheus.NewInvalidMetric(sessionsDesc, err)
		} else {
			for _, st := range sessionStates {
				ch <- prometheus.MustNewConstMetric(sessionsDesc, prometheus.GaugeValue, float64(counts[st]), stateLabel(st))
			}
		}
	}
	if src.Pools != nil {
		for _, p := range src.Pools() {
			labels := []string{p.Mode, p.Digest, engineLabel(p.Sandboxed)}
			ch <- prometheus.MustNewConstMetric(instancesDesc, prometheus.GaugeValue, float64(p.Idle), append(labels, "idle")...)
			ch <- prometheus.MustNewConstMetric(instancesDesc, prometheus.GaugeValue, float64(p.Live-p.Idle), append(labels, "busy")...)
			ch <- prometheus.MustNewConstMetric(createdDesc, prometheus.CounterValue, float64(p.Created), labels...)
			ch <- prometheus.MustNewConstMetric(discardedDesc, prometheus.CounterValue, float64(p.Discarded), labels...)
		}
	}
	if src.StoreSize != nil {
		lsm, vlog, err := src.StoreSize()
		if err != nil {
			src.Logger.Warn("metrics: store size", "err", err)
			ch <- prometheus.NewInvalidMetric(storeSizeDesc, err)
		} else {
			ch <- prometheus.MustNewConstMetric(storeSizeDesc, prometheus.GaugeValue, float64(lsm), "lsm")
			ch <- prometheus.MustNewConstMetric(storeSizeDesc, prometheus.GaugeValue, float64(vlog), "vlog")
		}
	}
}

// sessionStates are the states a session can be in; each is reported,
// zero or not, so that a dashboard's series never disappear.
var sessionStates = []macpv1.SessionState{
	macpv1.SessionState_SESSION_STATE_OPEN,
	macpv1.SessionState_SESSION_STATE_SUSPENDED,
	macpv1.SessionState_SESSION_STATE_RESOLVED,
	macpv1.SessionState_SESSION_STATE_EXPIRED,
	macpv1.SessionState_SESSION_STATE_CANCELLED,
}

// stateLabel is "open" for SESSION_STATE_OPEN, and so on.
func stateLabel(st macpv1.SessionState) string {
	switch st {
	case macpv1.SessionState_SESSION_STATE_OPEN:
		return "open"
	case macpv1.SessionState_SESSION_STATE_SUSPENDED:
		return "suspended"
	case macpv1.SessionState_SESSION_STATE_RESOLVED:
		return "resolved"
	case macpv1.SessionState_SESSION_STATE_EXPIRED:
		return "expired"
	case macpv1.SessionState_SESSION_STATE_CANCELLED:
		return "cancelled"
	}
	return "unspecified"
}

package ratelimit

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/specgate/specgate/internal/buildinfo"
)

// Decisions, the label values of specgate_ratelimit_decisions_total.
const (
	decisionOK         = "ok"
	decisionOverLimit  = "over_limit"
	decisionFailOpen   = "fail_open"
	decisionFailClosed = "fail_closed"
)

// Reasons, the label values of specgate_ratelimit_unknown_descriptors_total.
const (
	reasonUnknown  = "unknown"   // no rule for the descriptor
	reasonInvalid  = "invalid"   // empty key or value
	reasonNoConfig = "no_config" // no config has arrived yet
	reasonDomain   = "domain"    // a domain other than policy.Domain
)

type metrics struct {
	reg           *prometheus.Registry
	decisions     *prometheus.CounterVec
	unknown       *prometheus.CounterVec
	storeDuration prometheus.Histogram
	storeErrors   prometheus.Counter
	failOpen      prometheus.Counter
	localHits     prometheus.Counter
	overflow      *prometheus.CounterVec
	updates       *prometheus.CounterVec
	rules         prometheus.Gauge
}

func newMetrics() *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		decisions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "specgate_ratelimit_decisions_total",
			Help: "Descriptors answered, by route, key kind and decision (ok, over_limit, fail_open, fail_closed).",
		}, []string{"route", "key", "decision"}),
		unknown: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "specgate_ratelimit_unknown_descriptors_total",
			Help: "Descriptors allowed because no rule applies, by reason (unknown, invalid, no_config, domain).",
		}, []string{"reason"}),
		storeDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "specgate_ratelimit_store_duration_seconds",
			Help:    "Time to count one request's descriptors in the store.",
			Buckets: prometheus.ExponentialBuckets(25e-6, 2, 15), // 25µs .. 400ms
		}),
		storeErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "specgate_ratelimit_store_errors_total",
			Help: "Requests whose counting failed in the store.",
		}),
		failOpen: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "specgate_ratelimit_fail_open_total",
			Help: "Descriptors allowed because the store failed and failOpen is true.",
		}),
		localHits: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "specgate_ratelimit_local_over_limit_hits_total",
			Help: "Descriptors refused from the local over-limit cache without a store round trip.",
		}),
		overflow: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "specgate_ratelimit_value_overflow_total",
			Help: "Descriptors counted in their rule's overflow bucket: the rule already counts rateLimit.maxHeaderValues header values apart in this window, by route.",
		}, []string{"route"}),
		updates: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "specgate_ratelimit_config_updates_total",
			Help: "Rate-limit configs received, by result (accepted, rejected).",
		}, []string{"result"}),
		rules: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "specgate_ratelimit_config_rules",
			Help: "Limits in the live config.",
		}),
	}
	m.reg.MustRegister(m.decisions, m.unknown, m.storeDuration, m.storeErrors, m.failOpen,
		m.localHits, m.overflow, m.updates, m.rules)
	m.reg.MustRegister(buildinfo.Collectors()...)
	return m
}

// ruleCounters are the decision counters of one rule, resolved once per config so that the
// hot path does no label lookups.
type ruleCounters [4]prometheus.Counter

const (
	cOK = iota
	cOver
	cFailOpen
	cFailClosed
)

func (m *metrics) forRule(route, kind string) ruleCounters {
	return ruleCounters{
		cOK:         m.decisions.WithLabelValues(route, kind, decisionOK),
		cOver:       m.decisions.WithLabelValues(route, kind, decisionOverLimit),
		cFailOpen:   m.decisions.WithLabelValues(route, kind, decisionFailOpen),
		cFailClosed: m.decisions.WithLabelValues(route, kind, decisionFailClosed),
	}
}

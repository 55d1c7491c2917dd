package validate

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/specgate/specgate/internal/buildinfo"
)

// Results of a check, the result label of specgate_validate_requests_total.
const (
	resultValid   = "valid"
	resultInvalid = "invalid"
	resultError   = "error" // not checked: Envoy fails the request closed (or open)
)

type metrics struct {
	reg      *prometheus.Registry
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
}

func newMetrics(schemas *Schemas) *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "specgate_validate_requests_total",
			Help: "Requests checked against their operation's description, by route and result (valid, invalid, error).",
		}, []string{"route", "result"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "specgate_validate_duration_seconds",
			Help:    "Time to check one request, by result.",
			Buckets: []float64{.00005, .0001, .00025, .0005, .001, .0025, .005, .01, .05},
		}, []string{"result"}),
	}
	m.reg.MustRegister(m.requests, m.duration,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "specgate_validate_descriptions",
			Help: "Descriptions of the control plane's current snapshot held.",
		}, func() float64 { return float64(schemas.Len()) }))
	m.reg.MustRegister(buildinfo.Collectors()...)
	return m
}

func (m *metrics) observe(route, result string, d time.Duration) {
	m.requests.WithLabelValues(route, result).Inc()
	m.duration.WithLabelValues(result).Observe(d.Seconds())
}

package xds

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	reg          *prometheus.Registry
	version      *prometheus.GaugeVec
	pushes       *prometheus.CounterVec
	rebuilds     *prometheus.CounterVec
	buildSeconds prometheus.Histogram
	streams      prometheus.Gauge
	acks         *prometheus.CounterVec
	nacks        *prometheus.CounterVec
	nodes        nodeStreams
}

func newMetrics() *metrics {
	m := &metrics{
		nodes: nodeStreams{node: map[streamKey]string{}, count: map[string]int{}},
		reg:   prometheus.NewRegistry(),
		version: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "specgate_xds_snapshot_info", Help: "The live snapshot version (value 1).",
		}, []string{"version"}),
		pushes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "specgate_xds_pushes_total", Help: "Push API calls by result.",
		}, []string{"result"}),
		rebuilds: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "specgate_xds_rebuilds_total", Help: "Rebuilds from the spec directory by source and result.",
		}, []string{"source", "result"}),
		buildSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "specgate_xds_snapshot_build_seconds", Help: "Compile, translate and validate time of a candidate snapshot.",
			Buckets: prometheus.ExponentialBuckets(0.005, 2, 12),
		}),
		streams: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "specgate_xds_connected_streams", Help: "Open xDS streams (one per Envoy or rate-limit replica over ADS).",
		}),
		acks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "specgate_xds_acks_total", Help: "Configuration updates acknowledged, by node and type.",
		}, []string{"node", "type"}),
		nacks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "specgate_xds_nacks_total", Help: "Configuration updates rejected, by node and type.",
		}, []string{"node", "type"}),
	}
	m.reg.MustRegister(m.version, m.pushes, m.rebuilds, m.buildSeconds, m.streams, m.acks, m.nacks,
		prometheus.NewGoCollector(), prometheus.NewProcessCollector(prometheus.ProcessCollectorOpts{}))
	return m
}

func (m *metrics) setVersion(v string) {
	m.version.Reset()
	m.version.WithLabelValues(v).Set(1)
}

// streamKey names a stream: SotW and delta streams are numbered separately.
type streamKey struct {
	delta bool
	id    int64
}

// nodeStreams ties streams to their node, so that a node's ACK series go with its last stream
// (a reconnecting Envoy may open the new stream before the old one is seen closed).
type nodeStreams struct {
	mu    sync.Mutex
	node  map[streamKey]string // from the stream's first request
	count map[string]int       // open streams per node
}

// streamSeen records the node of a stream's request (only the first one counts).
func (m *metrics) streamSeen(k streamKey, node string) {
	m.nodes.mu.Lock()
	defer m.nodes.mu.Unlock()
	if _, ok := m.nodes.node[k]; !ok {
		m.nodes.node[k] = node
		m.nodes.count[node]++
	}
}

// streamClosed counts a stream gone and forgets its node's ACK series with its last stream.
func (m *metrics) streamClosed(k streamKey) {
	m.streams.Dec()
	m.nodes.mu.Lock()
	defer m.nodes.mu.Unlock()
	node, ok := m.nodes.node[k]
	if !ok {
		return
	}
	delete(m.nodes.node, k)
	if m.nodes.count[node]--; m.nodes.count[node] > 0 {
		return
	}
	delete(m.nodes.count, node)
	m.acks.DeletePartialMatch(prometheus.Labels{"node": node})
}

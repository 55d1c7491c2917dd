package xds

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/specgate/specgate/internal/buildinfo"
)

type metrics struct {
	reg          *prometheus.Registry
	version      *prometheus.GaugeVec
	revision     prometheus.Gauge
	pushes       *prometheus.CounterVec
	rebuilds     *prometheus.CounterVec
	buildSeconds prometheus.Histogram
	streams      prometheus.Gauge
	acks         *prometheus.CounterVec
	nacks        *prometheus.CounterVec
	acked        *prometheus.GaugeVec
	nodes        nodeStreams
}

func newMetrics() *metrics {
	m := &metrics{
		nodes: nodeStreams{node: map[streamKey]string{}, count: map[string]int{}, sent: map[streamKey]map[string]sentVersion{}},
		reg:   prometheus.NewRegistry(),
		version: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "specgate_xds_snapshot_info", Help: "The live snapshot version (value 1).",
		}, []string{"version"}),
		revision: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "specgate_xds_spec_revision", Help: "The spec store revision being served.",
		}),
		pushes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "specgate_xds_pushes_total", Help: "Change sets, pushes, deletes and rollbacks applied through the API, by result.",
		}, []string{"result"}),
		rebuilds: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "specgate_xds_rebuilds_total", Help: "Reloads of the spec store's live set, by source and result.",
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
		acked: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "specgate_xds_acked_version_info", Help: "The version each node last acknowledged, by resource type (value 1).",
		}, []string{"node", "type", "version"}),
	}
	m.reg.MustRegister(m.version, m.revision, m.pushes, m.rebuilds, m.buildSeconds, m.streams, m.acks, m.nacks, m.acked)
	m.reg.MustRegister(buildinfo.Collectors()...)
	return m
}

func (m *metrics) setVersion(v string, revision int64) {
	m.version.Reset()
	m.version.WithLabelValues(v).Set(1)
	m.revision.Set(float64(revision))
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
	node  map[streamKey]string                 // from the stream's first request
	count map[string]int                       // open streams per node
	sent  map[streamKey]map[string]sentVersion // delta streams: last response per type
}

// sentVersion is a delta response's version by its nonce: a delta ACK names the nonce only.
type sentVersion struct{ nonce, version string }

// deltaSent records the version of a delta response, for its ACK.
func (m *metrics) deltaSent(k streamKey, typ, nonce, version string) {
	m.nodes.mu.Lock()
	defer m.nodes.mu.Unlock()
	if m.nodes.sent[k] == nil {
		m.nodes.sent[k] = map[string]sentVersion{}
	}
	m.nodes.sent[k][typ] = sentVersion{nonce, version}
}

// ackedVersion sets the version node last acknowledged for typ. On a delta stream (version
// "") it is the version of the response the ACK's nonce names, if that is the last one sent.
func (m *metrics) ackedVersion(k streamKey, node, typ, version, nonce string) {
	m.nodes.mu.Lock()
	defer m.nodes.mu.Unlock()
	if k.delta {
		sent, ok := m.nodes.sent[k][typ]
		if !ok || sent.nonce != nonce {
			return
		}
		version = sent.version
	}
	m.acked.DeletePartialMatch(prometheus.Labels{"node": node, "type": typ})
	m.acked.WithLabelValues(node, typ, version).Set(1)
}

// streamNode returns the node of a stream: the one its first request named. Envoy names its
// node only in a stream's first request (set_node_on_first_message_only), and go-control-plane
// copies it into later requests on SotW streams but not on delta ones.
func (m *metrics) streamNode(k streamKey, node string) string {
	m.nodes.mu.Lock()
	defer m.nodes.mu.Unlock()
	if first, ok := m.nodes.node[k]; ok {
		return first
	}
	m.nodes.node[k] = node
	m.nodes.count[node]++
	return node
}

// streamClosed counts a stream gone; with a node's last stream go its ACK and version series.
func (m *metrics) streamClosed(k streamKey) {
	m.streams.Dec()
	m.nodes.mu.Lock()
	defer m.nodes.mu.Unlock()
	node, ok := m.nodes.node[k]
	if !ok {
		return
	}
	delete(m.nodes.node, k)
	delete(m.nodes.sent, k)
	if m.nodes.count[node]--; m.nodes.count[node] > 0 {
		return
	}
	delete(m.nodes.count, node)
	m.acks.DeletePartialMatch(prometheus.Labels{"node": node})
	m.acked.DeletePartialMatch(prometheus.Labels{"node": node})
}

package xds

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

// A node with two streams (a reconnect seen before the old stream's close, or SotW and delta
// at once, whose stream ids may be equal) keeps its ACK series until its last stream closes.
func TestACKSeriesGoWithTheNodesLastStream(t *testing.T) {
	m := newMetrics()
	sotw, delta, other := streamKey{id: 1}, streamKey{delta: true, id: 1}, streamKey{id: 2}
	for k, node := range map[streamKey]string{sotw: "envoy-a", delta: "envoy-a", other: "envoy-b"} {
		m.streams.Inc()
		m.streamNode(k, node)
		if got := m.streamNode(k, ""); got != node { // a later request without its node
			t.Fatalf("stream %v: node %q, want %q from its first request", k, got, node)
		}
		m.acks.WithLabelValues(node, "Listener").Inc()
	}
	m.nacks.WithLabelValues("envoy-a", "Listener").Inc()

	m.streamClosed(sotw)
	if n := testutil.CollectAndCount(m.acks); n != 2 {
		t.Fatalf("after one of envoy-a's two streams closed: %d ACK series, want 2", n)
	}
	m.streamClosed(delta)
	if n := testutil.CollectAndCount(m.acks); n != 1 {
		t.Fatalf("after envoy-a's last stream closed: %d ACK series, want 1 (envoy-b's)", n)
	}
	if n := testutil.CollectAndCount(m.nacks); n != 1 {
		t.Errorf("NACK series: %d, want 1 (kept)", n)
	}
	if g := testutil.ToFloat64(m.streams); g != 1 {
		t.Errorf("connected streams %v, want 1", g)
	}
	m.streamClosed(streamKey{id: 99}) // a stream closed before any request: no node, no panic
}

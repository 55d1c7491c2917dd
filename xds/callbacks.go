package xds

import (
	"context"
	"fmt"
	"log/slog"
	"path"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/server/v3"
)

// callbacks count streams and each node's ACKs and NACKs, and keep the version each node last
// acknowledged; a NACK is logged with Envoy's error. A node's ACK series go when its last
// stream closes: Envoy pods come and go with the autoscaler, and series of pods long gone
// would pile up. NACKs stay, so that an alert sees every one.
func (s *Server) callbacks() server.Callbacks {
	ack := func(k streamKey, node *corev3.Node, typeURL, version, nonce string, errDetail interface{ GetMessage() string }) {
		id, typ := s.metrics.streamNode(k, node.GetId()), path.Base(typeURL)
		switch {
		case errDetail != nil && errDetail.GetMessage() != "":
			s.metrics.nacks.WithLabelValues(id, typ).Inc()
			s.log.Error("config rejected by node", "node", id, "type", typ, "version", version, "error", errDetail.GetMessage())
		case nonce != "":
			s.metrics.acks.WithLabelValues(id, typ).Inc()
			s.metrics.ackedVersion(k, id, typ, version, nonce)
		}
	}
	return server.CallbackFuncs{
		StreamOpenFunc: func(context.Context, int64, string) error {
			s.metrics.streams.Inc()
			return nil
		},
		StreamClosedFunc: func(id int64, _ *corev3.Node) { s.metrics.streamClosed(streamKey{id: id}) },
		DeltaStreamOpenFunc: func(context.Context, int64, string) error {
			s.metrics.streams.Inc()
			return nil
		},
		DeltaStreamClosedFunc: func(id int64, _ *corev3.Node) { s.metrics.streamClosed(streamKey{delta: true, id: id}) },
		StreamRequestFunc: func(id int64, r *discovery.DiscoveryRequest) error {
			ack(streamKey{id: id}, r.GetNode(), r.GetTypeUrl(), r.GetVersionInfo(), r.GetResponseNonce(), nilIfAbsent(r.GetErrorDetail()))
			return nil
		},
		StreamDeltaRequestFunc: func(id int64, r *discovery.DeltaDiscoveryRequest) error {
			ack(streamKey{delta: true, id: id}, r.GetNode(), r.GetTypeUrl(), "", r.GetResponseNonce(), nilIfAbsent(r.GetErrorDetail()))
			return nil
		},
		StreamDeltaResponseFunc: func(id int64, _ *discovery.DeltaDiscoveryRequest, r *discovery.DeltaDiscoveryResponse) {
			s.metrics.deltaSent(streamKey{delta: true, id: id}, path.Base(r.GetTypeUrl()), r.GetNonce(), r.GetSystemVersionInfo())
		},
	}
}

// nilIfAbsent keeps a nil *status.Status from becoming a non-nil interface.
func nilIfAbsent[T interface{ GetMessage() string }](v T) interface{ GetMessage() string } {
	if v.GetMessage() == "" {
		return nil
	}
	return v
}

// slogAdapter lets go-control-plane log through slog.
type slogAdapter struct{ l *slog.Logger }

func (a slogAdapter) Debugf(format string, args ...any) { a.l.Debug(fmt.Sprintf(format, args...)) }
func (a slogAdapter) Infof(format string, args ...any)  { a.l.Debug(fmt.Sprintf(format, args...)) }
func (a slogAdapter) Warnf(format string, args ...any)  { a.l.Warn(fmt.Sprintf(format, args...)) }
func (a slogAdapter) Errorf(format string, args ...any) { a.l.Error(fmt.Sprintf(format, args...)) }

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

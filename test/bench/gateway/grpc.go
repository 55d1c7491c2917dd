package main

import (
	"fmt"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	extauthzv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_authz/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"

	"github.com/specgate/specgate/compiler/ir"
	"github.com/specgate/specgate/compiler/translate"
	"github.com/specgate/specgate/config"
)

type grpcResult struct {
	closed, open map[string][]sample
	cpu          map[string][]float64 // server CPU µs per call, closed loop
}

// grpcBench calls Check on specgate authz and on a no-op Check server (the gRPC floor) in
// alternating rounds, with the request Envoy sends for the benchmark route.
func grpcBench(o options, gw ir.Gateway, token string, authz, noop *proc, authzAddr, noopAddr string) (grpcResult, error) {
	res := grpcResult{closed: map[string][]sample{}, open: map[string][]sample{}, cpu: map[string][]float64{}}
	req, err := checkRequest(gw, token)
	if err != nil {
		return res, err
	}
	targets := []struct {
		key, addr string
		p         *proc
	}{{"specgate", authzAddr, authz}, {"noop", noopAddr, noop}}
	loads := map[string]*grpcLoad{}
	for _, t := range targets {
		l, err := newGRPCLoad(t.addr, req, 2)
		if err != nil {
			return res, err
		}
		defer l.close()
		if s := l.closed(o.grpcConc, time.Second); s.failed > 0 || s.requests == 0 { // warm-up, and the token must pass
			return res, fmt.Errorf("gRPC Check on %s: %d of %d calls failed", t.key, s.failed, s.requests)
		}
		loads[t.key] = l
	}
	logf("gRPC Check: %d rounds × (closed loop c=%d, open loop %d/s) × %s", o.rounds, o.grpcConc, o.grpcRate, o.dur)
	for r := range o.rounds {
		order := rotate(targets, r)
		for _, t := range order {
			before := t.p.cpu()
			s := loads[t.key].closed(o.grpcConc, o.dur)
			c := float64(t.p.cpu()-before) / float64(time.Microsecond) / float64(max(1, s.requests))
			res.closed[t.key], res.cpu[t.key] = append(res.closed[t.key], s), append(res.cpu[t.key], c)
			logf("round %d %-10s closed: %6.0f rps  p50 %-9s p99 %-9s failed %d/%d  server cpu µs/call %.0f", r+1, t.key, s.rps, s.p50, s.p99, s.failed, s.requests, c)
		}
		for _, t := range order {
			s := loads[t.key].open(o.grpcRate, o.dur)
			res.open[t.key] = append(res.open[t.key], s)
			logf("round %d %-10s open:   %6.0f rps  p50 %-9s p99 %-9s failed %d/%d", r+1, t.key, s.rps, s.p50, s.p99, s.failed, s.requests)
		}
	}
	return res, nil
}

// checkRequest is what Envoy sends for GET /orders/42 with the token: the route's policy as
// compiled (context extensions), the request line and headers, the peer address.
func checkRequest(gw ir.Gateway, token string) (*authv3.CheckRequest, error) {
	res, err := envoyResources(gw, config.Default(), translate.Options{InlineRoutes: true})
	if err != nil {
		return nil, err
	}
	var ext map[string]string
	for _, vh := range res.Routes[0].VirtualHosts {
		for _, r := range vh.Routes {
			a := r.TypedPerFilterConfig[filterExtAuthz]
			pr := &extauthzv3.ExtAuthzPerRoute{}
			if r.GetRoute() == nil || a == nil || a.UnmarshalTo(pr) != nil || pr.GetCheckSettings() == nil {
				continue
			}
			ext = pr.GetCheckSettings().GetContextExtensions()
		}
	}
	if ext == nil {
		return nil, fmt.Errorf("no compiled route with ext_authz context extensions")
	}
	peer := func(ip string, p uint32) *authv3.AttributeContext_Peer {
		return &authv3.AttributeContext_Peer{Address: &corev3.Address{Address: &corev3.Address_SocketAddress{
			SocketAddress: &corev3.SocketAddress{Address: ip, PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: p}},
		}}}
	}
	return &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Source:      peer("127.0.0.1", 51234),
		Destination: peer("127.0.0.1", 8080),
		Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
			Id: "8f3c1c52-0a4e-4d0b-9d6e-3b1f0e6a2c11", Method: "GET", Path: "/orders/42", Host: "127.0.0.1:8080",
			Scheme: "http", Protocol: "HTTP/1.1",
			Headers: map[string]string{
				":method": "GET", ":path": "/orders/42", ":authority": "127.0.0.1:8080", ":scheme": "http",
				"authorization": "Bearer " + token, "user-agent": "Go-http-client/1.1", "accept-encoding": "gzip",
				"x-forwarded-proto": "http", "x-request-id": "8f3c1c52-0a4e-4d0b-9d6e-3b1f0e6a2c11",
			},
		}},
		ContextExtensions: ext,
	}}, nil
}

// startNoop runs the no-op Check server and returns its gRPC address.
func startNoop(self string) (*proc, string, error) {
	addr, err := freeAddr()
	if err != nil {
		return nil, "", err
	}
	probe, err := freeAddr()
	if err != nil {
		return nil, "", err
	}
	noop, err := start("noop-authz", nil, self, "-role", "noop-authz", "-addr", addr, "-addr2", probe)
	if err != nil {
		return nil, "", err
	}
	return noop, addr, noop.waitHTTP("http://"+probe+"/", 10*time.Second)
}

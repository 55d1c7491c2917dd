package main

import (
	"context"
	"net"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	vegeta "github.com/tsenart/vegeta/v12/lib"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// sample is one measured run: throughput of successful requests and latency percentiles.
type sample struct {
	rps      float64
	p50, p99 time.Duration
	requests uint64
	failed   uint64 // transport errors and any status but the expected one
}

// httpLoad drives GETs with vegeta, the targets in turn (each one the same request every
// time), over a client whose keep-alive connections persist between runs against the same
// Envoy.
type httpLoad struct {
	targets []vegeta.Target
	client  *http.Client
}

// get is a GET of url, with the token when there is one.
func get(url, token string) vegeta.Target {
	t := vegeta.Target{Method: http.MethodGet, URL: url}
	if token != "" {
		t.Header = http.Header{"Authorization": {"Bearer " + token}}
	}
	return t
}

// post is a POST of a JSON order to a shop of url, with the token.
func post(url, token string, body []byte) vegeta.Target {
	return vegeta.Target{Method: http.MethodPost, URL: url + "/shops/7b0e7a52-4f0c-4c43-9e0e-1f1f0f7d2a11/orders", Body: body,
		Header: http.Header{"Authorization": {"Bearer " + token}, "Content-Type": {"application/json"}}}
}

func newHTTPLoad(targets []vegeta.Target, conns int) *httpLoad {
	tr := &http.Transport{
		DialContext:         (&net.Dialer{Timeout: 2 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConnsPerHost: conns,
		MaxIdleConns:        conns,
		IdleConnTimeout:     time.Minute,
	}
	return &httpLoad{targets: targets, client: &http.Client{Transport: tr, Timeout: 5 * time.Second}}
}

// closed runs conc workers back to back for d: the rate Envoy sustains at that concurrency.
func (l *httpLoad) closed(conc int, d time.Duration) sample {
	return l.attack(vegeta.Rate{}, conc, d)
}

// open sends rate requests per second for d whatever the answers take: the latency at a
// fixed offered load.
func (l *httpLoad) open(rate int, d time.Duration) sample {
	return l.attack(vegeta.Rate{Freq: rate, Per: time.Second}, 0, d)
}

func (l *httpLoad) attack(p vegeta.Rate, workers int, d time.Duration) sample {
	opts := []func(*vegeta.Attacker){vegeta.Client(l.client), vegeta.KeepAlive(true)}
	if workers > 0 { // closed loop: exactly this many in flight (rate 0 = as fast as they go)
		opts = append(opts, vegeta.Workers(uint64(workers)), vegeta.MaxWorkers(uint64(workers)))
	}
	atk := vegeta.NewAttacker(opts...)
	var m vegeta.Metrics
	var failed uint64
	for r := range atk.Attack(vegeta.NewStaticTargeter(l.targets...), p, d, "bench") {
		m.Add(r)
		if r.Code != http.StatusOK {
			failed++
		}
	}
	m.Close()
	return sample{rps: m.Throughput, p50: m.Latencies.P50, p99: m.Latencies.P99, requests: m.Requests, failed: failed}
}

// grpcLoad calls Authorization/Check with one request (Envoy's shape, cached token) over a
// few HTTP/2 connections, as Envoy does.
type grpcLoad struct {
	clients []authv3.AuthorizationClient
	conns   []*grpc.ClientConn
	req     *authv3.CheckRequest
}

func newGRPCLoad(addr string, req *authv3.CheckRequest, conns int) (*grpcLoad, error) {
	g := &grpcLoad{req: req}
	for i := range conns {
		// Distinct authorities keep grpc-go from sharing one transport.
		c, err := grpc.NewClient("passthrough:///"+addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
			grpc.WithAuthority("authz-"+strconv.Itoa(i)))
		if err != nil {
			return nil, err
		}
		g.conns = append(g.conns, c)
		g.clients = append(g.clients, authv3.NewAuthorizationClient(c))
	}
	return g, nil
}

func (g *grpcLoad) close() {
	for _, c := range g.conns {
		_ = c.Close()
	}
}

func (g *grpcLoad) call(c authv3.AuthorizationClient) bool {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	r, err := c.Check(ctx, g.req)
	return err == nil && r.GetStatus().GetCode() == 0
}

// closed runs conc callers back to back for d.
func (g *grpcLoad) closed(conc int, d time.Duration) sample {
	lats := make([][]time.Duration, conc)
	var failed atomic.Uint64
	var wg sync.WaitGroup
	start := time.Now()
	until := start.Add(d)
	for i := range conc {
		c := g.clients[i%len(g.clients)]
		wg.Go(func() {
			for time.Now().Before(until) {
				t := time.Now()
				if !g.call(c) {
					failed.Add(1)
				}
				lats[i] = append(lats[i], time.Since(t))
			}
		})
	}
	wg.Wait()
	return summarize(slices.Concat(lats...), failed.Load(), time.Since(start))
}

// open starts a call every 1/rate s for d, latency counted from the intended start (no
// coordinated omission); at most 4096 in flight, the rest counted as failed.
func (g *grpcLoad) open(rate int, d time.Duration) sample {
	n := int(d.Seconds() * float64(rate))
	interval := time.Second / time.Duration(rate)
	lats := make([]time.Duration, n)
	var failed atomic.Uint64
	sem := make(chan struct{}, 4096)
	var wg sync.WaitGroup
	start := time.Now()
	for i := range n {
		due := start.Add(time.Duration(i) * interval)
		time.Sleep(time.Until(due))
		select {
		case sem <- struct{}{}:
		default:
			failed.Add(1)
			lats[i] = -1
			continue
		}
		c := g.clients[i%len(g.clients)]
		wg.Go(func() {
			defer func() { <-sem }()
			if !g.call(c) {
				failed.Add(1)
			}
			lats[i] = time.Since(due)
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	lats = slices.DeleteFunc(lats, func(d time.Duration) bool { return d < 0 })
	return summarize(lats, failed.Load(), elapsed)
}

func summarize(lats []time.Duration, failed uint64, elapsed time.Duration) sample {
	slices.Sort(lats)
	pct := func(p float64) time.Duration {
		if len(lats) == 0 {
			return 0
		}
		return lats[min(len(lats)-1, int(p*float64(len(lats))))]
	}
	ok := uint64(len(lats)) - min(failed, uint64(len(lats)))
	return sample{rps: float64(ok) / elapsed.Seconds(), p50: pct(0.50), p99: pct(0.99), requests: uint64(len(lats)), failed: failed}
}

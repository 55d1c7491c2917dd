//go:build wasip1

// Command probe is the plugin TestEnvoy runs in a real Envoy: each request shows in its
// headers what the host calls of package proxywasm returned.
package main

import (
	"strconv"
	"time"

	"github.com/specgate/specgate/internal/proxywasm"
)

func main() {}

func init() { proxywasm.SetRoot(func(uint32) proxywasm.Root { return &root{} }) }

type root struct {
	config string
	feed   string // the last body the feed cluster answered
	calls  int
}

func (r *root) Configure(config []byte) bool {
	r.config = string(config)
	return proxywasm.SetTickPeriod(50*time.Millisecond) == nil
}

func (r *root) Tick() {
	_, err := proxywasm.HTTPCall("feed", [][2]string{{":method", "GET"}, {":path", "/feed"}, {":authority", "feed"}}, nil, time.Second)
	if err != nil {
		proxywasm.Log(proxywasm.LogError, "probe: http call: "+err.Error())
	}
}

func (r *root) HTTPCallResponse(_ uint32, headers, bodySize int) {
	if headers == 0 {
		return
	}
	status, _ := proxywasm.CallResponseHeader(":status")
	body, _ := proxywasm.CallResponseBody(bodySize)
	r.calls++
	r.feed = status + " " + string(body)
}

func (r *root) NewStream(uint32) proxywasm.Stream { return &stream{root: r} }

type stream struct{ root *root }

func (s *stream) RequestHeaders(n int, _ bool) proxywasm.Action {
	if v, _ := proxywasm.RequestHeader("x-probe"); v == "deny" {
		proxywasm.SendLocalResponse(418, "probe_denied", []byte("denied by probe\n"), [][2]string{{"x-probe-reply", "yes"}})
		return proxywasm.Pause
	}
	all, err := proxywasm.RequestHeaders()
	if err != nil || len(all) != n {
		proxywasm.SendLocalResponse(500, "probe_pairs", []byte("header pairs: "+strconv.Itoa(len(all))+" of "+strconv.Itoa(n)), nil)
		return proxywasm.Pause
	}
	route, _ := proxywasm.Property("xds", "route_name")
	meta, err := proxywasm.Property("xds", "route_metadata", "filter_metadata", "probe", "policy")
	if err != nil {
		meta = []byte(err.Error())
	}
	proxywasm.SetRequestHeader("x-probe-route", string(route))
	proxywasm.SetRequestHeader("x-probe-meta", string(meta))
	proxywasm.SetRequestHeader("x-probe-config", s.root.config)
	proxywasm.SetRequestHeader("x-probe-feed", s.root.feed)
	proxywasm.SetRequestHeader("x-probe-headers", strconv.Itoa(n))
	proxywasm.RemoveRequestHeader("x-remove-me")
	proxywasm.SetProperty("probe_seen", []byte("yes"))
	return proxywasm.Continue
}

func (s *stream) Done() {}

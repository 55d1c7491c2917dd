// Package ratelimit is specgate's rate-limit service: Envoy's RateLimitService over gRPC,
// limits from the control plane (xDS) or a file, counters in memory or Redis (docs/architecture.md).
package ratelimit

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"log/slog"
	"math"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	rlsconf "github.com/envoyproxy/go-control-plane/ratelimit/config/ratelimit/v3"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/specgate/specgate/internal/tracing"
	"github.com/specgate/specgate/policy"
	"github.com/specgate/specgate/ratelimit/limiter"
	"github.com/specgate/specgate/ratelimit/rules"
)

// Service answers ShouldRateLimit from the live config. The config is an immutable table
// swapped atomically, so a request sees one whole config, old or new.
type Service struct {
	lim      limiter.Limiter
	clock    limiter.TimeSource
	failOpen bool
	// maxValues and ipv6Prefix: gateway.yaml rateLimit.maxHeaderValues and ipv6Prefix.
	maxValues  int
	ipv6Prefix int
	m          *metrics
	log        *slog.Logger
	live       atomic.Pointer[live]
	// storeDown is set while the store fails, so that only the changes are logged.
	storeDown atomic.Bool
	// onReady runs once, after the first config is accepted.
	onReady func()
	ready   atomic.Bool
	tracer  trace.Tracer // the store calls' spans (gateway.yaml tracing)
}

type live struct {
	version  string
	table    *rules.Table
	counters []ruleCounters // by rules.Rule.ID
	bounds   []*valueBound  // by rules.Rule.ID; nil but for header keys
	overflow []prometheus.Counter
}

var _ rlsv3.RateLimitServiceServer = (*Service)(nil)

// New builds the service and its store from o.Config.RateLimit; it has no config (and is not
// ready) until SetConfig. Close it when done.
func New(o Options) (*Service, error) {
	clock := o.Clock
	if clock == nil {
		clock = limiter.SystemTime{}
	}
	var lim limiter.Limiter
	switch st := o.Config.RateLimit.Store; st {
	case "", "memory":
		lim = limiter.NewMemory(clock)
	default:
		r, err := limiter.NewRedis(st, limiter.RedisOptions{Clock: clock})
		if err != nil {
			return nil, err
		}
		lim = r
	}
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Service{lim: lim, clock: clock, failOpen: o.Config.RateLimit.FailsOpen(), m: newMetrics(), log: log,
		maxValues: o.Config.RateLimit.MaxHeaderValues, ipv6Prefix: o.Config.RateLimit.IPv6Prefix, tracer: tracing.Off}, nil
}

// Registry holds the service's metrics.
func (s *Service) Registry() *prometheus.Registry { return s.m.reg }

// Ready reports whether a config has arrived.
func (s *Service) Ready() bool { return s.ready.Load() }

// Close releases the store.
func (s *Service) Close() error { return s.lim.Close() }

// SetConfig validates cfgs and makes them live; on error the live config stays.
func (s *Service) SetConfig(cfgs []*rlsconf.RateLimitConfig) error {
	t, err := rules.Build(cfgs)
	if err != nil {
		s.m.updates.WithLabelValues("rejected").Inc()
		return err
	}
	l := &live{version: version(cfgs), table: t, counters: make([]ruleCounters, len(t.Rules)),
		bounds: make([]*valueBound, len(t.Rules)), overflow: make([]prometheus.Counter, len(t.Rules))}
	for _, r := range t.Rules {
		l.counters[r.ID] = s.m.forRule(r.Route, r.Kind)
		if strings.HasPrefix(r.Kind, "header") {
			l.bounds[r.ID] = &valueBound{max: s.maxValues}
			l.overflow[r.ID] = s.m.overflow.WithLabelValues(r.Route)
		}
	}
	s.live.Store(l)
	s.m.updates.WithLabelValues("accepted").Inc()
	s.m.rules.Set(float64(len(t.Rules)))
	s.log.Info("rate-limit config applied", "version", l.version, "rules", len(t.Rules))
	if !s.ready.Swap(true) && s.onReady != nil {
		s.onReady()
	}
	return nil
}

// version is a content hash of the configs, for logs.
func version(cfgs []*rlsconf.RateLimitConfig) string {
	h := sha256.New()
	for _, c := range cfgs {
		b, _ := proto.MarshalOptions{Deterministic: true}.Marshal(c)
		h.Write(b)
	}
	return hex.EncodeToString(h.Sum(nil)[:6])
}

var units = map[rlsconf.RateLimitUnit]rlsv3.RateLimitResponse_RateLimit_Unit{
	rlsconf.RateLimitUnit_SECOND: rlsv3.RateLimitResponse_RateLimit_SECOND,
	rlsconf.RateLimitUnit_MINUTE: rlsv3.RateLimitResponse_RateLimit_MINUTE,
	rlsconf.RateLimitUnit_HOUR:   rlsv3.RateLimitResponse_RateLimit_HOUR,
	rlsconf.RateLimitUnit_DAY:    rlsv3.RateLimitResponse_RateLimit_DAY,
}

// failClosedRetry is what a refusal says when the store is down and failOpen is false.
const failClosedRetry = time.Second

// ShouldRateLimit answers one status per descriptor. A descriptor that matches no rule is
// allowed and counted. If the store fails, failOpen allows every matched descriptor;
// otherwise they are refused with OVER_LIMIT (Envoy answers 429), not with a gRPC error,
// because Envoy lets requests through on errors unless its failure_mode_deny is set.
func (s *Service) ShouldRateLimit(ctx context.Context, req *rlsv3.RateLimitRequest) (*rlsv3.RateLimitResponse, error) {
	descs := req.GetDescriptors()
	resp := &rlsv3.RateLimitResponse{
		OverallCode: rlsv3.RateLimitResponse_OK,
		Statuses:    make([]*rlsv3.RateLimitResponse_DescriptorStatus, len(descs)),
	}
	l := s.live.Load()
	reason := ""
	switch {
	case l == nil:
		reason = reasonNoConfig
	case req.GetDomain() != policy.Domain:
		reason = reasonDomain
	}
	addend := max(1, req.GetHitsAddend())
	matched := make([]*rules.Rule, 0, len(descs))
	at := make([]int, 0, len(descs)) // index in descs of each matched rule
	hits := make([]limiter.Hit, 0, len(descs))
	for i, d := range descs {
		resp.Statuses[i] = &rlsv3.RateLimitResponse_DescriptorStatus{Code: rlsv3.RateLimitResponse_OK}
		if reason != "" {
			s.m.unknown.WithLabelValues(reason).Inc()
			continue
		}
		r, value, err := l.table.Lookup(d.GetEntries())
		if err != nil {
			if errors.Is(err, rules.ErrInvalid) {
				s.m.unknown.WithLabelValues(reasonInvalid).Inc()
			} else {
				s.m.unknown.WithLabelValues(reasonUnknown).Inc()
			}
			continue
		}
		n := addend
		if a := d.GetHitsAddend(); a != nil {
			n = uint32(min(max(1, a.GetValue()), math.MaxUint32))
		}
		if r.PerValue {
			value = ipBucket(r.Kind, value, s.ipv6Prefix)
			if b := l.bounds[r.ID]; b != nil {
				var over bool
				if value, over = b.bucket(value, s.clock.Now(), r.Window); over {
					l.overflow[r.ID].Inc()
				}
			}
		}
		matched = append(matched, r)
		at = append(at, i)
		hits = append(hits, limiter.Hit{Key: r.Key(value), Limit: r.Limit, Window: r.Window, Hits: n})
	}
	if len(hits) == 0 {
		return resp, nil
	}
	res := make([]limiter.Result, len(hits))
	start := time.Now()
	sctx, span := tracing.Child(ctx, s.tracer, "ratelimit.store")
	if span.IsRecording() {
		span.SetAttributes(attribute.Int("specgate.ratelimit.counters", len(hits)))
	}
	err := s.lim.DoLimit(sctx, hits, res)
	s.m.storeDuration.Observe(time.Since(start).Seconds())
	if err != nil {
		span.SetStatus(codes.Error, err.Error())
		span.End()
		s.storeFailed(err, l, matched, at, resp)
		decision := decisionFailClosed
		if s.failOpen {
			decision = decisionFailOpen
		}
		traceDecision(ctx, matched, decision)
		return resp, nil
	}
	span.End()
	if s.storeDown.Swap(false) {
		s.log.Info("rate-limit store is back")
	}
	var retry time.Duration
	for j, r := range matched {
		st := resp.Statuses[at[j]]
		st.CurrentLimit = &rlsv3.RateLimitResponse_RateLimit{RequestsPerUnit: r.Limit, Unit: units[r.Unit]}
		st.LimitRemaining = res[j].Remaining
		st.DurationUntilReset = durationpb.New(res[j].ResetIn)
		if res[j].Local {
			s.m.localHits.Inc()
		}
		if res[j].Over {
			st.Code = rlsv3.RateLimitResponse_OVER_LIMIT
			resp.OverallCode = rlsv3.RateLimitResponse_OVER_LIMIT
			retry = max(retry, res[j].ResetIn)
			l.counters[r.ID][cOver].Inc()
		} else {
			l.counters[r.ID][cOK].Inc()
		}
	}
	if retry > 0 {
		addRetryAfter(resp, retry)
	}
	decision := decisionOK
	if resp.OverallCode == rlsv3.RateLimitResponse_OVER_LIMIT {
		decision = decisionOverLimit
	}
	traceDecision(ctx, matched, decision)
	return resp, nil
}

// traceDecision puts the route and the answer on the call's server span, when it is traced.
func traceDecision(ctx context.Context, matched []*rules.Rule, decision string) {
	span := trace.SpanFromContext(ctx)
	if !span.IsRecording() || len(matched) == 0 {
		return
	}
	span.SetAttributes(attribute.String("specgate.route", matched[0].Route), attribute.String("specgate.ratelimit.decision", decision))
}

func (s *Service) storeFailed(err error, l *live, matched []*rules.Rule, at []int, resp *rlsv3.RateLimitResponse) {
	s.m.storeErrors.Inc()
	if !s.storeDown.Swap(true) {
		s.log.Error("rate-limit store failed", "err", err, "fail_open", s.failOpen)
	}
	for j, r := range matched {
		if s.failOpen {
			s.m.failOpen.Inc()
			l.counters[r.ID][cFailOpen].Inc()
			continue
		}
		l.counters[r.ID][cFailClosed].Inc()
		st := resp.Statuses[at[j]]
		st.Code = rlsv3.RateLimitResponse_OVER_LIMIT
		st.CurrentLimit = &rlsv3.RateLimitResponse_RateLimit{RequestsPerUnit: r.Limit, Unit: units[r.Unit]}
		st.DurationUntilReset = durationpb.New(failClosedRetry)
		resp.OverallCode = rlsv3.RateLimitResponse_OVER_LIMIT
	}
	if resp.OverallCode == rlsv3.RateLimitResponse_OVER_LIMIT {
		addRetryAfter(resp, failClosedRetry)
	}
}

// addRetryAfter sets Retry-After (whole seconds, at least 1) on the 429. Envoy 1.40 can
// derive it itself (enable_retry_after_header) and keeps one that the service sent; sending
// it here makes it independent of that filter option.
func addRetryAfter(resp *rlsv3.RateLimitResponse, d time.Duration) {
	secs := max(1, int64((d+time.Second-1)/time.Second))
	resp.ResponseHeadersToAdd = append(resp.ResponseHeadersToAdd,
		&corev3.HeaderValue{Key: "retry-after", Value: strconv.FormatInt(secs, 10)})
}

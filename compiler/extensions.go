package compiler

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"sort"
	"strings"

	"github.com/specgate/specgate/config"
)

// serviceExt holds the service-level x-specgate keys (docs/vocabulary.md) but the operation
// keys, which overrideKeys decodes.
type serviceExt struct {
	Service       string   `json:"service"`
	Backend       string   `json:"backend"`
	BasePath      string   `json:"basePath"`
	StripBasePath bool     `json:"stripBasePath"`
	CORS          *corsExt `json:"cors"`
	// The backend's protection: how much of it one Envoy may use, and when Envoy stops
	// sending to a failing host.
	CircuitBreaker   *circuitBreakerExt `json:"circuitBreaker"`
	OutlierDetection *outlierExt        `json:"outlierDetection"`
	// BackendTLS names a gateway.yaml TLS profile for an https backend, and the name its
	// certificate must carry (default: the backend's host).
	BackendTLS *backendTLSExt `json:"backendTLS"`
}

type backendTLSExt struct {
	Profile string `json:"profile"`
	SAN     string `json:"san"`
}

type circuitBreakerExt struct {
	MaxConnections     int     `json:"maxConnections"`
	MaxPendingRequests int     `json:"maxPendingRequests"`
	MaxRequests        int     `json:"maxRequests"`
	RetryBudgetPercent float64 `json:"retryBudgetPercent"`
}

type outlierExt struct {
	Consecutive5xx     int    `json:"consecutive5xx"`
	Interval           string `json:"interval"`
	BaseEjectionTime   string `json:"baseEjectionTime"`
	MaxEjectionPercent int    `json:"maxEjectionPercent"`
}

// serviceKeys are serviceExt's keys and the operation keys: what a service's x-specgate may hold.
var serviceKeys = func() []string {
	fields := map[string]reflect.Type{}
	collectFields(reflect.TypeOf(serviceExt{}), fields)
	return slices.Concat(slices.Sorted(maps.Keys(fields)), overrideKeyNames())
}()

type rateLimitExt struct {
	Requests int       `json:"requests"`
	Per      string    `json:"per"`
	Key      string    `json:"key"`
	Plans    *plansExt `json:"plans"`
}

// plansExt gives a rate limit's requests per quota plan: limits by plan name, default for
// the others.
type plansExt struct {
	Limits  map[string]int `json:"limits"`
	Default int            `json:"default"`
}

type corsExt struct {
	AllowOrigins     []string `json:"allowOrigins"`
	AllowHeaders     []string `json:"allowHeaders"`
	ExposeHeaders    []string `json:"exposeHeaders"`
	AllowCredentials bool     `json:"allowCredentials"`
	MaxAge           string   `json:"maxAge"`
}

// decodeExt decodes an x-specgate value strictly: unknown keys are errors, not ignored, and
// keys must match in case (encoding/json alone would take "ratelimits" for "rateLimits").
func decodeExt(v any, into any) error {
	if err := checkKeys(v, reflect.TypeOf(into)); err != nil {
		return fmt.Errorf("x-specgate: %w", err)
	}
	raw, err := json.Marshal(v)
	if err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(into); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			return fmt.Errorf("x-specgate: %s: a %s, where %s is wanted", te.Field, te.Value, kindName(te.Type))
		}
		return fmt.Errorf("x-specgate: %s", strings.TrimPrefix(err.Error(), "json: "))
	}
	return nil
}

// kindName names a Go type as YAML would: a string, a number, a list, an object.
func kindName(t reflect.Type) string {
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "a boolean"
	case reflect.Slice, reflect.Array:
		return "a list"
	case reflect.Struct, reflect.Map, reflect.Pointer:
		return "an object"
	default:
		return "a number"
	}
}

// checkKeys walks v (decoded YAML/JSON) beside the Go type it will be decoded into and
// reports the first key that is not one of the type's json names, exactly.
func checkKeys(v any, t reflect.Type) error {
	for t.Kind() == reflect.Pointer || t.Kind() == reflect.Slice {
		if t.Kind() == reflect.Slice {
			list, ok := v.([]any)
			if !ok {
				return nil // the decoder reports the type mismatch
			}
			for _, item := range list {
				if err := checkKeys(item, t.Elem()); err != nil {
					return err
				}
			}
			return nil
		}
		t = t.Elem()
	}
	obj, ok := v.(map[string]any)
	if !ok || t.Kind() != reflect.Struct {
		return nil
	}
	fields := map[string]reflect.Type{}
	collectFields(t, fields)
	keys := make([]string, 0, len(obj))
	for k := range obj {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		ft, ok := fields[k]
		if !ok {
			return fmt.Errorf("unknown key %q%s", k, config.DidYouMean(k, slices.Collect(maps.Keys(fields))))
		}
		if err := checkKeys(obj[k], ft); err != nil {
			return fmt.Errorf("%s: %w", k, err)
		}
	}
	return nil
}

func collectFields(t reflect.Type, into map[string]reflect.Type) {
	for i := range t.NumField() {
		f := t.Field(i)
		if f.Anonymous {
			collectFields(f.Type, into)
			continue
		}
		if name, _, _ := strings.Cut(f.Tag.Get("json"), ","); name != "" {
			into[name] = f.Type
		}
	}
}

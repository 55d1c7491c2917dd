package compiler

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"sort"
	"strings"

	"github.com/specgate/specgate/config"
)

// serviceExt is the service-level x-specgate object (docs/vocabulary.md).
type serviceExt struct {
	Service       string `json:"service"`
	Backend       string `json:"backend"`
	BasePath      string `json:"basePath"`
	StripBasePath bool   `json:"stripBasePath"`
	operationExt
	CORS *corsExt `json:"cors"`
}

// operationExt holds the keys an operation may override. Pointers tell "absent" from "empty"
// so that an operation can clear a service's list with [].
type operationExt struct {
	Exposure       *string         `json:"exposure"`
	Timeout        *string         `json:"timeout"`
	AllowedHeaders *[]string       `json:"allowedHeaders"`
	RateLimits     *[]rateLimitExt `json:"rateLimits"`
}

type rateLimitExt struct {
	Requests int    `json:"requests"`
	Per      string `json:"per"`
	Key      string `json:"key"`
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
		return fmt.Errorf("x-specgate: %s", strings.TrimPrefix(err.Error(), "json: "))
	}
	return nil
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

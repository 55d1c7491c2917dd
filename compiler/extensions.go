package compiler

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
)

// serviceExt is the service-level x-specgate object (DESIGN.md §2).
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

// decodeExt decodes an x-specgate value strictly: unknown keys are errors, not ignored.
func decodeExt(v any, into any) error {
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

package compiler

import (
	"encoding/json"
	"fmt"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// Every override key goes through the whole path its table entry promises: set at the service
// level it reaches every operation; an operation's own value replaces it; the security diff
// reports the change; docs/vocabulary.md lists it at both levels. A new key without a sample
// here fails, so each gets this check.
func TestOverrideKeys(t *testing.T) {
	// Two values of each key, as written in YAML (flow style), the second one wider or looser.
	samples := map[string][2]string{
		"exposure":            {"internal", "public"},
		"timeout":             {"5s", "30s"},
		"allowedHeaders":      {"[X-Tenant]", "[X-Tenant, Authorization]"},
		"rateLimits":          {"[{requests: 10, per: minute, key: client}]", "[]"},
		"maxRequestBodyBytes": {"1048576", "10485760"},
		"validate":            {"request", "none"},
		"ipAllow":             {"[10.0.0.0/8]", "[10.0.0.0/8, 192.0.2.0/24]"},
		"websocket":           {"false", "{maxDuration: 10m}"},
		"retries":             {"false", "{attempts: 2}"},
	}
	doc, err := os.ReadFile("../docs/vocabulary.md")
	if err != nil {
		t.Fatal(err)
	}
	_, opLevel, _ := strings.Cut(string(doc), "\n## Operation level\n")
	sentence, _, _ := strings.Cut(opLevel, "override the service's value")
	documented := regexp.MustCompile("`([A-Za-z]+)`").FindAllStringSubmatch(sentence, -1)
	var names []string
	for _, m := range documented {
		names = append(names, m[1])
	}
	if !slices.Equal(names, overrideKeyNames()) {
		t.Errorf("docs/vocabulary.md, Operation level, names %v as the keys an operation overrides; the table has %v", names, overrideKeyNames())
	}
	_, serviceExample, _ := strings.Cut(string(doc), "```yaml\nx-specgate:\n")
	serviceExample, _, _ = strings.Cut(serviceExample, "```")

	for _, k := range overrideKeys {
		t.Run(k.name, func(t *testing.T) {
			s, ok := samples[k.name]
			if !ok {
				t.Fatalf("no sample values for %s: add two to this test", k.name)
			}
			if !strings.Contains(serviceExample, "\n  "+k.name+":") {
				t.Errorf("docs/vocabulary.md's service-level example does not show %s", k.name)
			}
			spec := func(service, op string) []byte {
				return fmt.Appendf(nil, `openapi: 3.1.0
info: {title: A, version: 1.0.0}
x-specgate: {service: a, backend: "http://a.shop.svc.cluster.local:8080", %s: %s}
security: []
paths:
  /own:
    get: {operationId: own, x-specgate: {%s: %s}, responses: {"200": {description: ok}}}
  /inherits:
    get: {operationId: inherits, responses: {"200": {description: ok}}}
`, k.name, service, k.name, op)
			}
			before, diags := CompileFiles("", map[string][]byte{"a.yaml": spec(s[0], s[0])}, Options{})
			if err := diags.Err(); err != nil {
				t.Fatal(err)
			}
			after, diags := CompileFiles("", map[string][]byte{"a.yaml": spec(s[0], s[1])}, Options{})
			if err := diags.Err(); err != nil {
				t.Fatal(err)
			}
			ops := func(g any) (own, inherits string) {
				b, _ := json.Marshal(g)
				var m struct {
					Services []struct{ Operations []json.RawMessage }
				}
				_ = json.Unmarshal(b, &m)
				for _, o := range m.Services[0].Operations {
					if strings.Contains(string(o), `"a.own"`) {
						own = string(o)
					} else {
						inherits = string(o)
					}
				}
				return strings.ReplaceAll(own, "own", "X"), strings.ReplaceAll(inherits, "inherits", "X")
			}
			ownBefore, inheritsBefore := ops(before)
			ownAfter, inheritsAfter := ops(after)
			if ownBefore != inheritsBefore {
				t.Errorf("the service's value and the same value on the operation differ:\n%s\n%s", ownBefore, inheritsBefore)
			}
			if ownAfter == inheritsAfter || inheritsAfter != inheritsBefore {
				t.Errorf("the operation's own value does not replace the service's:\n%s\n%s", ownAfter, inheritsAfter)
			}
			changes := Diff(before, after)
			if len(changes) != 1 || changes[0].Operation != "GET /own" {
				t.Errorf("the security diff of %s %s → %s: %v, want one change on GET /own", k.name, s[0], s[1], changes)
			}
		})
	}
}

package translate

import (
	"encoding/json"
	"fmt"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"sigs.k8s.io/yaml"
)

var jsonOpts = protojson.MarshalOptions{UseProtoNames: true}

// YAML renders one message as YAML with Envoy's field names. protojson's spacing is unstable on
// purpose; going through the YAML encoder makes the bytes deterministic.
func YAML(m proto.Message) ([]byte, error) {
	j, err := jsonOpts.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("marshal %s: %w", m.ProtoReflect().Descriptor().FullName(), err)
	}
	return yaml.JSONToYAML(j)
}

// YAML renders every resource as one document with the keys listeners, routes, clusters and
// rate_limit_config.
func (r *Resources) YAML() ([]byte, error) {
	doc := map[string]any{}
	add := func(key string, ms ...proto.Message) error {
		list := make([]json.RawMessage, 0, len(ms))
		for _, m := range ms {
			j, err := jsonOpts.Marshal(m)
			if err != nil {
				return fmt.Errorf("marshal %s: %w", m.ProtoReflect().Descriptor().FullName(), err)
			}
			list = append(list, j)
		}
		doc[key] = list
		return nil
	}
	var errs []error
	errs = append(errs, add("listeners", toMessages(r.Listeners)...))
	errs = append(errs, add("routes", toMessages(r.Routes)...))
	errs = append(errs, add("clusters", toMessages(r.Clusters)...))
	for _, err := range errs {
		if err != nil {
			return nil, err
		}
	}
	rl, err := jsonOpts.Marshal(r.RateLimit)
	if err != nil {
		return nil, err
	}
	doc["rate_limit_config"] = json.RawMessage(rl)
	j, err := json.Marshal(doc)
	if err != nil {
		return nil, err
	}
	return yaml.JSONToYAML(j)
}

func toMessages[M proto.Message](in []M) []proto.Message {
	out := make([]proto.Message, len(in))
	for i, m := range in {
		out[i] = m
	}
	return out
}

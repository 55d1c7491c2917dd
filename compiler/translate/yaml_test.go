package translate_test

import (
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"
	"sigs.k8s.io/yaml"

	"github.com/specgate/specgate/compiler/translate"
)

// What YAML writes reads back as the same message, for every resource of the example specs
// and for strings YAML would take for something else unquoted.
func TestYAMLReadsBack(t *testing.T) {
	tricky := []string{"", "true", "False", "yes", "off", "null", "~", "123", "0x1F", "1_000", "12:30", "1e3",
		".inf", "-x", "- x", "a: b", "a #b", "#c", "@type", "'q'", `"dq"`, "[x]", "{x}", "*a", "&a", "!t", "%p",
		"|", ">", "line\nbreak", "tab\there", "ünïcode", "  lead", "trail  ", "/orders/{id}", "x\\y"}
	var values []*structpb.Value
	fields := map[string]*structpb.Value{}
	for _, s := range tricky {
		values = append(values, structpb.NewStringValue(s))
		fields[s] = structpb.NewStringValue(s)
	}
	route := &routev3.Route{
		Name:     "tricky",
		Metadata: &corev3.Metadata{FilterMetadata: map[string]*structpb.Struct{"k": {Fields: map[string]*structpb.Value{"list": structpb.NewListValue(&structpb.ListValue{Values: values}), "map": structpb.NewStructValue(&structpb.Struct{Fields: fields}), "nested": structpb.NewListValue(&structpb.ListValue{Values: []*structpb.Value{structpb.NewListValue(&structpb.ListValue{Values: values[:3]}), structpb.NewListValue(&structpb.ListValue{})}}), "empty": structpb.NewStructValue(&structpb.Struct{}), "n": structpb.NewNumberValue(1.5), "b": structpb.NewBoolValue(true), "nil": structpb.NewNullValue()}}}},
	}
	msgs := []proto.Message{route}
	res, err := translate.Translate(compile(t, "../../examples/specs"), translate.Options{})
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range res.Listeners {
		msgs = append(msgs, l)
	}
	for _, r := range res.Routes {
		msgs = append(msgs, r)
	}
	for _, c := range res.Clusters {
		msgs = append(msgs, c)
	}
	for _, m := range msgs {
		y, err := translate.YAML(m)
		if err != nil {
			t.Fatal(err)
		}
		j, err := yaml.YAMLToJSON(y)
		if err != nil {
			t.Fatalf("%s: not YAML: %v\n%s", m.ProtoReflect().Descriptor().Name(), err, y)
		}
		back := m.ProtoReflect().New().Interface()
		if err := protojson.Unmarshal(j, back); err != nil {
			t.Fatalf("%s: %v\n%s", m.ProtoReflect().Descriptor().Name(), err, y)
		}
		if !proto.Equal(m, back) {
			t.Errorf("%s does not read back the same:\n%s", m.ProtoReflect().Descriptor().Name(), y)
		}
	}
}

package ir

import (
	"slices"
	"testing"
)

func TestComparePathsOrdersConcreteFirst(t *testing.T) {
	in := []string{"/orders/{id}", "/orders/{id}/items/{item}", "/orders/mine", "/orders", "/orders/{id}/items/latest", "/{any}/x"}
	want := []string{"/orders/mine", "/orders/{id}/items/latest", "/orders/{id}/items/{item}", "/orders/{id}", "/orders", "/{any}/x"}
	var ts []Template
	for _, p := range in {
		tm, err := ParseTemplate(p)
		if err != nil {
			t.Fatal(err)
		}
		ts = append(ts, tm)
	}
	slices.SortFunc(ts, ComparePaths)
	var got []string
	for _, tm := range ts {
		got = append(got, tm.Raw)
	}
	if !slices.Equal(got, want) {
		t.Fatalf("order %v, want %v", got, want)
	}
}

func TestParseTemplate(t *testing.T) {
	for _, p := range []string{"/a/{id", "/a/}", "a", "/a//b", "/a/{x}{y}", "/a/{}", "/a/{x}/{x}", "/a?b"} {
		if _, err := ParseTemplate(p); err == nil {
			t.Errorf("ParseTemplate(%q) accepted", p)
		}
	}
	tm, err := ParseTemplate("/files/{name}.{ext}/x/")
	if err != nil {
		t.Fatal(err)
	}
	if got := tm.Shape(); got != "/files/{}.{}/x/" {
		t.Errorf("shape %q", got)
	}
}

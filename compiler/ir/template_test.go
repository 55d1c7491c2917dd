package ir

import (
	"slices"
	"testing"
)

func TestComparePathsOrdersConcreteFirst(t *testing.T) {
	for _, want := range [][]string{
		{"/orders/mine", "/orders/{id}/items/latest", "/orders/{id}/items/{item}", "/orders/{id}", "/orders", "/{any}/x"},
		// text with variables is more specific than a lone variable, less than plain text
		{"/files/report.pdf", "/files/{name}.{ext}", "/files/{id}"},
		// of two, the one with more text: {x}.json before {a}.{b}, whatever the names
		{"/files/{x}.json", "/files/{a}.{b}"},
		{"/files/{z}.json", "/files/{a}.{b}"},
	} {
		var ts []Template
		for i := len(want) - 1; i >= 0; i-- { // sorted from the reverse order
			tm, err := ParseTemplate(want[i])
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
			t.Errorf("order %v, want %v", got, want)
		}
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

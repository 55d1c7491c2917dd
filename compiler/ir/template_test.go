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

func TestOverlap(t *testing.T) {
	for _, c := range []struct {
		a, b, witness string // "" when not ambiguous
	}{
		{"/a/{x}/c", "/a/b/{y}", "/a/b/c"},
		{"/a/{x}/c/d", "/a/b/{y}/e", ""}, // the last segments never meet
		{"/a/{x}", "/a/b", ""},           // /a/b is inside /a/{x}
		{"/a/{x}", "/a/{y}", ""},         // the same shape
		{"/a/b", "/a/c", ""},
		{"/a/{x}", "/a/{x}/c", ""},
		{"/f/{n}.json", "/f/{id}", ""}, // text with a variable is inside a lone variable
		{"/f/{n}.json/{x}", "/f/{id}/raw", "/f/x.json/raw"},
		{"/f/{n}.json", "/f/report.pdf", ""},     // the literal does not match {n}.json
		{"/f/{n}.json/{x}", "/f/a.json/raw", ""}, // a.json/raw is inside
	} {
		a, _ := ParseTemplate(c.a)
		b, _ := ParseTemplate(c.b)
		w, amb := Overlap(a, b)
		w2, amb2 := Overlap(b, a)
		if amb != (c.witness != "") || w != c.witness || amb2 != amb {
			t.Errorf("Overlap(%s, %s) = %q %t (reversed %q %t), want %q", c.a, c.b, w, amb, w2, amb2, c.witness)
		}
	}
}

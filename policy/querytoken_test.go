package policy

import "testing"

// HasQueryToken reads the query as backend frameworks do: the name percent- or plus-decoded,
// in any case, separated by & or ;, and never the path or the fragment.
func TestHasQueryToken(t *testing.T) {
	for path, want := range map[string]bool{
		"/a?access_token=x":          true,
		"/a?page=1&ACCESS_TOKEN=x":   true,
		"/a?access%5Ftoken=x":        true,
		"/a?x=1;access_token=x":      true,
		"/a?access_token":            true,
		"/a?access_token+=x":         true,
		"/a":                         false,
		"/access_token/a?page=1":     false,
		"/a?my_access_token=x":       false,
		"/a?page=access_token":       false,
		"/a?page=1#access_token=x":   false,
		"/a?access%ZZtoken=x&page=1": false,
	} {
		if got := HasQueryToken(path); got != want {
			t.Errorf("HasQueryToken(%q) = %v, want %v", path, got, want)
		}
	}
}

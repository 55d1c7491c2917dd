package testutil

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

// Body is what a GET of url answered, whatever the status ("" when the GET failed): for
// polling a server that may not be up yet.
func Body(url string) string {
	resp, err := http.Get(url)
	if err != nil {
		return ""
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// Scrape is the body of a GET of url (a metrics page); a failed GET fails the test.
func Scrape(t TB, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("scrape %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// Metrics is Scrape's Prometheus text format as series (name{labels}) → value.
func Metrics(t TB, url string) map[string]float64 {
	t.Helper()
	out := map[string]float64{}
	for _, line := range strings.Split(Scrape(t, url), "\n") {
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		var v float64
		if _, err := fmt.Sscan(line[i+1:], &v); err == nil {
			out[line[:i]] = v
		}
	}
	return out
}

// WaitOK polls url until it answers 200, and fails the test when within passes first.
func WaitOK(t testing.TB, url string, within time.Duration) {
	t.Helper()
	Eventually(t, within, url+" answering 200", func() bool {
		resp, err := http.Get(url)
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
}

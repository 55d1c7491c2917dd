// Command echo is a tiny backend for the test cluster (cluster/, image localhost/echo:1).
//
//	echo                serve HTTP on :$PORT (default 8080): GET /healthz -> "ok", any other
//	                    request -> JSON with the pod's name and the request's method, path and headers
//	echo lookup NAME... resolve each NAME with Go's own resolver (it reads /etc/resolv.conf, as
//	                    pods get it from the kubelet) and print NAME ADDRESS...; exit 1 on a failure
//	echo get URL        GET URL (3 s timeout), print the body; exit 1 on a failure or non-2xx
package main

import (
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"strings"
	"time"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "lookup" {
		os.Exit(lookup(os.Args[2:]))
	}
	if len(os.Args) == 3 && os.Args[1] == "get" {
		os.Exit(get(os.Args[2]))
	}
	host, _ := os.Hostname()
	addr := ":8080"
	if p := os.Getenv("PORT"); p != "" {
		addr = ":" + p
	}
	http.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	http.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{
			"host": host, "method": r.Method, "path": r.URL.RequestURI(), "headers": r.Header,
		})
	})
	log.Printf("echo listening on %s", addr)
	log.Fatal(http.ListenAndServe(addr, nil))
}

func lookup(names []string) int {
	rc := 0
	for _, n := range names {
		addrs, err := net.LookupHost(n)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			rc = 1
			continue
		}
		fmt.Println(n, strings.Join(addrs, " "))
	}
	return rc
}

func get(url string) int {
	resp, err := (&http.Client{Timeout: 3 * time.Second}).Get(url)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer resp.Body.Close()
	_, _ = io.Copy(os.Stdout, resp.Body)
	if resp.StatusCode/100 != 2 {
		fmt.Fprintln(os.Stderr, resp.Status)
		return 1
	}
	return 0
}

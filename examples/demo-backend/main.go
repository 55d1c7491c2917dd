// Command demo-backend serves the example services of `make run`: each ADDR=NAME argument
// starts a backend that answers every request with what it received, so a curl through the
// gateway shows which service answered, the path it saw and the identity headers specgate set.
package main

import (
	"encoding/json"
	"fmt"
	"log"
	"net/http"
	"os"
	"strings"
	"time"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: demo-backend ADDR=NAME...")
		os.Exit(2)
	}
	errc := make(chan error)
	for _, arg := range os.Args[1:] {
		addr, name, ok := strings.Cut(arg, "=")
		if !ok {
			log.Fatalf("argument %q: want ADDR=NAME", arg)
		}
		srv := &http.Server{Addr: addr, Handler: echo(name), ReadHeaderTimeout: 5 * time.Second}
		go func() { errc <- srv.ListenAndServe() }()
		log.Printf("%s backend on %s", name, addr)
	}
	log.Fatal(<-errc)
}

func echo(name string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		headers := map[string]string{}
		for k, v := range r.Header {
			headers[k] = strings.Join(v, ", ")
		}
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		_ = enc.Encode(map[string]any{"service": name, "method": r.Method, "path": r.URL.Path, "headers": headers})
	})
}

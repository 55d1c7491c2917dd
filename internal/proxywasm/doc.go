// Package proxywasm is the part of the proxy-wasm ABI (0.2.1) that specgate's Envoy plugin
// uses, written for the standard Go toolchain (GOOS=wasip1, -buildmode=c-shared) with
// go:wasmexport and go:wasmimport: the module proxy serves no SDK for it, only a TinyGo one.
//
// A plugin's main package calls SetRoot once, from init; Envoy then creates one root context
// per plugin configuration and one stream context per HTTP request, on the same worker thread
// as the VM: nothing here is called concurrently. Host calls made outside a callback fail.
//
// Data the host returns is written into memory the module allocates for it
// (proxy_on_memory_allocate); this package copies it out and lets the garbage collector have
// it. Everything but this file builds only for wasip1.
package proxywasm

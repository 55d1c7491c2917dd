//go:build wasip1

// Command wasmnoop is a proxy-wasm HTTP filter that does nothing: every request's headers
// continue at once. It is the floor of an authz decision inside Envoy (the spike gate of the
// Wasm plugin), built with the standard Go toolchain:
//
//	GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -o noop.wasm ./test/bench/gateway/wasmnoop
//
// It exports the proxy-wasm ABI 0.2.1 entry points Envoy calls for an HTTP filter and nothing
// else; no host function is imported.
package main

import "unsafe"

func main() {}

//go:wasmexport proxy_abi_version_0_2_1
func abiVersion() {}

// allocated keeps what the host asked to allocate (it never does for this filter).
var allocated [][]byte

//go:wasmexport proxy_on_memory_allocate
func onMemoryAllocate(size uint32) unsafe.Pointer {
	b := make([]byte, size)
	allocated = append(allocated, b)
	return unsafe.Pointer(unsafe.SliceData(b))
}

//go:wasmexport proxy_on_context_create
func onContextCreate(contextID, parentID uint32) {}

//go:wasmexport proxy_on_vm_start
func onVMStart(rootID, configSize uint32) uint32 { return 1 }

//go:wasmexport proxy_on_configure
func onConfigure(rootID, configSize uint32) uint32 { return 1 }

// onRequestHeaders answers Continue (0).
//
//go:wasmexport proxy_on_request_headers
func onRequestHeaders(contextID, headers, endOfStream uint32) uint32 { return 0 }

//go:wasmexport proxy_on_done
func onDone(contextID uint32) uint32 { return 1 }

//go:wasmexport proxy_on_delete
func onDelete(contextID uint32) {}

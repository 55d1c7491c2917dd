//go:build wasip1

package proxywasm

import "unsafe"

// Action is a stream callback's answer: go on with the next filter, or stop until resumed.
type Action uint32

const (
	Continue Action = 0
	Pause    Action = 1
)

// Root receives the events of one plugin configuration (a root context).
type Root interface {
	// Configure is given the plugin configuration; false makes Envoy refuse it.
	Configure(config []byte) bool
	// Tick runs every SetTickPeriod.
	Tick()
	// HTTPCallResponse delivers the answer to an HTTPCall: its headers and body are readable
	// with CallResponseHeaders and CallResponseBody during the call only. headers == 0 when
	// the call failed (no answer, timeout, reset).
	HTTPCallResponse(token uint32, headers, bodySize int)
	// NewStream starts an HTTP request's context.
	NewStream(id uint32) Stream
}

// Stream receives the events of one HTTP request.
type Stream interface {
	RequestHeaders(headers int, endOfStream bool) Action
	Done()
}

var (
	newRoot func(id uint32) Root
	roots   = map[uint32]Root{}
	streams = map[uint32]Stream{}
)

// SetRoot registers the plugin's constructor of root contexts. Call it from init.
func SetRoot(f func(id uint32) Root) { newRoot = f }

//go:wasmexport proxy_abi_version_0_2_1
func abiVersion() {}

// What the host writes back (a header's value, a property) goes into memory it asks the
// module for, one block per host call that returns data. Most are small: they come from
// arena, which the next host call reuses (take hands out each block only until then); a larger
// one gets its own slice, kept reachable in big until taken (the host holds only an address).
var (
	arena [16 << 10]byte
	big   = map[uintptr][]byte{}
)

//go:wasmexport proxy_on_memory_allocate
func onMemoryAllocate(size uint32) unsafe.Pointer {
	if size <= uint32(len(arena)) {
		return unsafe.Pointer(&arena[0])
	}
	b := make([]byte, size)
	p := unsafe.Pointer(unsafe.SliceData(b))
	big[uintptr(p)] = b
	return p
}

// take returns the block the host filled at addr (size bytes): a view valid until the next
// host call that returns data.
func take(addr, size uint32) []byte {
	switch {
	case addr == 0:
		return nil
	case uintptr(addr) == uintptr(unsafe.Pointer(&arena[0])):
		return arena[:size]
	}
	b, ok := big[uintptr(addr)]
	if !ok {
		return nil
	}
	delete(big, uintptr(addr))
	return b[:size]
}

//go:wasmexport proxy_on_context_create
func onContextCreate(id, parent uint32) {
	if parent == 0 {
		if newRoot != nil {
			roots[id] = newRoot(id)
		}
		return
	}
	if r := roots[parent]; r != nil {
		streams[id] = r.NewStream(id)
	}
}

//go:wasmexport proxy_on_vm_start
func onVMStart(id, size uint32) uint32 { return 1 }

//go:wasmexport proxy_on_configure
func onConfigure(id, size uint32) uint32 {
	r := roots[id]
	if r == nil {
		return 0
	}
	cfg, err := buffer(bufferPluginConfiguration, 0, int(size))
	if err != nil {
		return 0
	}
	if r.Configure(cfg) {
		return 1
	}
	return 0
}

//go:wasmexport proxy_on_tick
func onTick(id uint32) {
	if r := roots[id]; r != nil {
		r.Tick()
	}
}

//go:wasmexport proxy_on_http_call_response
func onHTTPCallResponse(id, token, headers, bodySize, trailers uint32) {
	if r := roots[id]; r != nil {
		r.HTTPCallResponse(token, int(headers), int(bodySize))
	}
}

//go:wasmexport proxy_on_request_headers
func onRequestHeaders(id, headers, endOfStream uint32) uint32 {
	s := streams[id]
	if s == nil {
		return uint32(Continue)
	}
	return uint32(s.RequestHeaders(int(headers), endOfStream != 0))
}

//go:wasmexport proxy_on_done
func onDone(id uint32) uint32 {
	if s := streams[id]; s != nil {
		s.Done()
	}
	return 1
}

//go:wasmexport proxy_on_delete
func onDelete(id uint32) {
	delete(streams, id)
	delete(roots, id)
}

//go:build wasip1

package proxywasm

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"time"
	"unsafe"
)

// Status is a host call's result (proxy-wasm WasmResult).
type Status uint32

const (
	statusOK       Status = 0
	statusNotFound Status = 1
)

func (s Status) Error() string { return fmt.Sprintf("proxy-wasm host call: status %d", uint32(s)) }

// ErrNotFound is a host call's answer for a header, property or buffer that does not exist.
var ErrNotFound error = statusNotFound

func check(s Status) error {
	if s == statusOK {
		return nil
	}
	return s
}

const (
	mapRequestHeaders      = 0
	mapHTTPCallRespHeaders = 6

	bufferHTTPCallResponseBody = 4
	bufferPluginConfiguration  = 7
)

// LogLevel is Envoy's log level of a Log line.
type LogLevel uint32

const (
	LogTrace LogLevel = iota
	LogDebug
	LogInfo
	LogWarn
	LogError
	LogCritical
)

//go:wasmimport env proxy_log
func proxyLog(level uint32, msg unsafe.Pointer, size uint32) Status

//go:wasmimport env proxy_get_current_time_nanoseconds
func proxyGetCurrentTimeNanoseconds(ret *uint64) Status

//go:wasmimport env proxy_set_tick_period_milliseconds
func proxySetTickPeriodMilliseconds(ms uint32) Status

//go:wasmimport env proxy_get_buffer_bytes
func proxyGetBufferBytes(typ, start, max uint32, retData, retSize *uint32) Status

//go:wasmimport env proxy_get_header_map_value
func proxyGetHeaderMapValue(typ uint32, key unsafe.Pointer, keySize uint32, retData, retSize *uint32) Status

//go:wasmimport env proxy_get_header_map_pairs
func proxyGetHeaderMapPairs(typ uint32, retData, retSize *uint32) Status

//go:wasmimport env proxy_replace_header_map_value
func proxyReplaceHeaderMapValue(typ uint32, key unsafe.Pointer, keySize uint32, value unsafe.Pointer, valueSize uint32) Status

//go:wasmimport env proxy_remove_header_map_value
func proxyRemoveHeaderMapValue(typ uint32, key unsafe.Pointer, keySize uint32) Status

//go:wasmimport env proxy_get_property
func proxyGetProperty(path unsafe.Pointer, pathSize uint32, retData, retSize *uint32) Status

//go:wasmimport env proxy_set_property
func proxySetProperty(path unsafe.Pointer, pathSize uint32, value unsafe.Pointer, valueSize uint32) Status

//go:wasmimport env proxy_send_local_response
func proxySendLocalResponse(status uint32, details unsafe.Pointer, detailsSize uint32, body unsafe.Pointer, bodySize uint32,
	headers unsafe.Pointer, headersSize uint32, grpcStatus int32) Status

//go:wasmimport env proxy_http_call
func proxyHTTPCall(upstream unsafe.Pointer, upstreamSize uint32, headers unsafe.Pointer, headersSize uint32,
	body unsafe.Pointer, bodySize uint32, trailers unsafe.Pointer, trailersSize uint32, timeoutMs uint32, token *uint32) Status

// ptr is the address of s's bytes for the host; the caller keeps s alive across the call.
func ptr(s string) unsafe.Pointer { return unsafe.Pointer(unsafe.StringData(s)) }

func bptr(b []byte) unsafe.Pointer { return unsafe.Pointer(unsafe.SliceData(b)) }

// Log writes msg to Envoy's log.
func Log(level LogLevel, msg string) { proxyLog(uint32(level), ptr(msg), uint32(len(msg))) }

// Now is the host's wall clock.
func Now() time.Time {
	var ns uint64
	if proxyGetCurrentTimeNanoseconds(&ns) != statusOK {
		return time.Now()
	}
	return time.Unix(0, int64(ns))
}

// SetTickPeriod asks for Root.Tick every d (0 stops it). Call it from Configure.
func SetTickPeriod(d time.Duration) error {
	return check(proxySetTickPeriodMilliseconds(uint32(d.Milliseconds())))
}

func buffer(typ uint32, start, max int) ([]byte, error) {
	var data, size uint32
	if err := check(proxyGetBufferBytes(typ, uint32(start), uint32(max), &data, &size)); err != nil {
		return nil, err
	}
	return bytes.Clone(take(data, size)), nil
}

// CallResponseBody is the body of the HTTPCall being answered (in Root.HTTPCallResponse).
func CallResponseBody(size int) ([]byte, error) { return buffer(bufferHTTPCallResponseBody, 0, size) }

// CallResponseHeader is a header of the HTTPCall being answered, ":status" included.
func CallResponseHeader(name string) (string, error) { return header(mapHTTPCallRespHeaders, name) }

func header(typ uint32, name string) (string, error) {
	var data, size uint32
	if err := check(proxyGetHeaderMapValue(typ, ptr(name), uint32(len(name)), &data, &size)); err != nil {
		return "", err
	}
	return string(take(data, size)), nil
}

// RequestHeader is the value of a request header (lower-case name), repeated values joined
// with ","; ErrNotFound when absent.
func RequestHeader(name string) (string, error) { return header(mapRequestHeaders, name) }

// RequestHeaders are all request headers, pseudo-headers included, in order. The strings are
// views of the host's answer, valid until the next host call that returns data: clone what
// is kept longer (strings.Clone). Copying each name and value costs more than the rest of a
// request's decision in Wasm.
func RequestHeaders() ([][2]string, error) {
	var data, size uint32
	if err := check(proxyGetHeaderMapPairs(mapRequestHeaders, &data, &size)); err != nil {
		return nil, err
	}
	return decodePairs(take(data, size))
}

// SetRequestHeader replaces every value of a request header with one.
func SetRequestHeader(name, value string) error {
	return check(proxyReplaceHeaderMapValue(mapRequestHeaders, ptr(name), uint32(len(name)), ptr(value), uint32(len(value))))
}

// RemoveRequestHeader removes a request header, every value of it.
func RemoveRequestHeader(name string) error {
	return check(proxyRemoveHeaderMapValue(mapRequestHeaders, ptr(name), uint32(len(name))))
}

// Property reads one of Envoy's attributes, e.g. Property("xds", "route_name").
func Property(path ...string) ([]byte, error) {
	p := strings.Join(path, "\x00")
	var data, size uint32
	if err := check(proxyGetProperty(ptr(p), uint32(len(p)), &data, &size)); err != nil {
		return nil, err
	}
	return bytes.Clone(take(data, size)), nil
}

// SetProperty writes the stream's filter state object "wasm.<name>" (Envoy's CelState).
func SetProperty(name string, value []byte) error {
	return check(proxySetProperty(ptr(name), uint32(len(name)), bptr(value), uint32(len(value))))
}

// SendLocalResponse answers the request from Envoy; the stream callback then returns Pause.
func SendLocalResponse(status int, details string, body []byte, headers [][2]string) error {
	h := encodePairs(headers)
	return check(proxySendLocalResponse(uint32(status), ptr(details), uint32(len(details)), bptr(body), uint32(len(body)),
		bptr(h), uint32(len(h)), -1))
}

// HTTPCall sends a request to an Envoy cluster; the answer comes to Root.HTTPCallResponse
// with the returned token. headers must hold :method, :path and :authority.
func HTTPCall(cluster string, headers [][2]string, body []byte, timeout time.Duration) (uint32, error) {
	h := encodePairs(headers)
	var token uint32
	err := check(proxyHTTPCall(ptr(cluster), uint32(len(cluster)), bptr(h), uint32(len(h)), bptr(body), uint32(len(body)),
		nil, 0, uint32(timeout.Milliseconds()), &token))
	return token, err
}

// encodePairs serializes a header map as the ABI does: the count, each name's and value's
// length, then each name and value NUL-terminated; all numbers little-endian uint32.
func encodePairs(pairs [][2]string) []byte {
	n := 4 + 8*len(pairs)
	for _, p := range pairs {
		n += len(p[0]) + len(p[1]) + 2
	}
	b := make([]byte, 4, n)
	binary.LittleEndian.PutUint32(b, uint32(len(pairs)))
	for _, p := range pairs {
		b = binary.LittleEndian.AppendUint32(b, uint32(len(p[0])))
		b = binary.LittleEndian.AppendUint32(b, uint32(len(p[1])))
	}
	for _, p := range pairs {
		b = append(append(append(append(b, p[0]...), 0), p[1]...), 0)
	}
	return b
}

var errPairs = errors.New("proxy-wasm: malformed header map")

func decodePairs(b []byte) ([][2]string, error) {
	if len(b) < 4 {
		if len(b) == 0 {
			return nil, nil
		}
		return nil, errPairs
	}
	n := int(binary.LittleEndian.Uint32(b))
	if n > (len(b)-4)/8 {
		return nil, errPairs
	}
	sizes, data := b[4:4+8*n], b[4+8*n:]
	out := make([][2]string, n)
	for i := range n {
		for j := range 2 {
			l := int(binary.LittleEndian.Uint32(sizes[8*i+4*j:]))
			if l+1 > len(data) {
				return nil, errPairs
			}
			out[i][j], data = unsafe.String(unsafe.SliceData(data), l), data[l+1:]
		}
	}
	return out, nil
}

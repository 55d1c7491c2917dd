// Package testxds runs the real control plane (package xds) in-process on loopback ports for
// a test: the one way the xds and deploy tests start it.
package testxds

import (
	"context"
	"errors"
	"net"
	"testing"

	"github.com/specgate/specgate/xds"
)

// ControlPlane is a running control plane.
type ControlPlane struct {
	*xds.Server
	// GRPC is the ADS address; API the base URL of the push API, health and metrics.
	GRPC, API string
	stop      context.CancelFunc
	done      chan error
}

// Start serves opts on 127.0.0.1 until Stop or the end of the test. grpcAddr and httpAddr
// are "127.0.0.1:0" for any free port, or the addresses of a stopped control plane to come
// back on them.
func Start(t testing.TB, opts xds.Options, grpcAddr, httpAddr string) *ControlPlane {
	t.Helper()
	srv, err := xds.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	gl, err := net.Listen("tcp", grpcAddr)
	if err != nil {
		t.Fatal(err)
	}
	hl, err := net.Listen("tcp", httpAddr)
	if err != nil {
		gl.Close()
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cp := &ControlPlane{Server: srv, GRPC: gl.Addr().String(), API: "http://" + hl.Addr().String(),
		stop: cancel, done: make(chan error, 1)}
	go func() { cp.done <- srv.Serve(ctx, gl, hl) }()
	t.Cleanup(func() {
		// Serve's error at the end of a test (an HTTP request still in flight at shutdown)
		// is not what the test is about.
		if err := cp.Stop(); err != nil {
			t.Logf("control plane stopped: %v", err)
		}
	})
	return cp
}

// Stop ends the control plane (connected Envoys keep their last config) and returns what
// Serve returned, nil for a clean stop. Idempotent; for the test's goroutine only.
func (cp *ControlPlane) Stop() error {
	if cp.stop == nil {
		return nil
	}
	cp.stop()
	cp.stop = nil
	if err := <-cp.done; err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	return nil
}

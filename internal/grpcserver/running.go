package grpcserver

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
)

// Running is a role serving in the background (its Start): the listeners it bound, and what
// went wrong while it served, which Wait returns once it stopped.
type Running struct {
	grpcLn, httpLn net.Listener
	done           chan struct{}
	mu             sync.Mutex
	err            error
}

// NewRunning is a role serving on these listeners.
func NewRunning(grpcLn, httpLn net.Listener) *Running {
	return &Running{grpcLn: grpcLn, httpLn: httpLn, done: make(chan struct{})}
}

// Fail records what went wrong (nil: nothing).
func (r *Running) Fail(err error) {
	if err == nil {
		return
	}
	r.mu.Lock()
	r.err = errors.Join(r.err, err)
	r.mu.Unlock()
}

// Stopped says the role has shut down: Wait returns.
func (r *Running) Stopped() { close(r.done) }

// Wait blocks until the role has shut down and returns what went wrong while serving.
func (r *Running) Wait() error {
	<-r.done
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.err
}

// GRPCAddr and HTTPAddr are the bound addresses (useful with port 0).
func (r *Running) GRPCAddr() string { return r.grpcLn.Addr().String() }
func (r *Running) HTTPAddr() string { return r.httpLn.Addr().String() }

// NodeID is the xDS node id of a role that follows the control plane: id, or
// specgate-<role>-<hostname> when id is empty.
func NodeID(role, id string) string {
	if id != "" {
		return id
	}
	host, err := os.Hostname()
	if err != nil {
		host = "unknown"
	}
	return "specgate-" + role + "-" + host
}

// Listen binds a role's gRPC and HTTP addresses, both or neither.
func Listen(ctx context.Context, grpcAddr, httpAddr string) (grpcLn, httpLn net.Listener, err error) {
	lc := net.ListenConfig{}
	if grpcLn, err = lc.Listen(ctx, "tcp", grpcAddr); err != nil {
		return nil, nil, fmt.Errorf("grpc listener: %w", err)
	}
	if httpLn, err = lc.Listen(ctx, "tcp", httpAddr); err != nil {
		grpcLn.Close()
		return nil, nil, fmt.Errorf("http listener: %w", err)
	}
	return grpcLn, httpLn, nil
}

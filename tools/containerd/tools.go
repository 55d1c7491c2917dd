//go:build tools

// Package tools pins containerd for the test cluster (cluster/, make k8s-tools). It is a nested
// module so that go test ./... at the repository root ignores it; this file keeps go mod tidy
// from dropping the requirement.
package tools

import (
	_ "github.com/containerd/containerd/v2/cmd/containerd"
	_ "github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2"
	_ "github.com/containerd/containerd/v2/cmd/ctr"
)

//go:build tools

// Package tools pins kube-router for the test cluster's NetworkPolicy enforcement (cluster/, make
// k8s-tools; only its firewall controller runs). It is a nested module so that go test ./... at
// the repository root ignores it; this file keeps go mod tidy from dropping the requirement.
package tools

import _ "github.com/cloudnativelabs/kube-router/v2/cmd/kube-router"

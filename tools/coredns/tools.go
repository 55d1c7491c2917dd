//go:build tools

// Package tools pins CoreDNS for the test cluster's DNS (cluster/, make k8s-tools). It is a nested
// module so that go test ./... at the repository root ignores it; this file keeps go mod tidy
// from dropping the requirement.
package tools

import _ "github.com/coredns/coredns"

// Package deploy holds specgate's Kubernetes manifests (a Kustomize base, overlays/gke, a plain
// Prometheus scrape config) and, in its tests, the checks every build of them must pass: the
// kustomizations are built with the kustomize API, every object is decoded strictly into its
// Kubernetes type, and plain check functions assert the policies of docs/deploy.md. The same
// functions run on deliberately broken manifests under testdata/ and must fail there.
package deploy

# syntax=docker/dockerfile:1
# One image for every specgate role (xds, authz, ratelimit, and the CLI): a static binary on
# distroless, as a non-root user. Envoy runs from its official image, not this one.
#   docker build -t specgate/specgate:0.1.0 .
# Without docker, `make image` builds the same image (same build, path, user, ports, CA
# certificates) into .tools/images/specgate.tar (scripts/images.sh); deploy/dockerfile_test.go
# keeps the two aligned.

FROM golang:1.26 AS build
WORKDIR /src
# Modules first: this layer is cached until go.mod or go.sum change.
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/specgate ./cmd/specgate

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/specgate /specgate
# distroless' "nonroot" user, by number: the kubelet can only verify runAsNonRoot for a
# numeric user.
USER 65532:65532
EXPOSE 18000 18001 9001 9002 9003 9004
ENTRYPOINT ["/specgate"]

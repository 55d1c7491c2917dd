package main

import (
	"os"
	"path/filepath"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/specgate/specgate/compiler/ir"
	"github.com/specgate/specgate/compiler/translate"
	"github.com/specgate/specgate/config"
)

// writeConfig writes cfg as the gateway.yaml at path.
func writeConfig(path string, cfg config.Gateway) error {
	b, err := yaml.Marshal(cfg)
	if err != nil {
		return err
	}
	return os.WriteFile(path, b, 0o644)
}

// startAuthzWith runs another specgate authz on cfg changed by edit.
func startAuthzWith(o options, dir, name string, cfg config.Gateway, edit func(*config.Gateway)) (peer, error) {
	edit(&cfg)
	path := filepath.Join(dir, "gateway-"+name+".yaml")
	if err := writeConfig(path, cfg); err != nil {
		return peer{}, err
	}
	return startAuthz(o, "specgate-authz-"+name, path)
}

// startAuthz runs `specgate authz` on the gateway.yaml at cfgPath until it is ready.
func startAuthz(o options, name, cfgPath string) (peer, error) {
	grpcAddr, err := freeAddr()
	if err != nil {
		return peer{}, err
	}
	httpAddr, err := freeAddr()
	if err != nil {
		return peer{}, err
	}
	p, err := start(name, []string{adminEnv}, o.specgate, "authz", "--config", cfgPath, "--grpc", grpcAddr, "--http", httpAddr)
	if err != nil {
		return peer{}, err
	}
	return peer{p: p, addr: grpcAddr, http: httpAddr}, p.waitHTTP("http://"+httpAddr+"/readyz", 20*time.Second)
}

// envoyResources are the resources of the specs' model under one variant's gateway.yaml: the
// specs are compiled once, each variant plans the model with its own settings.
func envoyResources(gw ir.Gateway, cfg config.Gateway, o translate.Options) (*translate.Resources, error) {
	gw, err := ir.Plan(gw, cfg)
	if err != nil {
		return nil, err
	}
	return translate.Translate(gw, o)
}

// startRoles runs specgate authz and ratelimit and returns their gRPC addresses.
func startRoles(o options, self, dir string, gw ir.Gateway, cfg config.Gateway) (authz, rl *proc, authzAddr, rlAddr string, err error) {
	cfgPath := filepath.Join(dir, "gateway.yaml")
	if err := writeConfig(cfgPath, cfg); err != nil {
		return nil, nil, "", "", err
	}
	res, err := envoyResources(gw, cfg, translate.Options{})
	if err != nil {
		return nil, nil, "", "", err
	}
	limits, err := translate.YAML(res.RateLimit)
	if err != nil {
		return nil, nil, "", "", err
	}
	limitsPath := filepath.Join(dir, "limits.yaml")
	if err := os.WriteFile(limitsPath, limits, 0o644); err != nil {
		return nil, nil, "", "", err
	}
	var addrs [6]string
	for i := range addrs {
		if addrs[i], err = freeAddr(); err != nil {
			return nil, nil, "", "", err
		}
	}
	env := []string{adminEnv}
	if o.profile != "" {
		authz, err = start("specgate-authz", env, self, "-role", "authz-pprof", "-config", cfgPath, "-addr", addrs[0], "-addr2", addrs[1], "-addr3", addrs[4])
		if err == nil {
			authzAddr, err = addrs[0], authz.waitHTTP("http://"+addrs[1]+"/readyz", 20*time.Second)
		}
	} else {
		var pr peer
		pr, err = startAuthz(o, "specgate-authz", cfgPath)
		authz, authzAddr = pr.p, pr.addr
	}
	if err != nil {
		return nil, nil, "", "", err
	}
	if o.profile != "" {
		rl, err = start("specgate-ratelimit", env, self, "-role", "ratelimit-pprof", "-config", cfgPath, "-limits", limitsPath, "-addr", addrs[2], "-addr2", addrs[3], "-addr3", addrs[5])
	} else {
		rl, err = start("specgate-ratelimit", env, o.specgate, "ratelimit", "--config", cfgPath, "--limits", limitsPath, "--grpc", addrs[2], "--http", addrs[3])
	}
	if err != nil {
		return nil, nil, "", "", err
	}
	if err := rl.waitHTTP("http://"+addrs[3]+"/readyz", 20*time.Second); err != nil {
		return nil, nil, "", "", err
	}
	pprofAddrs = [2]string{addrs[4], addrs[5]}
	return authz, rl, authzAddr, addrs[2], nil
}

// adminToken is the admin credential every specgate role of the benchmark gets (adminEnv).
const (
	adminToken = "bench-admin-token"
	adminEnv   = "SPECGATE_ADMIN_TOKEN=" + adminToken
)

// startValidate runs a control plane on the benchmark's specs and `specgate validate`
// following it, until the processor has the descriptions.
func startValidate(o options, dir, specs string) (peer, error) {
	var addrs [4]string
	for i := range addrs {
		var err error
		if addrs[i], err = freeAddr(); err != nil {
			return peer{}, err
		}
	}
	cfgPath := filepath.Join(dir, "gateway.yaml")
	cp, err := start("specgate-xds", []string{adminEnv}, o.specgate, "xds", "--specs", specs, "--config", cfgPath, "--grpc", addrs[0], "--http", addrs[1])
	if err == nil {
		err = cp.waitHTTP("http://"+addrs[1]+"/readyz", 20*time.Second)
	}
	if err != nil {
		return peer{}, err
	}
	p, err := start("specgate-validate", nil, o.specgate, "validate", "--xds", addrs[0], "--grpc", addrs[2], "--http", addrs[3])
	if err == nil {
		err = p.waitHTTP("http://"+addrs[3]+"/readyz", 20*time.Second)
	}
	return peer{p: p, addr: addrs[2]}, err
}

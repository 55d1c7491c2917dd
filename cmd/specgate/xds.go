package main

import (
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/specgate/specgate/config"
	"github.com/specgate/specgate/xds"
	"github.com/specgate/specgate/xds/specstore"
)

// loadGatewayConfig reads --config, or the defaults when it is empty.
func loadGatewayConfig(path string) (config.Gateway, error) {
	if path == "" {
		return config.Default(), nil
	}
	return config.Load(path)
}

func newXDSCmd() *cobra.Command {
	var (
		specs, cfgPath, store, namespace, kubeconfig string
		keep                                         int
		opts                                         xds.Options
	)
	cmd := &cobra.Command{
		Use:   "xds (--specs DIR | --store kubernetes [--seed DIR]) --config gateway.yaml",
		Short: "Run the control plane: ADS for Envoy, RLS config, the spec store, the change API, metrics",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := loadGatewayConfig(cfgPath)
			if err != nil {
				return err
			}
			opts.Gateway, opts.Logger = cfg, logger()
			switch store {
			case "dir":
				opts.SpecDir = specs
				if opts.Store, err = specstore.OpenDir(specs, keep); err != nil {
					return err
				}
			case "kubernetes":
				if opts.Store, err = kubeStore(kubeconfig, namespace, keep); err != nil {
					return err
				}
			default:
				return fmt.Errorf("--store %q: want dir or kubernetes", store)
			}
			opts.AdminToken = os.Getenv("SPECGATE_ADMIN_TOKEN")
			if opts.AdminToken == "" {
				opts.Logger.Warn("SPECGATE_ADMIN_TOKEN is empty: the push API refuses every call")
			}
			srv, err := xds.New(opts)
			if err != nil {
				return err
			}
			return srv.Run(cmd.Context())
		},
	}
	f := cmd.Flags()
	f.StringVar(&store, "store", "dir", "where the spec sets live: dir (--specs) or kubernetes (ConfigMaps in --namespace, shared by every replica)")
	f.StringVar(&specs, "specs", "specs", "with --store dir: the directory of OpenAPI files (watched; history in DIR/.specgate)")
	f.StringVar(&opts.SeedDir, "seed", "", "a directory of OpenAPI files to store as the first version when the store is empty")
	f.StringVar(&namespace, "namespace", "", "with --store kubernetes: the namespace (default $POD_NAMESPACE, else the pod's own)")
	f.StringVar(&kubeconfig, "kubeconfig", "", "with --store kubernetes: a kubeconfig file (default: the in-cluster service account)")
	f.IntVar(&keep, "history", specstore.DefaultKeep, "versions kept for history and rollback")
	f.StringVar(&cfgPath, "config", "", "gateway.yaml (default: built-in defaults)")
	f.StringVar(&opts.GRPCAddr, "grpc", ":18000", "ADS gRPC address")
	f.StringVar(&opts.HTTPAddr, "http", ":18001", "push API and metrics address")
	f.StringVar(&opts.EnvoyBin, "envoy-validate", "", "Envoy binary to validate every candidate config with (recommended)")
	f.DurationVar(&opts.Debounce, "debounce", 200*time.Millisecond, "wait this long after a file change before recompiling")
	return cmd
}

// kubeStore connects to the API server: with the pod's service account in a cluster, or with a
// kubeconfig file outside one.
func kubeStore(kubeconfig, namespace string, keep int) (*specstore.Kube, error) {
	var (
		cfg *rest.Config
		err error
	)
	if kubeconfig != "" {
		cfg, err = clientcmd.BuildConfigFromFlags("", kubeconfig)
	} else {
		cfg, err = rest.InClusterConfig()
	}
	if err != nil {
		return nil, fmt.Errorf("--store kubernetes: %w", err)
	}
	// A first sync of a large fleet writes a few hundred objects: the client's default of 5
	// requests a second would take a minute.
	cfg.QPS, cfg.Burst = 100, 200
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	if namespace == "" {
		namespace = os.Getenv("POD_NAMESPACE")
	}
	if namespace == "" {
		b, err := os.ReadFile("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
		if err != nil {
			return nil, fmt.Errorf("--store kubernetes: no --namespace, no $POD_NAMESPACE and no in-cluster namespace (%v)", err)
		}
		namespace = strings.TrimSpace(string(b))
	}
	return specstore.NewKube(client, specstore.KubeOptions{Namespace: namespace, Keep: keep, Logger: logger()})
}

package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/specgate/specgate/extauthz/stats"
)

func newStatsCmd() *cobra.Command {
	var (
		servers                          []string
		output, prom, sel                string
		kubeService, namespace, kubeconf string
		since                            time.Duration
	)
	cmd := &cobra.Command{
		Use:   "stats [--server URL]... [--output text|json]",
		Short: "Summarise the authz replicas' metrics: decisions by reason, latency, refusals, revocations, JWKS state",
		Long: `Summarise the metrics of one authz replica, or of several added up (--server once per
replica; or --kube-service specgate-authz, every ready pod of that headless Service, found
through its EndpointSlices): decisions by reason,
latency, denied routes, refused issuers and audiences, the token cache, revocations and
each issuer's JWKS. Counters run from each replica's start. With --prometheus, the figures
are of the last --since across every replica that Prometheus scrapes (on GKE, Managed Service
for Prometheus's frontend), narrowed by --selector.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if output != "text" && output != "json" {
				return fmt.Errorf("--output %q: want text or json", output)
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), 10*time.Second)
			defer cancel()
			var s *stats.Summary
			if prom != "" {
				var err error
				if s, err = stats.FromPrometheus(ctx, prom, sel, since); err != nil {
					return err
				}
				return write(cmd.OutOrStdout(), s, output)
			}
			if kubeService != "" {
				var err error
				if servers, err = kubeServiceURLs(ctx, kubeconf, namespace, kubeService); err != nil {
					return err
				}
			}
			var bodies []io.Reader
			for _, server := range servers {
				b, err := scrape(ctx, strings.TrimSuffix(server, "/")+"/metrics")
				if err != nil {
					return fmt.Errorf("stats: %s: %w", server, err)
				}
				bodies = append(bodies, bytes.NewReader(b))
			}
			s, err := stats.Read(bodies...)
			if err != nil {
				return err
			}
			return write(cmd.OutOrStdout(), s, output)
		},
	}
	cmd.Flags().StringArrayVar(&servers, "server", []string{"http://127.0.0.1:9002"}, "authz HTTP URL (repeat for each replica)")
	cmd.Flags().StringVar(&kubeService, "kube-service", "", "a Kubernetes Service: every ready endpoint of its port named http, instead of --server")
	cmd.Flags().StringVar(&namespace, "namespace", "", "with --kube-service: its namespace (default: the kubeconfig context's, else the pod's own)")
	cmd.Flags().StringVar(&kubeconf, "kubeconfig", "", "with --kube-service: a kubeconfig file (default $KUBECONFIG, ~/.kube/config, else the in-cluster service account)")
	cmd.Flags().StringVarP(&output, "output", "o", "text", "text or json")
	cmd.Flags().StringVar(&prom, "prometheus", "", "a Prometheus API URL: the last --since across every replica it scrapes, instead of --server")
	cmd.Flags().DurationVar(&since, "since", 15*time.Minute, "with --prometheus: the window")
	cmd.Flags().StringVar(&sel, "selector", "", `with --prometheus: label matchers every series must have, e.g. namespace="specgate"`)
	return cmd
}

// kubeServiceURLs lists the URLs of every ready endpoint of the Service's port named http,
// from its EndpointSlices (a Service has one or several; a pod whose readiness probe fails is
// left out, as the Service itself leaves it out).
func kubeServiceURLs(ctx context.Context, kubeconfig, namespace, service string) ([]string, error) {
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	rules.ExplicitPath = kubeconfig
	cc := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{})
	cfg, err := cc.ClientConfig()
	if err != nil {
		return nil, fmt.Errorf("stats: --kube-service: %w", err)
	}
	if namespace == "" {
		if namespace, _, err = cc.Namespace(); err != nil {
			return nil, fmt.Errorf("stats: --kube-service: %w", err)
		}
	}
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	slices, err := client.DiscoveryV1().EndpointSlices(namespace).List(ctx, metav1.ListOptions{
		LabelSelector: discoveryv1.LabelServiceName + "=" + service})
	if err != nil {
		return nil, fmt.Errorf("stats: --kube-service %s/%s: %w", namespace, service, err)
	}
	urls := readyURLs(slices.Items)
	if len(urls) == 0 {
		return nil, fmt.Errorf("stats: --kube-service %s/%s: no ready endpoint with a port named http", namespace, service)
	}
	return urls, nil
}

// readyURLs are the http://IP:PORT of the ready endpoints of slices, on their port named
// http, each pod once, sorted.
func readyURLs(slices []discoveryv1.EndpointSlice) []string {
	var urls []string
	seen := map[string]bool{} // a dual-stack Service lists each pod in an IPv4 and an IPv6 slice
	for _, sl := range slices {
		var port int32
		for _, p := range sl.Ports {
			if p.Name != nil && *p.Name == "http" && p.Port != nil {
				port = *p.Port
			}
		}
		if port == 0 || sl.AddressType == discoveryv1.AddressTypeFQDN {
			continue
		}
		for _, e := range sl.Endpoints {
			if e.Conditions.Ready != nil && !*e.Conditions.Ready {
				continue
			}
			if e.TargetRef != nil {
				if seen[string(e.TargetRef.UID)] {
					continue
				}
				seen[string(e.TargetRef.UID)] = true
			}
			// Every address of an endpoint is the same pod: one is enough.
			urls = append(urls, "http://"+net.JoinHostPort(e.Addresses[0], strconv.Itoa(int(port))))
		}
	}
	sort.Strings(urls)
	return urls
}

func write(w io.Writer, s *stats.Summary, output string) error {
	if output == "json" {
		return s.WriteJSON(w)
	}
	return s.WriteText(w, time.Now())
}

// scrape is the body of GET url.
func scrape(ctx context.Context, url string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET /metrics: %s", resp.Status)
	}
	return io.ReadAll(io.LimitReader(resp.Body, 64<<20))
}

package deploy

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
)

// PodMonitoring is Google Cloud Managed Service for Prometheus' monitoring.googleapis.com/v1
// PodMonitoring, reduced to the fields specgate uses (k8s.io/api has no type for it). Decoding
// is strict, so a field this struct does not know is an error, not silently dropped.
type PodMonitoring struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              struct {
		Selector  metav1.LabelSelector `json:"selector"`
		Endpoints []struct {
			Port     intstr.IntOrString `json:"port"`
			Path     string             `json:"path,omitempty"`
			Interval string             `json:"interval,omitempty"`
			Timeout  string             `json:"timeout,omitempty"`
		} `json:"endpoints"`
	} `json:"spec"`
}

// GKEPolicy is GKE's networking.gke.io/v1 HealthCheckPolicy or GCPBackendPolicy, reduced to
// the fields specgate sets (no Go types are published for them): decoding is strict.
type GKEPolicy struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              struct {
		Default struct {
			// HealthCheckPolicy
			CheckIntervalSec   int32 `json:"checkIntervalSec,omitempty"`
			HealthyThreshold   int32 `json:"healthyThreshold,omitempty"`
			UnhealthyThreshold int32 `json:"unhealthyThreshold,omitempty"`
			Config             *struct {
				Type            string `json:"type"`
				HTTPHealthCheck struct {
					PortSpecification string `json:"portSpecification"`
					Port              int32  `json:"port"`
					RequestPath       string `json:"requestPath"`
				} `json:"httpHealthCheck"`
			} `json:"config,omitempty"`
			// both
			TimeoutSec int32 `json:"timeoutSec,omitempty"`
			// GCPBackendPolicy
			SecurityPolicy     string `json:"securityPolicy,omitempty"`
			ConnectionDraining *struct {
				DrainingTimeoutSec int32 `json:"drainingTimeoutSec"`
			} `json:"connectionDraining,omitempty"`
			Logging *struct {
				Enabled    bool  `json:"enabled"`
				SampleRate int32 `json:"sampleRate"`
			} `json:"logging,omitempty"`
		} `json:"default"`
		TargetRef struct {
			Group string `json:"group"`
			Kind  string `json:"kind"`
			Name  string `json:"name"`
		} `json:"targetRef"`
	} `json:"spec"`
}

// Objects are the decoded objects of one kustomize build, by kind.
type Objects struct {
	Namespaces      []corev1.Namespace
	Deployments     []appsv1.Deployment
	StatefulSets    []appsv1.StatefulSet
	Services        []corev1.Service
	ConfigMaps      []corev1.ConfigMap
	HPAs            []autoscalingv2.HorizontalPodAutoscaler
	PDBs            []policyv1.PodDisruptionBudget
	NetworkPolicies []networkingv1.NetworkPolicy
	PodMonitorings  []PodMonitoring
	Roles           []rbacv1.Role
	RoleBindings    []rbacv1.RoleBinding
	ServiceAccounts []corev1.ServiceAccount
	Gateways        []gatewayv1.Gateway
	HTTPRoutes      []gatewayv1.HTTPRoute
	HealthChecks    []GKEPolicy
	BackendPolicies []GKEPolicy
}

// Build runs kustomize on dir (a directory holding a kustomization.yaml) and decodes every
// object strictly into its Kubernetes type.
func Build(dir string) (*Objects, error) {
	k := krusty.MakeKustomizer(krusty.MakeDefaultOptions())
	m, err := k.Run(filesys.MakeFsOnDisk(), dir)
	if err != nil {
		return nil, fmt.Errorf("kustomize build %s: %w", dir, err)
	}
	objs := &Objects{}
	var errs []error
	for _, r := range m.Resources() {
		b, err := r.MarshalJSON()
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", r.CurId(), err))
			continue
		}
		if err := objs.add(r.GetApiVersion(), r.GetKind(), b); err != nil {
			errs = append(errs, fmt.Errorf("%s %s: %w", r.GetKind(), r.GetName(), err))
		}
	}
	return objs, errors.Join(errs...)
}

func (o *Objects) add(apiVersion, kind string, b []byte) error {
	switch apiVersion + "/" + kind {
	case "v1/Namespace":
		return decodeInto(b, &o.Namespaces)
	case "apps/v1/Deployment":
		return decodeInto(b, &o.Deployments)
	case "apps/v1/StatefulSet":
		return decodeInto(b, &o.StatefulSets)
	case "v1/Service":
		return decodeInto(b, &o.Services)
	case "v1/ConfigMap":
		return decodeInto(b, &o.ConfigMaps)
	case "autoscaling/v2/HorizontalPodAutoscaler":
		return decodeInto(b, &o.HPAs)
	case "policy/v1/PodDisruptionBudget":
		return decodeInto(b, &o.PDBs)
	case "networking.k8s.io/v1/NetworkPolicy":
		return decodeInto(b, &o.NetworkPolicies)
	case "monitoring.googleapis.com/v1/PodMonitoring":
		return decodeInto(b, &o.PodMonitorings)
	case "rbac.authorization.k8s.io/v1/Role":
		return decodeInto(b, &o.Roles)
	case "rbac.authorization.k8s.io/v1/RoleBinding":
		return decodeInto(b, &o.RoleBindings)
	case "v1/ServiceAccount":
		return decodeInto(b, &o.ServiceAccounts)
	case "gateway.networking.k8s.io/v1/Gateway":
		return decodeInto(b, &o.Gateways)
	case "gateway.networking.k8s.io/v1/HTTPRoute":
		return decodeInto(b, &o.HTTPRoutes)
	case "networking.gke.io/v1/HealthCheckPolicy":
		return decodeInto(b, &o.HealthChecks)
	case "networking.gke.io/v1/GCPBackendPolicy":
		return decodeInto(b, &o.BackendPolicies)
	}
	return fmt.Errorf("%s %s: a kind these checks do not know; add it to Objects", apiVersion, kind)
}

// decodeInto decodes one object strictly (an unknown field is an error) and appends it.
func decodeInto[T any](b []byte, list *[]T) error {
	var v T
	d := json.NewDecoder(bytes.NewReader(b))
	d.DisallowUnknownFields()
	if err := d.Decode(&v); err != nil {
		return err
	}
	if _, err := d.Token(); err != io.EOF {
		return errors.New("trailing data after the object")
	}
	*list = append(*list, v)
	return nil
}

// Workload is a pod template with the name and kind of what owns it.
type Workload struct {
	Kind, Name, Namespace string
	Replicas              int32
	Template              corev1.PodTemplateSpec
	Claims                []string // volumeClaimTemplates of a StatefulSet
}

// Workloads lists the Deployments and StatefulSets.
func (o *Objects) Workloads() []Workload {
	var out []Workload
	for _, d := range o.Deployments {
		out = append(out, Workload{"Deployment", d.Name, d.Namespace, replicas(d.Spec.Replicas), d.Spec.Template, nil})
	}
	for _, s := range o.StatefulSets {
		var claims []string
		for _, c := range s.Spec.VolumeClaimTemplates {
			claims = append(claims, c.Name)
		}
		out = append(out, Workload{"StatefulSet", s.Name, s.Namespace, replicas(s.Spec.Replicas), s.Spec.Template, claims})
	}
	return out
}

func replicas(p *int32) int32 {
	if p == nil {
		return 1
	}
	return *p
}

// ConfigMap returns the ConfigMap whose name is name (kustomize's hash suffix included).
func (o *Objects) ConfigMap(name string) *corev1.ConfigMap {
	for i := range o.ConfigMaps {
		if o.ConfigMaps[i].Name == name {
			return &o.ConfigMaps[i]
		}
	}
	return nil
}

// Deployment returns the Deployment named name, or nil.
func (o *Objects) Deployment(name string) *appsv1.Deployment {
	for i := range o.Deployments {
		if o.Deployments[i].Name == name {
			return &o.Deployments[i]
		}
	}
	return nil
}

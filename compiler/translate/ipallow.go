package translate

import (
	"net/netip"
	"slices"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	rbacconfigv3 "github.com/envoyproxy/go-control-plane/envoy/config/rbac/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	rbacv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/rbac/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/specgate/specgate/compiler/ir"
)

// An operation's IP allow list (x-specgate ipAllow) is Envoy's RBAC filter, in the chain
// only of listeners that serve such an operation, right after CORS (a refusal costs no body
// buffering and no authz call), and off by default: each such operation's routes, its
// tokenless route included, turn it on with an ALLOW policy on the client's trusted address
// (remote_ip: the address that xffTrustedHops picks, not the load balancer's).

// usesIPAllow reports whether listener l serves an operation with an IP allow list.
func (t *translator) usesIPAllow(l ir.Listener) bool {
	return t.anyOperation(l, func(op *ir.Operation) bool { return len(op.IPAllow) > 0 })
}

// anyOperation reports whether f holds for an operation that listener l serves.
func (t *translator) anyOperation(l ir.Listener, f func(*ir.Operation) bool) bool {
	return slices.ContainsFunc(l.Routes, func(r ir.Route) bool {
		op := t.ops[r.Operation]
		return op != nil && f(op)
	})
}

// ipAllowFilter is the listener's RBAC filter, off until a route turns it on.
func (t *translator) ipAllowFilter() *hcmv3.HttpFilter {
	f := t.httpFilter(FilterRBAC, &rbacv3.RBAC{})
	f.Disabled = true
	return f
}

// ipAllowPerRoute turns the RBAC filter on for an operation with allow list cidrs.
func (t *translator) ipAllowPerRoute(cidrs []string) *anypb.Any {
	var ids []*rbacconfigv3.Principal
	for _, c := range cidrs {
		p := netip.MustParsePrefix(c) // ir.Operation.IPAllow holds canonical prefixes
		ids = append(ids, &rbacconfigv3.Principal{Identifier: &rbacconfigv3.Principal_RemoteIp{RemoteIp: &corev3.CidrRange{
			AddressPrefix: p.Addr().String(), PrefixLen: wrapperspb.UInt32(uint32(p.Bits())),
		}}})
	}
	return t.pack(&routev3.FilterConfig{Config: t.pack(&rbacv3.RBACPerRoute{Rbac: &rbacv3.RBAC{Rules: &rbacconfigv3.RBAC{
		Action: rbacconfigv3.RBAC_ALLOW,
		Policies: map[string]*rbacconfigv3.Policy{"ip-allow": {
			Permissions: []*rbacconfigv3.Permission{{Rule: &rbacconfigv3.Permission_Any{Any: true}}},
			Principals:  []*rbacconfigv3.Principal{{Identifier: &rbacconfigv3.Principal_OrIds{OrIds: &rbacconfigv3.Principal_Set{Ids: ids}}}},
		}},
	}}})})
}

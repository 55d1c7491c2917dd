package translate

// The HTTP filters of the compiled HCM, by Envoy's names, in their order in the chain (built by
// httpFilters): CORS answers preflights first; RBAC, on listeners with IP allow lists,
// refuses other addresses (ipallow.go); buffer holds a body until it is complete (413
// beyond the limit, so no backend sees a body cut short); the edge decision cache
// (policy.CacheFilter, with authz.decisionCacheTTL) replays allows; ext_authz asks specgate
// authz; header_mutation applies the header rules of tokenless routes (tokenless.go), where
// ext_authz is off; ratelimit asks specgate ratelimit; ext_proc, on listeners with operations
// that validate requests, asks specgate validate (validate.go); the router forwards. The benchmark swaps
// filters by these names.
const (
	FilterCORS           = "envoy.filters.http.cors"
	FilterRBAC           = "envoy.filters.http.rbac"
	FilterBuffer         = "envoy.filters.http.buffer"
	FilterExtAuthz       = "envoy.filters.http.ext_authz"
	FilterHeaderMutation = "envoy.filters.http.header_mutation"
	FilterRateLimit      = "envoy.filters.http.ratelimit"
	FilterExtProc        = "envoy.filters.http.ext_proc"
	FilterRouter         = "envoy.filters.http.router"
)

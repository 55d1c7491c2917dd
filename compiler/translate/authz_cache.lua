-- specgate's edge decision cache (gateway.yaml authz.decisionCacheTTL; docs/architecture.md).
--
-- Runs just before ext_authz. A request carrying exactly the Authorization header that authz
-- allowed on this route, under this route policy, less than the TTL ago gets what authz gave
-- it then: identity headers set and removed, headers outside the route's allow-list removed,
-- the rate-limit metadata. Then it skips ext_authz (whose filter_enabled_metadata reads the
-- "hit" set here). Any other request goes to ext_authz, and envoy_on_response keeps the allows
-- authz offered for reuse (it offers only those that depend on nothing but token and route).
-- This script never allows what authz did not; its state is per Envoy worker and bounded.

local NS = "specgate.authz_cache"             -- policy.CacheFilter
local AUTHZ_NS = "envoy.filters.http.ext_authz" -- policy.MetadataNamespace
local MAX_ENTRIES = 4096                      -- per worker and table; when full, start over
local MAX_BYTES = 4 * 1024 * 1024              -- of keys per worker and table; likewise
-- A key is the route key and the Authorization value. Larger tokens are never cached: each
-- goes to authz, and a flood of them cannot make a worker hold MAX_ENTRIES × 60 KiB.
local MAX_KEY_BYTES = 8192

local entries, entry_count, entry_bytes = {}, 0, 0
local allow_sets, allow_count = {}, 0 -- route key -> set of allowed header names
-- Misses waiting for authz's answer, by a per-worker number kept in dynamic metadata: the
-- token itself never goes into metadata (an access log could print it). A request that never
-- reaches envoy_on_response leaves its entry behind; the table is wiped when it grows.
local pending, pending_count, pending_bytes, next_id = {}, 0, 0, 0

local function allow_set(handle, route_key)
  local set = allow_sets[route_key]
  if set == nil then
    if allow_count >= MAX_ENTRIES then
      allow_sets, allow_count = {}, 0
    end
    set = {}
    for _, name in ipairs(handle:metadata():get("allow") or {}) do
      set[name] = true
    end
    allow_sets[route_key], allow_count = set, allow_count + 1
  end
  return set
end

function envoy_on_request(handle)
  local route_key = handle:metadata():get("key")
  if route_key == nil then
    return
  end
  local headers = handle:headers()
  local auth = headers:get("authorization")
  if auth == nil then
    return
  end
  -- authz decides on a request that may carry an access_token query parameter (it refuses
  -- one its operation does not declare); so does the tokenless route's match.
  local path = string.lower(headers:get(":path") or "")
  if string.find(path, "access_token", 1, true) or string.find(path, "access%5ftoken", 1, true) then
    return
  end
  local key = route_key .. " " .. auth
  if #key > MAX_KEY_BYTES then
    return
  end
  local now = handle:timestamp()
  local e = entries[key]
  -- A clock stepped back (now < asked_at) must not stretch an entry: treat it as a miss.
  if e == nil or e.expires <= now or now < e.asked_at then
    if pending_count >= MAX_ENTRIES or pending_bytes + #key > MAX_BYTES then
      pending, pending_count, pending_bytes = {}, 0, 0
    end
    next_id, pending_count, pending_bytes = next_id + 1, pending_count + 1, pending_bytes + #key
    -- The TTL counts from here, before authz checks: never past what authz allowed.
    pending[next_id] = {key = key, asked_at = now}
    handle:streamInfo():dynamicMetadata():set(NS, "pending", next_id)
    return
  end
  -- What authz's allow does (extauthz server.allow): pseudo-headers and host stay, identity
  -- headers are set or removed, every other header outside the allow-list is removed.
  local allowed = allow_set(handle, route_key)
  local drop = {}
  for name, _ in pairs(headers) do
    if not (allowed[name] or e.set[name] or e.del[name] or name == "host" or name:sub(1, 1) == ":") then
      drop[#drop + 1] = name
    end
  end
  for _, name in ipairs(drop) do
    headers:remove(name)
  end
  for name, _ in pairs(e.del) do
    headers:remove(name)
  end
  for name, value in pairs(e.set) do
    headers:replace(name, value)
  end
  local md = handle:streamInfo():dynamicMetadata()
  md:set(AUTHZ_NS, "subject", e.subject)
  md:set(AUTHZ_NS, "client", e.client)
  md:set(NS, "hit", true) -- last: if anything above failed, ext_authz still decides
end

function envoy_on_response(handle)
  local md = handle:streamInfo():dynamicMetadata()
  local mine = md:get(NS)
  local p = mine and mine.pending and pending[mine.pending]
  if p == nil then
    return
  end
  pending[mine.pending], pending_count, pending_bytes = nil, pending_count - 1, pending_bytes - #p.key
  local authz = md:get(AUTHZ_NS)
  local offer = authz and authz.cache
  if offer == nil or type(offer.ttl_ms) ~= "number" or type(authz.client) ~= "string" then
    return
  end
  local del = {}
  for _, name in ipairs(offer.del or {}) do
    del[name] = true
  end
  if entries[p.key] == nil then
    if entry_count >= MAX_ENTRIES or entry_bytes + #p.key > MAX_BYTES then
      entries, entry_count, entry_bytes = {}, 0, 0
    end
    entry_count, entry_bytes = entry_count + 1, entry_bytes + #p.key
  end
  entries[p.key] = {
    asked_at = p.asked_at,
    expires = p.asked_at + offer.ttl_ms,
    set = offer.set or {},
    del = del,
    subject = authz.subject or "",
    client = authz.client,
  }
end

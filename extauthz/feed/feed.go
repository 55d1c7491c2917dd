// Package feed is what authz hands the Envoy plugin (issue 30): each trusted issuer's keys and
// the token revocations, as a full snapshot or the changes since the reader's last answer.
// The plugin asks every Interval and decides on its own only while its last answer is younger
// than gateway.yaml authz.plugin.staleAfter; authz stays the authority.
package feed

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"

	"github.com/lestrrat-go/jwx/v3/jwk"

	"github.com/specgate/specgate/config"
	"github.com/specgate/specgate/extauthz/revocation"
)

// Path is where authz serves the feed, on its HTTP port.
const Path = "/v1/plugin/feed"

// Feed is one answer. Epoch and Seq go back in the next request's query (epoch, seq):
// with them authz sends only what changed since (Full false).
type Feed struct {
	Epoch string `json:"epoch"` // decimal: a uint64 does not survive every JSON reader
	Seq   uint64 `json:"seq"`
	Full  bool   `json:"full"`
	// Revocations of tokens (jti:, sub:, tok: entries); never API keys, which the plugin
	// leaves to authz.
	Revocations []revocation.Entry `json:"revocations"`
	// Keys holds each issuer's JWKS as authz holds it; an issuer whose keys authz has not
	// fetched yet is absent.
	Keys map[string]json.RawMessage `json:"keys"`
}

// Query is the query string that asks for what changed since f.
func Query(epoch string, seq uint64) string {
	if epoch == "" {
		return ""
	}
	return "?epoch=" + epoch + "&seq=" + strconv.FormatUint(seq, 10)
}

// Credential is the bearer token that reads the feed, derived from the admin token: the
// control plane puts it in Envoy's config without putting there the admin token, which
// revokes and creates keys. Empty when the admin token is.
func Credential(adminToken string) string {
	if adminToken == "" {
		return ""
	}
	m := hmac.New(sha256.New, []byte(adminToken))
	m.Write([]byte("specgate plugin feed"))
	return hex.EncodeToString(m.Sum(nil))
}

// Token reports whether a revocation entry is one the plugin applies.
func Token(e revocation.Entry) bool {
	return e.Grant == nil && !strings.HasPrefix(e.Key, revocation.PrefixAPIKey)
}

// IssuerKeys is one issuer's keys as authz last fed them: the plugin's verify.Keys. A kid it
// does not hold is left to authz, which fetches the IdP's keys (ForceRefresh cannot wait for
// the next answer).
type IssuerKeys struct {
	raw string
	set jwk.Set
}

func (k *IssuerKeys) Keys() jwk.Set                        { return k.set }
func (k *IssuerKeys) ForceRefresh(context.Context) jwk.Set { return k.set }

// SetKeys takes in an answer's keys: a set that changed is parsed; an issuer the answer lacks
// (authz holds no keys of it, say after a restart with its IdP down) is left with none, so
// that tokens of it go to authz rather than meet keys authz no longer trusts.
func SetKeys(held map[string]*IssuerKeys, fed map[string]json.RawMessage) error {
	for iss, k := range held {
		raw, ok := fed[iss]
		switch {
		case !ok:
			k.raw, k.set = "", nil
		case k.raw != string(raw):
			set, err := jwk.Parse(raw)
			if err != nil {
				return fmt.Errorf("keys of %s: %w", iss, err)
			}
			k.raw, k.set = string(raw), set
		}
	}
	return nil
}

// PluginConfig is the plugin's configuration, as the compiler writes it into Envoy's Wasm
// filter.
type PluginConfig struct {
	Cluster    string          `json:"cluster"` // Envoy's cluster of authz's HTTP port
	Credential string          `json:"credential"`
	Interval   config.Duration `json:"interval"`
	StaleAfter config.Duration `json:"staleAfter"`
	// Gateway is Gateway(gateway.yaml).
	Gateway config.Gateway `json:"gateway"`
}

// Gateway is what the plugin needs of gateway.yaml to verify tokens as authz does: issuers,
// claims, identity headers, the token size cap, the revocation set's size and lifetime. Not
// the store URLs, which carry passwords.
func Gateway(g config.Gateway) config.Gateway {
	return config.Gateway{Issuers: g.Issuers, Claims: g.Claims, ClaimHeaders: g.ClaimHeaders, IssuerHeader: g.IssuerHeader,
		Revocation: config.Revocation{ExpectedEntries: g.Revocation.ExpectedEntries,
			FalsePositiveRate: g.Revocation.FalsePositiveRate, MaxTokenLifetime: g.Revocation.MaxTokenLifetime},
		Authz: config.Authz{MaxTokenBytes: g.Authz.MaxTokenBytes}}
}

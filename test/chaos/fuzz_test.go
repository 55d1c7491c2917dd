package chaos

import (
	"context"
	"crypto/hmac"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"hash"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/lestrrat-go/jwx/v3/jwk"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/specgate/specgate/extauthz/devissuer"
	"github.com/specgate/specgate/policy"
	"github.com/specgate/specgate/test/harness/stack"
	"github.com/specgate/specgate/test/harness/testutil"
)

var b64 = base64.RawURLEncoding

const b64chars = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"

// mutator turns a valid token into a token that must be refused.
type mutator struct {
	name string
	fn   func(r *rand.Rand, f *fuzzer, tok string) string
	// raw sends the header as bytes (Envoy's encode_raw_headers header_map), the only way
	// a non-UTF-8 value can reach the service: proto3 string fields must be UTF-8.
	raw bool
}

// fuzzer holds the valid seeds and what the mutators need.
type fuzzer struct {
	seeds   []string
	hmacKey [][]byte // public-key encodings an HS* confusion attack would use as the secret
}

func (f *fuzzer) seed(r *rand.Rand) string { return f.seeds[r.IntN(len(f.seeds))] }

func segs(tok string) []string { return strings.SplitN(tok, ".", 3) }

func decodeJSON(seg string) map[string]any {
	b, _ := b64.DecodeString(seg)
	m := map[string]any{}
	_ = json.Unmarshal(b, &m)
	return m
}

func encodeJSON(m map[string]any) string {
	b, _ := json.Marshal(m)
	return b64.EncodeToString(b)
}

var algs = []string{"none", "None", "NONE", "HS256", "HS384", "HS512", "RS384", "RS512", "PS256", "ES256", "ES384", "EdDSA", "", "RS256 ", "rs256"}

var mutators = []mutator{
	// Flip 1-3 random bits anywhere in the token text (low 7 bits: the text stays ASCII).
	{name: "bitflip", fn: func(r *rand.Rand, _ *fuzzer, tok string) string {
		b := []byte(tok)
		for range 1 + r.IntN(3) {
			b[r.IntN(len(b))] ^= 1 << r.IntN(7)
		}
		return string(b)
	}},
	// Flip any bit, high ones included, and send the value as raw header bytes.
	{name: "bitflip-raw", raw: true, fn: func(r *rand.Rand, _ *fuzzer, tok string) string {
		b := []byte(tok)
		for range 1 + r.IntN(3) {
			b[r.IntN(len(b))] ^= 1 << r.IntN(8)
		}
		return string(b)
	}},
	// Replace 1-3 characters by other base64url characters (stays well-formed base64).
	{name: "b64char", fn: func(r *rand.Rand, _ *fuzzer, tok string) string {
		b := []byte(tok)
		for range 1 + r.IntN(3) {
			i := r.IntN(len(b))
			if b[i] == '.' {
				continue
			}
			b[i] = b64chars[r.IntN(len(b64chars))]
		}
		return string(b)
	}},
	// Change the last character of the signature: the bits past the signature's 2048 are
	// padding, which a lenient base64 decoder ignores.
	{name: "sig-tail", fn: func(r *rand.Rand, _ *fuzzer, tok string) string {
		b := []byte(tok)
		b[len(b)-1] = b64chars[r.IntN(len(b64chars))]
		return string(b)
	}},
	// Cut the token anywhere.
	{name: "truncate", fn: func(r *rand.Rand, _ *fuzzer, tok string) string { return tok[:r.IntN(len(tok))] }},
	// Append junk, dots or a fourth segment.
	{name: "append", fn: func(r *rand.Rand, _ *fuzzer, tok string) string {
		switch r.IntN(4) {
		case 0:
			return tok + "."
		case 1:
			return tok + "." + segs(tok)[2]
		case 2:
			return tok + string(b64chars[r.IntN(len(b64chars))])
		default:
			return tok + "AAAA"
		}
	}},
	// Swap, drop, duplicate or empty segments.
	{name: "segments", fn: func(r *rand.Rand, _ *fuzzer, tok string) string {
		s := segs(tok)
		switch r.IntN(6) {
		case 0:
			return s[1] + "." + s[0] + "." + s[2]
		case 1:
			return s[0] + "." + s[2] + "." + s[1]
		case 2:
			return s[0] + "." + s[1] + "."
		case 3:
			return s[0] + ".." + s[2]
		case 4:
			return "." + s[1] + "." + s[2]
		default:
			return s[0] + "." + s[0] + "." + s[2]
		}
	}},
	// Splice segments of two different valid tokens (same key, same issuer).
	{name: "splice", fn: func(r *rand.Rand, f *fuzzer, tok string) string {
		a, b := segs(tok), segs(f.seed(r))
		if a[1] == b[1] {
			b = segs(f.seeds[(r.IntN(len(f.seeds)-1)+1)%len(f.seeds)])
		}
		switch r.IntN(3) {
		case 0:
			return a[0] + "." + b[1] + "." + a[2]
		case 1:
			return b[0] + "." + a[1] + "." + b[2][:len(b[2])/2] + a[2][len(a[2])/2:]
		default:
			return a[0] + "." + a[1] + "." + b[2]
		}
	}},
	// Change the header's alg (none, HS*, other families, odd spellings), keeping or
	// dropping the signature; or drop/replace the kid.
	{name: "alg", fn: func(r *rand.Rand, _ *fuzzer, tok string) string {
		s := segs(tok)
		h := decodeJSON(s[0])
		switch r.IntN(4) {
		case 0:
			delete(h, "kid")
		case 1:
			h["kid"] = "other"
		default:
			h["alg"] = algs[r.IntN(len(algs))]
		}
		if r.IntN(2) == 0 {
			return encodeJSON(h) + "." + s[1] + "."
		}
		return encodeJSON(h) + "." + s[1] + "." + s[2]
	}},
	// The HS256 key-confusion attack: sign with HMAC keyed by the public key (JWK JSON,
	// PKIX DER or PEM), with a claim changed or not.
	{name: "hs-confusion", fn: func(r *rand.Rand, f *fuzzer, tok string) string {
		s := segs(tok)
		h := decodeJSON(s[0])
		var mac func() hash.Hash
		switch r.IntN(3) {
		case 0:
			h["alg"], mac = "HS256", sha256.New
		case 1:
			h["alg"], mac = "HS384", sha512.New384
		default:
			h["alg"], mac = "HS512", sha512.New
		}
		if r.IntN(2) == 0 {
			delete(h, "kid")
		}
		payload := s[1]
		if r.IntN(2) == 0 {
			p := decodeJSON(payload)
			p["scope"] = "orders:read admin"
			payload = encodeJSON(p)
		}
		in := encodeJSON(h) + "." + payload
		m := hmac.New(mac, f.hmacKey[r.IntN(len(f.hmacKey))])
		m.Write([]byte(in))
		return in + "." + b64.EncodeToString(m.Sum(nil))
	}},
	// Change a claim and keep the signature: scope, sub, exp, iss, aud, or drop exp.
	{name: "claims", fn: func(r *rand.Rand, _ *fuzzer, tok string) string {
		s := segs(tok)
		p := decodeJSON(s[1])
		switch r.IntN(6) {
		case 0:
			p["scope"] = "orders:read admin"
		case 1:
			p["sub"] = "root"
		case 2:
			p["exp"] = 99999999999
		case 3:
			p["iss"] = "https://evil.test/"
		case 4:
			p["aud"] = []string{"api", "other"}
		default:
			delete(p, "exp")
		}
		return s[0] + "." + encodeJSON(p) + "." + s[2]
	}},
	// Standard (padded or non-URL) base64 for one segment: the same bytes, another text.
	{name: "b64-alphabet", fn: func(r *rand.Rand, _ *fuzzer, tok string) string {
		s := segs(tok)
		i := r.IntN(3)
		raw, _ := b64.DecodeString(s[i])
		if r.IntN(2) == 0 {
			s[i] = base64.URLEncoding.EncodeToString(raw) // with = padding
		} else {
			s[i] = base64.StdEncoding.EncodeToString(raw)
		}
		return strings.Join(s, ".")
	}},
}

// fuzzStats counts outcomes per mutator.
type fuzzStats struct {
	mu         sync.Mutex
	sent       map[string]int
	statuses   map[int]int
	accepted   []string // mutator: token
	acceptedBy map[string]int
	// nonCanonical counts accepted tokens that are a seed with a segment re-encoded
	// (padding bits set): TestNonCanonicalTokenRevoked shows what that breaks.
	nonCanonical  int
	acceptedOther []string
	errors        map[string]int
	firstErr      string
	same          int // mutations equal to a seed, not sent
}

// Scenario 7. Mutated tokens straight into authz's gRPC Check with a real route policy:
// none accepted, every answer a CheckResponse with a denied status, no gRPC error.
func TestTokenFuzz(t *testing.T) {
	n := pick(20_000, 1_000_000)
	budget := pick(2*time.Minute, 8*time.Minute)
	// A Check whose kid authz does not know waits for a scheduled JWKS fetch, up to half the
	// authz timeout, so that the first tokens of a real new key pass; at most 32 of one
	// issuer wait (extauthz maxWaiting), the others answer at once. Forged kids would hold
	// 16 workers in that wait (1,175 checks/s measured); 64 keep the others going.
	const workers = 64

	s, _ := shopStack(t)
	var seeds []string
	for i, scopes := range [][]string{{"orders:read"}, {"orders:read", "admin"}, {"orders:read"}, {"other"}} {
		seeds = append(seeds, s.Token(fmt.Sprintf("user-%d", i), scopes...))
	}
	// A token without jti: its revocation is keyed by the token's hash.
	nojti, err := devissuer.Mint(s.Key, stack.Issuer, stack.Audience, "nojti", []string{"orders:read"}, time.Hour, map[string]any{"jti": nil})
	if err != nil {
		t.Fatal(err)
	}
	seeds = append(seeds, nojti)
	var pub rsa.PublicKey
	if err := jwk.Export(s.Key.Public(), &pub); err != nil {
		t.Fatal(err)
	}
	der, _ := x509.MarshalPKIXPublicKey(&pub)
	jwkJSON, _ := json.Marshal(s.Key.Public())
	f := &fuzzer{seeds: seeds, hmacKey: [][]byte{jwkJSON, der, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})}}

	ext, err := policy.Route{ID: "shop.listOrders", AnyOf: []policy.Requirement{{Scopes: []string{"orders:read"}}}}.Encode()
	if err != nil {
		t.Fatal(err)
	}
	conn, err := grpc.NewClient(s.Authz[0].GRPC, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	client := authv3.NewAuthorizationClient(conn)
	check := func(ctx context.Context, tok string, raw bool) (*authv3.CheckResponse, error) {
		ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		h := &authv3.AttributeContext_HttpRequest{Method: "GET", Path: "/shop/orders"}
		if raw {
			h.HeaderMap = &corev3.HeaderMap{Headers: []*corev3.HeaderValue{
				{Key: ":method", RawValue: []byte("GET")}, {Key: ":path", RawValue: []byte("/shop/orders")},
				{Key: ":authority", RawValue: []byte("api.test")}, {Key: "authorization", RawValue: []byte("Bearer " + tok)},
			}}
		} else {
			h.Headers = map[string]string{":method": "GET", ":path": "/shop/orders", ":authority": "api.test", "authorization": "Bearer " + tok}
		}
		return client.Check(ctx, &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
			Source: &authv3.AttributeContext_Peer{Address: &corev3.Address{Address: &corev3.Address_SocketAddress{
				SocketAddress: &corev3.SocketAddress{Address: "203.0.113.7", PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: 40000}},
			}}},
			Request:           &authv3.AttributeContext_Request{Http: h},
			ContextExtensions: ext,
		}})
	}
	// The seeds with orders:read pass: the policy and the channel work.
	isSeed := map[string]bool{}
	for i, tok := range seeds {
		isSeed[tok] = true
		resp, err := check(context.Background(), tok, i%2 == 1)
		want := int32(0)
		if i == 3 { // scope "other" only
			want = 7 // PERMISSION_DENIED
		}
		if err != nil || resp.GetStatus().GetCode() != want {
			t.Fatalf("seed %d: %v %v, want code %d", i, resp.GetStatus(), err, want)
		}
	}

	st := &fuzzStats{sent: map[string]int{}, statuses: map[int]int{}, errors: map[string]int{}, acceptedBy: map[string]int{}}
	ctx, cancel := context.WithTimeout(context.Background(), budget)
	defer cancel()
	var next atomic.Int64
	start := time.Now()
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(w), 20261126))
			for ctx.Err() == nil {
				m := mutators[r.IntN(len(mutators))]
				tok := m.fn(r, f, f.seed(r))
				name, raw := m.name, m.raw
				if r.IntN(8) == 0 { // sometimes stack a second mutation
					m2 := mutators[r.IntN(len(mutators))]
					if len(tok) > 2 && strings.Count(tok, ".") == 2 && !strings.HasSuffix(tok, ".") {
						tok, name, raw = m2.fn(r, f, tok), "stacked", raw || m2.raw
					}
				}
				if isSeed[tok] {
					st.mu.Lock()
					st.same++
					st.mu.Unlock()
					continue
				}
				if next.Add(1) > int64(n) {
					return
				}
				resp, err := check(ctx, tok, raw)
				st.mu.Lock()
				st.sent[name]++
				switch {
				case err != nil:
					st.errors[name]++
					if st.firstErr == "" {
						st.firstErr = err.Error()
					}
				case resp.GetStatus().GetCode() == 0:
					st.statuses[200]++
					st.acceptedBy[name]++
					if isSeed[canonical(tok)] {
						st.nonCanonical++
					} else if len(st.acceptedOther) < 5 {
						st.acceptedOther = append(st.acceptedOther, name+": "+tok)
					}
					if len(st.accepted) < 5 {
						st.accepted = append(st.accepted, name+": "+tok)
					}
				case resp.GetDeniedResponse() == nil:
					st.errors["denied-without-http-response"]++
				default:
					st.statuses[int(resp.GetDeniedResponse().GetStatus().GetCode())]++
				}
				st.mu.Unlock()
			}
		}()
	}
	wg.Wait()
	took := time.Since(start)
	total := 0
	for _, c := range st.sent {
		total += c
	}
	var accepted int = st.statuses[200]
	t.Logf("token fuzz (%s mode): %d mutated tokens in %s (%.0f checks/s, %d workers); %d mutations equal to a seed not sent",
		pick("short", "full"), total, took.Round(time.Millisecond), float64(total)/took.Seconds(), workers, st.same)
	t.Logf("  by mutator: %s", fmtMap(st.sent))
	t.Logf("  by denied HTTP status: %s; accepted %d; gRPC errors %d", fmtMap(st.statuses), accepted, len(st.errors))

	if total < n {
		t.Errorf("only %d of %d tokens checked within %s", total, n, budget)
	}
	if accepted > 0 {
		t.Errorf("%d mutated tokens ACCEPTED (by mutator: %s; %d of them a seed in a non-canonical base64 spelling); first ones:\n%s\nothers:\n%s",
			accepted, fmtMap(st.acceptedBy), st.nonCanonical, strings.Join(st.accepted, "\n"), strings.Join(st.acceptedOther, "\n"))
	}
	if len(st.errors) > 0 {
		t.Errorf("errors other than denials: %s; first: %s", fmtMap(st.errors), st.firstErr)
	}
	for code := range st.statuses {
		if code != 200 && code != 401 && code != 403 {
			t.Errorf("denied with HTTP %d (%d times): want 401 or 403", code, st.statuses[code])
		}
	}
}

// canonical re-encodes every segment of tok from its decoded bytes.
func canonical(tok string) string {
	sg := strings.Split(tok, ".")
	for i, seg := range sg {
		if b, err := b64.DecodeString(seg); err == nil {
			sg[i] = b64.EncodeToString(b)
		}
	}
	return strings.Join(sg, ".")
}

// nonCanonical sets a padding bit in the last character of segment i of tok: the same bytes
// to a lenient base64 decoder, another token text (and another SHA-256) to everything that
// hashes the text.
func nonCanonical(t *testing.T, tok string, i int) string {
	t.Helper()
	s := segs(tok)
	if len(s[i])%4 == 0 {
		t.Fatalf("segment %d has no padding bits", i)
	}
	last := strings.IndexByte(b64chars, s[i][len(s[i])-1])
	s[i] = s[i][:len(s[i])-1] + string(b64chars[last^1])
	return strings.Join(s, ".")
}

// Found by TestTokenFuzz: authz accepts a valid token in which any segment (header, payload
// or signature) is a non-canonical base64url spelling: a set padding bit in its last
// character, ignored by the lenient decoder. The accepted text differs from the issued one,
// so a token without jti, revoked by its hash (tok:<sha256>), passes again in another
// spelling. Correct behaviour: every such variant is refused (401).
func TestNonCanonicalTokenRevoked(t *testing.T) {
	s, _ := shopStack(t)
	tok, err := devissuer.Mint(s.Key, stack.Issuer, stack.Audience, "nojti", []string{"orders:read"}, time.Hour, map[string]any{"jti": nil})
	if err != nil {
		t.Fatal(err)
	}
	if code := get(t, s.Public+"/shop/orders", tok); code != 200 {
		t.Fatalf("fresh token: %d", code)
	}
	if code, body := revoke(t, s.Authz[0].HTTP, tok); code != 200 {
		t.Fatalf("revoke: %d %s", code, body)
	}
	testutil.Eventually(t, 2*time.Second, "revoked token refused", func() bool { return get(t, s.Public+"/shop/orders", tok) == 401 })
	alice := s.Token("alice", "orders:read")
	for i, seg := range []string{"header", "payload", "signature"} {
		if len(segs(tok)[i])%4 != 0 {
			if code := get(t, s.Public+"/shop/orders", nonCanonical(t, tok, i)); code != 401 {
				t.Errorf("revoked token without jti, %s re-encoded with a padding bit set: %d through the gateway, want 401 (revocation bypass)", seg, code)
			}
		}
		if len(segs(alice)[i])%4 != 0 {
			if code := get(t, s.Public+"/shop/orders", nonCanonical(t, alice, i)); code != 401 {
				t.Errorf("valid token, %s re-encoded with a padding bit set: %d, want 401", seg, code)
			}
		}
	}
}

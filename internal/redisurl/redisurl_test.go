package redisurl

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// testCA is a self-signed CA certificate, PEM-encoded.
func testCA(t *testing.T) []byte {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"},
		NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

func TestParse(t *testing.T) {
	for _, c := range []struct {
		url   string
		top   Topology
		addrs string
		check func(t *testing.T, u string)
	}{
		{url: "redis://redis:6379/1", top: Single, addrs: "redis:6379"},
		{url: "rediss://user:secret@redis.example:6380/0", top: Single, addrs: "redis.example:6380"},
		{url: "redis+cluster://a:7000,b:7001,c:7002", top: Cluster, addrs: "a:7000,b:7001,c:7002"},
		{url: "rediss+cluster://:secret@a:7000", top: Cluster, addrs: "a:7000"},
		{url: "redis+sentinel://mymaster@s1:26379,s2:26379,s3:26379/2?sentinelPassword=x", top: Sentinel, addrs: "s1:26379,s2:26379,s3:26379"},
		{url: "redis+sentinel://user:secret@mymaster@s1:26379", top: Sentinel, addrs: "s1:26379"},
	} {
		o, top, err := Parse(c.url)
		if err != nil {
			t.Errorf("%s: %v", c.url, err)
			continue
		}
		if top != c.top || strings.Join(o.Addrs, ",") != c.addrs {
			t.Errorf("%s: %s %v", c.url, top, o.Addrs)
		}
	}
	o, _, _ := Parse("redis+sentinel://user:secret@mymaster@s1:26379/2?sentinelPassword=x")
	if o.MasterName != "mymaster" || o.Username != "user" || o.Password != "secret" || o.DB != 2 || o.SentinelPassword != "x" {
		t.Errorf("sentinel options: %+v", o)
	}
	if o, _, _ := Parse("rediss+cluster://:secret@a:7000"); o.TLSConfig == nil || o.Password != "secret" || !o.IsClusterMode {
		t.Errorf("TLS cluster options: %+v", o)
	}
	ca := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(ca, testCA(t), 0o600); err != nil {
		t.Fatal(err)
	}
	if o, _, err := Parse("rediss://10.0.0.3:6378/0?tlsCA=" + ca); err != nil || o.TLSConfig.RootCAs == nil {
		t.Errorf("tlsCA: %v %+v", err, o)
	}
	notPEM := filepath.Join(t.TempDir(), "ca.txt")
	_ = os.WriteFile(notPEM, []byte("not a certificate"), 0o600)
	for _, bad := range []string{"rediss://a:1?tlsCA=" + notPEM, "rediss://a:1?tlsCA=/nonexistent/ca.pem", "redis://a:1?tlsCA=" + ca,
		"redis://a:1?tlsServerName=x"} {
		if _, _, err := Parse(bad); err == nil {
			t.Errorf("%s accepted", bad)
		}
	}
	for _, bad := range []string{"http://a:1", "redis://a:1,b:2", "redis+cluster://a:1/3", "redis+sentinel://s1:26379",
		"redis+mesh://a:1", "redis://a", "redis://a:1/x", "redis://a:1?timeout=3", "redis://u:hunter2@a:1,b:2"} {
		_, _, err := Parse(bad)
		if err == nil {
			t.Errorf("%s accepted", bad)
		} else if strings.Contains(err.Error(), "hunter2") {
			t.Errorf("%s: the error shows the password: %v", bad, err)
		}
	}
}

// Credentials may come from the environment, ${NAME}, in the user information and the
// sentinelPassword option only, escaped for their place; an unset variable is an error that
// names it; Redacted hides both passwords.
func TestCredentialsFromTheEnvironment(t *testing.T) {
	t.Setenv("SG_TEST_PASS", "p@ss:w/rd ?&")
	t.Setenv("SG_TEST_USER", "gateway")
	t.Setenv("SG_TEST_HOST", "evil.example")
	o, _, err := Parse("rediss://${SG_TEST_USER}:${SG_TEST_PASS}@redis.example:6380/0")
	if err != nil || o.Username != "gateway" || o.Password != "p@ss:w/rd ?&" || o.Addrs[0] != "redis.example:6380" {
		t.Errorf("user information: %+v %v", o, err)
	}
	o, _, err = Parse("redis+sentinel://mymaster@s1:26379/0?sentinelPassword=${SG_TEST_PASS}")
	if err != nil || o.SentinelPassword != "p@ss:w/rd ?&" {
		t.Errorf("sentinelPassword: %+v %v", o, err)
	}
	if _, _, err := Parse("redis://${SG_TEST_HOST}:6379/0"); err == nil {
		t.Error("a host was taken from the environment")
	}
	if _, _, err := Parse("redis://:${SG_TEST_UNSET}@redis:6379/0"); err == nil || !strings.Contains(err.Error(), "${SG_TEST_UNSET} is not set") {
		t.Errorf("unset variable: %v", err)
	}
	for raw, want := range map[string]string{
		"redis://:secret@redis:6379/0":                          "redis://:xxxxx@redis:6379/0",
		"redis+sentinel://m@s1:26379/0?sentinelPassword=secret": "redis+sentinel://m@s1:26379/0?sentinelPassword=xxxxx",
		"memory":                                "memory",
		"redis://:${SG_TEST_PASS}@redis:6379/0": "redis://:xxxxx@redis:6379/0",
		"redis://:se%zzcret@redis:6379/0":       "(a store URL that does not parse)",
	} {
		if got := Redacted(raw); got != want {
			t.Errorf("Redacted(%q) = %q, want %q", raw, got, want)
		}
	}
}

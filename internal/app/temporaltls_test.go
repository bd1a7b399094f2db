package app_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"io"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.temporal.io/server/common/authorization"

	"github.com/adaptflow/adaptflow/internal/app"
	"github.com/adaptflow/adaptflow/internal/temporalserver"
)

// pki is a CA and what it signed, written as PEM files.
type pki struct {
	dir                   string
	ca                    *x509.Certificate
	caKey                 *ecdsa.PrivateKey
	caFile                string
	server                tls.Certificate
	clientCert, clientKey string
}

// newPKI makes a CA, a certificate for a server at 127.0.0.1 and one for a
// client.
func newPKI(t *testing.T, name string) *pki {
	t.Helper()
	p := &pki{dir: t.TempDir()}
	var err error
	if p.caKey, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name + " CA"}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &p.caKey.PublicKey, p.caKey)
	if err != nil {
		t.Fatal(err)
	}
	if p.ca, err = x509.ParseCertificate(der); err != nil {
		t.Fatal(err)
	}
	p.caFile = p.write(t, "ca.pem", "CERTIFICATE", der)
	serverDER, serverKey := p.sign(t, &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "temporal"},
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, DNSNames: []string{"temporal.internal"}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}})
	p.server = tls.Certificate{Certificate: [][]byte{serverDER}, PrivateKey: serverKey}
	p.issueClient(t, "adaptflow")
	return p
}

// issueClient writes a new client certificate and key for name.
func (p *pki) issueClient(t *testing.T, name string) {
	t.Helper()
	der, key := p.sign(t, &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: name}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	p.clientCert = p.write(t, "client.pem", "CERTIFICATE", der)
	p.clientKey = p.write(t, "client-key.pem", "PRIVATE KEY", keyDER)
}

func (p *pki) sign(t *testing.T, tmpl *x509.Certificate) ([]byte, *ecdsa.PrivateKey) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl.NotBefore, tmpl.NotAfter, tmpl.KeyUsage = time.Now().Add(-time.Hour), time.Now().Add(time.Hour), x509.KeyUsageDigitalSignature
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.ca, &key.PublicKey, p.caKey)
	if err != nil {
		t.Fatal(err)
	}
	return der, key
}

func (p *pki) write(t *testing.T, name, kind string, der []byte) string {
	t.Helper()
	path := filepath.Join(p.dir, name)
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: kind, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// tlsFront terminates TLS in front of a plain Temporal frontend, the way a
// secured cluster's frontend (or its load balancer) does: it requires a
// client certificate signed by the CA, and counts the handshakes.
func tlsFront(t *testing.T, p *pki, backend string) (addr string, handshakes, refused *atomic.Int64) {
	t.Helper()
	pool := x509.NewCertPool()
	pool.AddCert(p.ca)
	l, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{p.server}, ClientCAs: pool,
		ClientAuth: tls.RequireAndVerifyClientCert, NextProtos: []string{"h2"}, MinVersion: tls.VersionTLS12})
	if err != nil {
		t.Fatal(err)
	}
	handshakes, refused = &atomic.Int64{}, &atomic.Int64{}
	var wg sync.WaitGroup
	t.Cleanup(func() { _ = l.Close(); wg.Wait() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				if err := c.(*tls.Conn).HandshakeContext(t.Context()); err != nil {
					refused.Add(1)
					return
				}
				handshakes.Add(1)
				b, err := net.Dial("tcp", backend)
				if err != nil {
					return
				}
				defer b.Close()
				done := make(chan struct{}, 2)
				go func() { _, _ = io.Copy(b, c); done <- struct{}{} }()
				go func() { _, _ = io.Copy(c, b); done <- struct{}{} }()
				select {
				case <-done:
				case <-t.Context().Done():
				}
			}()
		}
	}()
	return l.Addr().String(), handshakes, refused
}

const temporalKey = "tk_0123456789abcdef"

// keyClaims accepts the bearer temporalKey, as a cluster's authorizer for
// API keys does, and refuses any other.
type keyClaims struct{}

func (keyClaims) GetClaims(ai *authorization.AuthInfo) (*authorization.Claims, error) {
	if ai.AuthToken == "Bearer "+temporalKey {
		return &authorization.Claims{Subject: "adaptflow", System: authorization.RoleAdmin}, nil
	}
	if ai.AuthToken == "" && ai.TLSConnection == nil {
		return nil, nil
	}
	return nil, errors.New("unknown API key")
}

// keyAuthorizer lets calls without claims through only for the server's
// own system namespace (its internal workers) and to ask what the server
// is (every client's first call), as a secured cluster's internal
// frontend does.
type keyAuthorizer struct{ denied *atomic.Int64 }

func (a keyAuthorizer) Authorize(_ context.Context, c *authorization.Claims, target *authorization.CallTarget) (authorization.Result, error) {
	if c != nil || target.Namespace == "temporal-system" || strings.HasSuffix(target.APIName, "/GetSystemInfo") {
		return authorization.Result{Decision: authorization.DecisionAllow}, nil
	}
	a.denied.Add(1)
	return authorization.Result{Decision: authorization.DecisionDeny, Reason: "no API key"}, nil
}

// TestTemporalOverTLSWithAnAPIKey runs the production shape against a
// secured Temporal: mutual TLS to the frontend and an API key on every
// call. Instances go through; a missing certificate, a CA that does not
// know the server, a wrong key or none are each refused at start.
func TestTemporalOverTLSWithAnAPIKey(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var denied atomic.Int64
	ts := startTemporal(t, func(o *temporalserver.Options) {
		o.ClaimMapper, o.Authorizer = keyClaims{}, keyAuthorizer{denied: &denied}
	})
	p := newPKI(t, "cluster")
	front, handshakes, refused := tlsFront(t, p, ts.Address())

	base := app.DefaultOptions()
	base.DataDir = t.TempDir()
	base.DatabaseURL = "sqlite:" + filepath.Join(base.DataDir, "adaptflow.db")
	base.TemporalAddress = front
	base.TemporalTLS = app.TemporalTLS{CertFile: p.clientCert, KeyFile: p.clientKey, CAFile: p.caFile}
	base.TemporalAPIKey = temporalKey
	base.APIKey = adminKey

	// What is refused, and says why.
	other := newPKI(t, "other")
	for name, tc := range map[string]struct {
		change func(*app.Options)
		want   string
	}{
		"no client certificate":   {func(o *app.Options) { o.TemporalTLS.CertFile, o.TemporalTLS.KeyFile = "", "" }, "connect to Temporal"},
		"a CA that does not know": {func(o *app.Options) { o.TemporalTLS.CAFile = other.caFile }, "certificate signed by unknown authority"},
		"another server name":     {func(o *app.Options) { o.TemporalTLS.ServerName = "elsewhere.internal" }, "elsewhere.internal"},
		"a wrong API key":         {func(o *app.Options) { o.TemporalAPIKey = "tk_wrong" }, "Request unauthorized"},
		"no API key":              {func(o *app.Options) { o.TemporalAPIKey = "" }, "Request unauthorized"},
		"a certificate, no key":   {func(o *app.Options) { o.TemporalTLS.KeyFile = "" }, "--temporal-tls-cert and --temporal-tls-key: give both"},
		"a CA file that is not":   {func(o *app.Options) { o.TemporalTLS.CAFile = p.clientKey }, "--temporal-tls-ca"},
	} {
		o := base
		tc.change(&o)
		runCtx, stop := context.WithTimeout(ctx, 30*time.Second)
		err := app.Run(runCtx, app.ModeWorker, o)
		stop()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want an error saying %q", name, err, tc.want)
		}
	}
	if refused.Load() == 0 || denied.Load() == 0 {
		t.Fatalf("the front refused %d handshakes, the cluster denied %d calls: the cases above never reached them", refused.Load(), denied.Load())
	}

	addr, serverDone, workerDone := startParts(ctx, t, base, base)
	before := handshakes.Load()
	d := &dev{t: t, base: "http://" + addr}
	id := d.start("procurement-approval", "tls-1", map[string]any{"request_id": "PO-7", "requester": "ann", "amount": 300, "budget_remaining": 5000, "supplier": "ACME"})
	if got := plan(d.waitStatus(id, "completed")); got != "budget_check:done manager_approval:skipped place_order:done" {
		t.Fatalf("plan %q", got)
	}
	if before < 2 {
		t.Fatalf("%d TLS handshakes for the server and the worker", before)
	}
	// A rotated client certificate applies to the next handshake.
	cfg, err := app.TLSConfigForTest(base.TemporalTLS, front)
	if err != nil {
		t.Fatal(err)
	}
	cn := func() string {
		t.Helper()
		c, err := cfg.GetClientCertificate(nil)
		if err != nil {
			t.Fatal(err)
		}
		leaf, err := x509.ParseCertificate(c.Certificate[0])
		if err != nil {
			t.Fatal(err)
		}
		return leaf.Subject.CommonName
	}
	if got := cn(); got != "adaptflow" {
		t.Fatalf("client certificate %q", got)
	}
	p.issueClient(t, "adaptflow-rotated")
	if got := cn(); got != "adaptflow-rotated" {
		t.Fatalf("after the rotation, client certificate %q", got)
	}
	cancel()
	for _, done := range []chan error{serverDone, workerDone} {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
}

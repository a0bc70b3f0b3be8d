package binding

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"math/big"
	"testing"
	"time"
)

func newTestCert(t *testing.T, cn string) *x509.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    testNow,
		NotAfter:     testNow.Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

func TestCertThumbprint(t *testing.T) {
	cert := newTestCert(t, "client")
	sum := sha256.Sum256(cert.Raw)
	want := base64.RawURLEncoding.EncodeToString(sum[:])
	got := CertThumbprint(cert)
	if got != want {
		t.Fatalf("CertThumbprint = %q, want %q", got, want)
	}
	if len(got) != 43 {
		t.Errorf("thumbprint %q is %d characters, want 43 (unpadded SHA-256)", got, len(got))
	}
}

func TestCheckMTLS(t *testing.T) {
	cert := newTestCert(t, "client")
	other := newTestCert(t, "client") // same subject, another key
	tp := CertThumbprint(cert)
	sum := sha256.Sum256(cert.Raw)
	tests := []struct {
		name string
		cert *x509.Certificate
		x5t  string
		ok   bool
	}{
		{"match", cert, tp, true},
		{"other certificate", other, tp, false},
		{"no certificate", nil, tp, false},
		{"empty certificate", &x509.Certificate{}, tp, false},
		{"token without x5t#S256", cert, "", false},
		{"padded thumbprint", cert, base64.URLEncoding.EncodeToString(sum[:]), false},
		{"standard base64 thumbprint", cert, base64.StdEncoding.EncodeToString(sum[:]), false},
		{"hex thumbprint", cert, string(hexOf(sum[:])), false},
		{"truncated thumbprint", cert, tp[:42], false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := CheckMTLS(tt.cert, tt.x5t)
			if tt.ok {
				if err != nil {
					t.Fatalf("CheckMTLS: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatal("CheckMTLS accepted a mismatch")
			}
			if e := reasonOf(t, err); e.Reason != ReasonMTLS {
				t.Errorf("Reason = %q, want %q", e.Reason, ReasonMTLS)
			}
		})
	}
}

func hexOf(b []byte) []byte {
	const digits = "0123456789abcdef"
	out := make([]byte, 0, 2*len(b))
	for _, c := range b {
		out = append(out, digits[c>>4], digits[c&15])
	}
	return out
}

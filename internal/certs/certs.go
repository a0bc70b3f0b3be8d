/*
Copyright 2026 The Keyward Authors.

Licensed under the Apache License, Version 2.0 (the "License");
you may not use this file except in compliance with the License.
You may obtain a copy of the License at

    http://www.apache.org/licenses/LICENSE-2.0

Unless required by applicable law or agreed to in writing, software
distributed under the License is distributed on an "AS IS" BASIS,
WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
See the License for the specific language governing permissions and
limitations under the License.
*/

// Package certs issues, parses and plans the renewal of the self-managed serving
// certificate of the manager's admission webhook.
//
// It is pure: no Kubernetes client, no clock (the current time is a parameter), no I/O
// besides crypto/rand. The shell (controllers/webhookcert.go) persists a [Stored] pair
// in a Secret, calls [Parse] and [PlanRenewal], mints with [Apply] when the plan has
// changes, and plans again at [Plan.NextDue].
//
// # Certificates
//
// A self-signed CA (ECDSA P-256, [DefaultCALifetime]) signs one serving certificate
// (ECDSA P-256, [DefaultLeafLifetime], clamped to the CA's expiry) for the webhook
// Service's DNS names. NotBefore is backdated by [Backdate] so that an API server whose
// clock lags a little still accepts a certificate issued a moment ago.
//
// # Renewal
//
// Each certificate is renewed once 2/3 of its lifetime (NotBefore to NotAfter) has
// passed ([RenewalTime]), or at once when it is missing, invalid, expired, not yet
// valid (the clock went backwards) or, for the serving certificate, issued for other
// DNS names. A new CA always comes with a new serving certificate.
//
// The trust bundle (the webhook's caBundle) holds the current CA first. When a CA that
// is still good is renewed, it stays in the bundle, after the new one, until the
// serving certificate it signed expires ([Stored.OverlapUntil]): replicas that have
// not yet loaded the new serving certificate keep being trusted while the new one
// rolls out. A CA that is invalid or expired is dropped at once, since nothing it
// signed can still be trusted.
//
// PlanRenewal is a fixpoint: planning at the same time with the result of Apply yields
// no changes.
package certs

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"slices"
	"time"
)

// Defaults and bounds of the certificate lifetimes.
const (
	DefaultCALifetime   = 365 * 24 * time.Hour
	DefaultLeafLifetime = 90 * 24 * time.Hour
	// MinLifetime is the shortest lifetime Validate accepts: with Backdate it keeps a
	// fresh certificate's renewal time after its issue time.
	MinLifetime = time.Hour
	// Backdate is how far before the issue time NotBefore lies (clock skew allowance).
	Backdate = 5 * time.Minute
	// DefaultCAName is the CommonName prefix of the CA.
	DefaultCAName = "keyward-webhook-ca"
)

// ErrMissing marks a part of the stored pair that is absent (as opposed to invalid).
var ErrMissing = errors.New("missing")

// Policy is what the certificates are issued for.
type Policy struct {
	// DNSNames of the serving certificate; the first is also its CommonName.
	DNSNames     []string
	CALifetime   time.Duration
	LeafLifetime time.Duration
	// CAName is the CommonName prefix of the CA (the issue time is appended, so that the
	// CAs of an overlap are told apart). Empty means DefaultCAName.
	CAName string
}

// Validate reports whether p can be issued: DNS names, lifetimes of at least
// MinLifetime, and a serving certificate that does not outlive its CA.
func (p Policy) Validate() error {
	var errs []error
	if len(p.DNSNames) == 0 {
		errs = append(errs, errors.New("no DNS names"))
	}
	if p.CALifetime < MinLifetime {
		errs = append(errs, fmt.Errorf("CA lifetime %v is shorter than %v", p.CALifetime, MinLifetime))
	}
	if p.LeafLifetime < MinLifetime {
		errs = append(errs, fmt.Errorf("serving certificate lifetime %v is shorter than %v", p.LeafLifetime, MinLifetime))
	}
	if p.LeafLifetime > p.CALifetime {
		errs = append(errs, fmt.Errorf("serving certificate lifetime %v is longer than the CA lifetime %v", p.LeafLifetime, p.CALifetime))
	}
	return errors.Join(errs...)
}

// ServiceDNSNames are the names a client may use for a Service: svc, svc.ns, svc.ns.svc
// and svc.ns.svc.<clusterDomain> (cluster.local when empty). The API server calls a
// webhook Service as svc.ns.svc.
func ServiceDNSNames(service, namespace, clusterDomain string) []string {
	if clusterDomain == "" {
		clusterDomain = "cluster.local"
	}
	return []string{
		service,
		service + "." + namespace,
		service + "." + namespace + ".svc",
		service + "." + namespace + ".svc." + clusterDomain,
	}
}

// Stored is the persisted form of the pair: PEM, as in a kubernetes.io/tls Secret.
type Stored struct {
	CertPEM   []byte // the serving certificate (tls.crt)
	KeyPEM    []byte // its private key, PKCS#8 (tls.key)
	BundlePEM []byte // the trust bundle: the current CA first, then CAs kept for an overlap (ca.crt)
	CAKeyPEM  []byte // the current CA's private key, PKCS#8 (ca.key)
	// OverlapUntil is when the CAs after the first leave the bundle (zero: each at its
	// own expiry).
	OverlapUntil time.Time
}

// State is a parsed Stored. A part that is missing or invalid is nil with its error set.
type State struct {
	CA    *x509.Certificate
	CAKey crypto.Signer
	CAErr error

	Leaf    *x509.Certificate
	LeafKey crypto.Signer
	LeafErr error

	// Previous are the other certificates of the bundle, in bundle order.
	Previous     []*x509.Certificate
	OverlapUntil time.Time
}

// Parse parses and cross-checks a stored pair: the CA key must match a CA certificate of
// the bundle (which becomes the current CA), the serving key must match the serving
// certificate and the CA must have signed it. Time is not checked here (see
// PlanRenewal). Parse never fails as a whole; the errors are in the State.
func Parse(s Stored) *State {
	st := &State{OverlapUntil: s.OverlapUntil}
	st.CA, st.CAKey, st.Previous, st.CAErr = parseCA(s.BundlePEM, s.CAKeyPEM)
	st.Leaf, st.LeafKey, st.LeafErr = parseLeaf(s.CertPEM, s.KeyPEM, st.CA)
	return st
}

func parseCA(bundlePEM, keyPEM []byte) (*x509.Certificate, crypto.Signer, []*x509.Certificate, error) {
	if len(bytes.TrimSpace(bundlePEM)) == 0 && len(bytes.TrimSpace(keyPEM)) == 0 {
		return nil, nil, nil, fmt.Errorf("CA: %w", ErrMissing)
	}
	bundle, err := parseCertificates(bundlePEM)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("CA bundle: %w", err)
	}
	key, err := parsePrivateKey(keyPEM)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("CA key: %w", err)
	}
	i := slices.IndexFunc(bundle, func(c *x509.Certificate) bool { return publicKeyMatches(key, c) })
	if i < 0 {
		return nil, nil, nil, errors.New("the CA key matches no certificate of the CA bundle")
	}
	ca := bundle[i]
	if !ca.IsCA || !ca.BasicConstraintsValid || ca.KeyUsage&x509.KeyUsageCertSign == 0 {
		return nil, nil, nil, fmt.Errorf("certificate %q of the CA bundle is not a CA", ca.Subject.CommonName)
	}
	return ca, key, slices.Delete(bundle, i, i+1), nil
}

func parseLeaf(certPEM, keyPEM []byte, ca *x509.Certificate) (*x509.Certificate, crypto.Signer, error) {
	if len(bytes.TrimSpace(certPEM)) == 0 && len(bytes.TrimSpace(keyPEM)) == 0 {
		return nil, nil, fmt.Errorf("serving certificate: %w", ErrMissing)
	}
	certs, err := parseCertificates(certPEM)
	if err != nil {
		return nil, nil, fmt.Errorf("serving certificate: %w", err)
	}
	leaf := certs[0]
	key, err := parsePrivateKey(keyPEM)
	if err != nil {
		return nil, nil, fmt.Errorf("serving key: %w", err)
	}
	if !publicKeyMatches(key, leaf) {
		return nil, nil, errors.New("the serving key does not match the serving certificate")
	}
	if ca == nil {
		return nil, nil, errors.New("serving certificate: no valid CA to check it against")
	}
	if err := leaf.CheckSignatureFrom(ca); err != nil {
		return nil, nil, fmt.Errorf("the serving certificate was not signed by the current CA: %w", err)
	}
	return leaf, key, nil
}

// parseCertificates parses every PEM block of data, which must all be certificates.
func parseCertificates(data []byte) ([]*x509.Certificate, error) {
	var out []*x509.Certificate
	for rest := data; ; {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			if len(out) > 0 && len(bytes.TrimSpace(rest)) > 0 {
				return nil, errors.New("trailing data that is not PEM")
			}
			break
		}
		if block.Type != "CERTIFICATE" {
			return nil, fmt.Errorf("unexpected PEM block %q", block.Type)
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	if len(out) == 0 {
		return nil, errors.New("no PEM certificate")
	}
	return out, nil
}

// parsePrivateKey parses one PKCS#8, SEC 1 (EC) or PKCS#1 (RSA) PEM private key.
func parsePrivateKey(data []byte) (crypto.Signer, error) {
	block, rest := pem.Decode(data)
	if block == nil {
		return nil, errors.New("no PEM private key")
	}
	if len(bytes.TrimSpace(rest)) > 0 {
		return nil, errors.New("more than one PEM block")
	}
	var key any
	var err error
	switch block.Type {
	case "PRIVATE KEY":
		key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	case "EC PRIVATE KEY":
		key, err = x509.ParseECPrivateKey(block.Bytes)
	case "RSA PRIVATE KEY":
		key, err = x509.ParsePKCS1PrivateKey(block.Bytes)
	default:
		return nil, fmt.Errorf("unexpected PEM block %q", block.Type)
	}
	if err != nil {
		return nil, err
	}
	signer, ok := key.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("unsupported private key %T", key)
	}
	return signer, nil
}

func publicKeyMatches(key crypto.Signer, cert *x509.Certificate) bool {
	pub, ok := key.Public().(interface{ Equal(crypto.PublicKey) bool })
	return ok && pub.Equal(cert.PublicKey)
}

// RenewalTime is when c is due for renewal: 2/3 of the way from NotBefore to NotAfter.
func RenewalTime(c *x509.Certificate) time.Time {
	return c.NotBefore.Add(c.NotAfter.Sub(c.NotBefore) * 2 / 3)
}

// Reason says why a certificate is (re)issued.
type Reason string

// The reasons.
const (
	ReasonMissing      Reason = "Missing"      // none stored yet
	ReasonInvalid      Reason = "Invalid"      // stored but unusable (see Plan.CADetail / LeafDetail)
	ReasonExpiring     Reason = "Expiring"     // 2/3 of the lifetime passed
	ReasonExpired      Reason = "Expired"      // past NotAfter
	ReasonNotYetValid  Reason = "NotYetValid"  // NotBefore is after now (the clock went backwards)
	ReasonNamesChanged Reason = "NamesChanged" // issued for other DNS names
	ReasonCARenewed    Reason = "CARenewed"    // a new CA needs a new serving certificate
)

// Plan is what PlanRenewal decided.
type Plan struct {
	NewCA    bool
	CAReason Reason
	CADetail string // the parse error when CAReason is Invalid
	// KeepOldCA keeps the renewed CA in the bundle until the serving certificate it
	// signed expires.
	KeepOldCA bool

	NewLeaf    bool
	LeafReason Reason
	LeafDetail string

	// Prune are the bundle certificates that leave it (overlap over, or expired).
	Prune []*x509.Certificate

	// NextDue is when the current state next needs planning (at or before now when the
	// plan has changes; the shell plans again on the result of Apply).
	NextDue time.Time
}

// Changes reports whether the plan changes the stored pair.
func (p Plan) Changes() bool { return p.NewCA || p.NewLeaf || len(p.Prune) > 0 }

// PlanRenewal decides, at now, what must be (re)issued for st.
func PlanRenewal(now time.Time, p Policy, st *State) Plan {
	var pl Plan
	pl.CAReason, pl.CADetail = certReason(now, st.CA, st.CAErr)
	if pl.CAReason != "" {
		pl.NewCA = true
		pl.NewLeaf, pl.LeafReason = true, ReasonCARenewed
		// Only a CA that is still good has signed a serving certificate worth trusting.
		pl.KeepOldCA = pl.CAReason == ReasonExpiring && st.Leaf != nil && validAt(now, st.Leaf)
	} else {
		pl.LeafReason, pl.LeafDetail = certReason(now, st.Leaf, st.LeafErr)
		if pl.LeafReason == "" && !sameNames(st.Leaf.DNSNames, p.DNSNames) {
			pl.LeafReason = ReasonNamesChanged
		}
		pl.NewLeaf = pl.LeafReason != ""
	}

	overlapOver := !st.OverlapUntil.IsZero() && !now.Before(st.OverlapUntil)
	for _, c := range st.Previous {
		if (pl.NewCA && !pl.KeepOldCA) || overlapOver || !now.Before(c.NotAfter) {
			pl.Prune = append(pl.Prune, c)
		}
	}

	pl.NextDue = nextDue(st)
	if pl.Changes() {
		pl.NextDue = now
	}
	return pl
}

// certReason returns why c must be reissued at now, or "".
func certReason(now time.Time, c *x509.Certificate, err error) (Reason, string) {
	switch {
	case errors.Is(err, ErrMissing):
		return ReasonMissing, ""
	case err != nil:
		return ReasonInvalid, err.Error()
	case now.Before(c.NotBefore):
		return ReasonNotYetValid, ""
	case !now.Before(c.NotAfter):
		return ReasonExpired, ""
	case !now.Before(RenewalTime(c)):
		return ReasonExpiring, ""
	}
	return "", ""
}

func validAt(now time.Time, c *x509.Certificate) bool {
	return !now.Before(c.NotBefore) && now.Before(c.NotAfter)
}

func sameNames(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(slices.Compact(a), slices.Compact(b))
}

// nextDue is the earliest time the unchanged state needs planning (zero when unknown:
// nothing valid to schedule from).
func nextDue(st *State) time.Time {
	var due []time.Time
	if st.CA != nil {
		due = append(due, RenewalTime(st.CA))
	}
	if st.Leaf != nil {
		due = append(due, RenewalTime(st.Leaf))
	}
	for _, c := range st.Previous {
		due = append(due, c.NotAfter)
	}
	if len(st.Previous) > 0 && !st.OverlapUntil.IsZero() {
		due = append(due, st.OverlapUntil)
	}
	if len(due) == 0 {
		return time.Time{}
	}
	return slices.MinFunc(due, func(a, b time.Time) int { return a.Compare(b) })
}

// Apply carries out pl on st at now and returns the new stored pair. Unchanged parts
// keep their bytes semantically (they are re-encoded).
func Apply(now time.Time, p Policy, st *State, pl Plan) (Stored, error) {
	if err := p.Validate(); err != nil {
		return Stored{}, fmt.Errorf("invalid certificate policy: %w", err)
	}
	ca, caKey, leaf, leafKey := st.CA, st.CAKey, st.Leaf, st.LeafKey
	if (ca == nil && !pl.NewCA) || (leaf == nil && !pl.NewLeaf) {
		return Stored{}, errors.New("the plan keeps a certificate that is missing or invalid")
	}
	previous := slices.DeleteFunc(slices.Clone(st.Previous), func(c *x509.Certificate) bool {
		return slices.ContainsFunc(pl.Prune, c.Equal)
	})
	overlap := st.OverlapUntil
	var err error
	if pl.NewCA {
		if pl.KeepOldCA {
			previous = append([]*x509.Certificate{ca}, previous...)
			if leaf.NotAfter.After(overlap) {
				overlap = leaf.NotAfter
			}
		}
		if ca, caKey, err = newCA(now, p); err != nil {
			return Stored{}, err
		}
	}
	if pl.NewLeaf {
		if leaf, leafKey, err = newLeaf(now, p, ca, caKey); err != nil {
			return Stored{}, err
		}
	}
	if len(previous) == 0 {
		overlap = time.Time{}
	}
	return encode(ca, caKey, leaf, leafKey, previous, overlap)
}

// newCA mints a self-signed CA valid from now-Backdate to now+CALifetime.
func newCA(now time.Time, p Policy) (*x509.Certificate, crypto.Signer, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("generating the CA key: %w", err)
	}
	name := p.CAName
	if name == "" {
		name = DefaultCAName
	}
	serial, err := newSerial()
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: fmt.Sprintf("%s@%d", name, now.Unix())},
		NotBefore:             now.Add(-Backdate).UTC(),
		NotAfter:              now.Add(p.CALifetime).UTC(),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, nil, fmt.Errorf("signing the CA certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	return cert, key, err
}

// newLeaf mints a serving certificate signed by ca, valid from now-Backdate to
// now+LeafLifetime but never after the CA.
func newLeaf(now time.Time, p Policy, ca *x509.Certificate, caKey crypto.Signer) (*x509.Certificate, crypto.Signer, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("generating the serving key: %w", err)
	}
	serial, err := newSerial()
	if err != nil {
		return nil, nil, err
	}
	notAfter := now.Add(p.LeafLifetime)
	if notAfter.After(ca.NotAfter) {
		notAfter = ca.NotAfter
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: p.DNSNames[0]},
		DNSNames:     slices.Clone(p.DNSNames),
		NotBefore:    now.Add(-Backdate).UTC(),
		NotAfter:     notAfter.UTC(),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, key.Public(), caKey)
	if err != nil {
		return nil, nil, fmt.Errorf("signing the serving certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	return cert, key, err
}

func newSerial() (*big.Int, error) {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		return nil, fmt.Errorf("generating a serial number: %w", err)
	}
	return serial, nil
}

func encode(ca *x509.Certificate, caKey crypto.Signer, leaf *x509.Certificate, leafKey crypto.Signer, previous []*x509.Certificate, overlap time.Time) (Stored, error) {
	caKeyPEM, err := encodeKey(caKey)
	if err != nil {
		return Stored{}, fmt.Errorf("encoding the CA key: %w", err)
	}
	leafKeyPEM, err := encodeKey(leafKey)
	if err != nil {
		return Stored{}, fmt.Errorf("encoding the serving key: %w", err)
	}
	var bundle []byte
	for _, c := range append([]*x509.Certificate{ca}, previous...) {
		bundle = append(bundle, encodeCert(c)...)
	}
	return Stored{
		CertPEM:      encodeCert(leaf),
		KeyPEM:       leafKeyPEM,
		BundlePEM:    bundle,
		CAKeyPEM:     caKeyPEM,
		OverlapUntil: overlap,
	}, nil
}

func encodeCert(c *x509.Certificate) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
}

func encodeKey(k crypto.Signer) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

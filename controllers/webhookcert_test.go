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

package controllers

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/go-logr/logr/funcr"
	"github.com/prometheus/client_golang/prometheus/testutil"
	admissionv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	clocktesting "k8s.io/utils/clock/testing"
	"sigs.k8s.io/controller-runtime/pkg/webhook"

	"github.com/keyward-dev/keyward/api/v1alpha1"
	"github.com/keyward-dev/keyward/internal/certs"
)

const testWebhookService = "keyward-webhook"

// certEnv is one test's namespace, MutatingWebhookConfiguration name and fake clock,
// shared by the replicas it starts.
type certEnv struct {
	t      *testing.T
	ns     string
	config string
	clock  *clocktesting.FakeClock
}

func newCertEnv(t *testing.T, prefix string, withConfig bool) *certEnv {
	e := &certEnv{t: t, ns: newNamespace(t, prefix), clock: clocktesting.NewFakeClock(time.Now().Truncate(time.Second))}
	e.config = "keyward-injector-" + e.ns
	t.Cleanup(func() {
		_ = k8sClient.Delete(context.Background(), &admissionv1.MutatingWebhookConfiguration{ObjectMeta: metav1.ObjectMeta{Name: e.config}})
	})
	if withConfig {
		e.createConfig()
	}
	return e
}

// createConfig creates the MutatingWebhookConfiguration with two webhooks and no
// caBundle, as the chart does. It matches no namespace, so no test is affected by it.
func (e *certEnv) createConfig() {
	e.t.Helper()
	none, ignore := admissionv1.SideEffectClassNone, admissionv1.Ignore
	path := "/mutate-v1-pod"
	wh := func(name string) admissionv1.MutatingWebhook {
		return admissionv1.MutatingWebhook{
			Name: name,
			ClientConfig: admissionv1.WebhookClientConfig{
				Service: &admissionv1.ServiceReference{Namespace: e.ns, Name: testWebhookService, Path: &path},
			},
			Rules: []admissionv1.RuleWithOperations{{
				Operations: []admissionv1.OperationType{admissionv1.Create},
				Rule:       admissionv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"pods"}},
			}},
			NamespaceSelector:       &metav1.LabelSelector{MatchLabels: map[string]string{"keyward-test/never": "true"}},
			SideEffects:             &none,
			FailurePolicy:           &ignore,
			AdmissionReviewVersions: []string{"v1"},
		}
	}
	mwc := &admissionv1.MutatingWebhookConfiguration{
		ObjectMeta: metav1.ObjectMeta{Name: e.config},
		Webhooks:   []admissionv1.MutatingWebhook{wh("inject.auth.keyward.dev"), wh("other.auth.keyward.dev")},
	}
	if err := k8sClient.Create(context.Background(), mwc); err != nil {
		e.t.Fatalf("creating MutatingWebhookConfiguration: %v", err)
	}
}

// logLines captures a replica's log lines.
type logLines struct {
	mu    sync.Mutex
	lines []string
}

func (l *logLines) logger() logr.Logger {
	return funcr.New(func(prefix, args string) {
		l.mu.Lock()
		defer l.mu.Unlock()
		l.lines = append(l.lines, prefix+" "+args)
	}, funcr.Options{Verbosity: 1})
}

// matching returns the lines that contain every one of subs.
func (l *logLines) matching(subs ...string) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for _, line := range l.lines {
		if !slices.ContainsFunc(subs, func(s string) bool { return !strings.Contains(line, s) }) {
			out = append(out, line)
		}
	}
	return out
}

func (l *logLines) all() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.lines, "\n")
}

// replica is one running WebhookCertManager with its own cert dir.
type replica struct {
	m    *WebhookCertManager
	dir  string
	logs *logLines
}

func (e *certEnv) newReplica() *replica {
	e.t.Helper()
	dir := filepath.Join(e.t.TempDir(), "serving-certs")
	m, err := NewWebhookCertManager(WebhookCertConfig{
		Namespace: e.ns, SecretName: "keyward-webhook-cert", ServiceName: testWebhookService, ConfigName: e.config,
		CertDir: dir, Clock: e.clock, RESTConfig: cfg, Recorder: recorder,
	})
	if err != nil {
		e.t.Fatalf("NewWebhookCertManager: %v", err)
	}
	return &replica{m: m, dir: dir, logs: &logLines{}}
}

func (r *replica) ctx() context.Context {
	return logr.NewContext(context.Background(), r.logs.logger())
}

// start runs the replica until the test ends.
func (e *certEnv) start(r *replica) {
	ctx, cancel := context.WithCancel(r.ctx())
	done := make(chan error, 1)
	go func() { done <- r.m.Start(ctx) }()
	e.t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			e.t.Errorf("Start returned %v", err)
		}
	})
}

func (e *certEnv) startReplica() *replica {
	r := e.newReplica()
	e.start(r)
	return r
}

func (e *certEnv) secret() *corev1.Secret { return getSecret(e.t, e.ns, "keyward-webhook-cert") }

func (e *certEnv) state(s *corev1.Secret) *certs.State {
	e.t.Helper()
	st := certs.Parse(storedFromSecret(s))
	if st.CAErr != nil || st.LeafErr != nil {
		e.t.Fatalf("stored pair: CA %v, leaf %v", st.CAErr, st.LeafErr)
	}
	return st
}

func (e *certEnv) mwc() *admissionv1.MutatingWebhookConfiguration {
	e.t.Helper()
	mwc := &admissionv1.MutatingWebhookConfiguration{}
	if err := k8sClient.Get(context.Background(), types.NamespacedName{Name: e.config}, mwc); err != nil {
		e.t.Fatalf("getting MutatingWebhookConfiguration: %v", err)
	}
	return mwc
}

// converged checks that the caBundle is the Secret's trust bundle and that every
// replica's cert dir holds the Secret's serving pair.
func (e *certEnv) converged(replicas ...*replica) error {
	s := &corev1.Secret{}
	if err := k8sClient.Get(context.Background(), types.NamespacedName{Namespace: e.ns, Name: "keyward-webhook-cert"}, s); err != nil {
		return err
	}
	mwc := &admissionv1.MutatingWebhookConfiguration{}
	if err := k8sClient.Get(context.Background(), types.NamespacedName{Name: e.config}, mwc); err != nil {
		return err
	}
	for _, wh := range mwc.Webhooks {
		if !bytes.Equal(wh.ClientConfig.CABundle, s.Data[WebhookCAKey]) {
			return fmt.Errorf("caBundle of webhook %s is not the Secret's ca.crt", wh.Name)
		}
	}
	for i, r := range replicas {
		if err := r.m.Ready(); err != nil {
			return fmt.Errorf("replica %d: %w", i, err)
		}
		for _, k := range []string{corev1.TLSCertKey, corev1.TLSPrivateKeyKey} {
			b, err := os.ReadFile(filepath.Join(r.dir, k))
			if err != nil {
				return err
			}
			if !bytes.Equal(b, s.Data[k]) {
				return fmt.Errorf("replica %d: %s differs from the Secret", i, k)
			}
		}
	}
	return nil
}

// verifyServing checks that c chains to the bundle for every name of the webhook Service.
func (e *certEnv) verifyServing(c *x509.Certificate, bundle []byte) error {
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(bundle) {
		return errors.New("the caBundle holds no certificate")
	}
	names := certs.ServiceDNSNames(testWebhookService, e.ns, "")
	if got := slices.Sorted(slices.Values(c.DNSNames)); !slices.Equal(got, slices.Sorted(slices.Values(names))) {
		return fmt.Errorf("DNS names %v, want %v", c.DNSNames, names)
	}
	for _, name := range names {
		if _, err := c.Verify(x509.VerifyOptions{
			DNSName: name, Roots: pool, CurrentTime: e.clock.Now(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		}); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
	}
	return nil
}

// serveWebhook runs controller-runtime's webhook server on the cert dir and returns its
// address.
func serveWebhook(t *testing.T, dir string) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	srv := webhook.NewServer(webhook.Options{Host: "127.0.0.1", Port: port, CertDir: dir})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Start(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("webhook server: %v", err)
		}
	})
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
}

// servedCert is the certificate the server at addr presents (checked by the caller
// against the fake clock, hence no verification here).
func servedCert(addr string) (*x509.Certificate, error) {
	conn, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0], nil
}

func waitServed(t *testing.T, addr string, want *x509.Certificate) *x509.Certificate {
	t.Helper()
	var got *x509.Certificate
	eventually(t, "webhook server serves the stored certificate", func() error {
		var err error
		if got, err = servedCert(addr); err != nil {
			return err
		}
		if !got.Equal(want) {
			return fmt.Errorf("serves serial %s, want %s", got.SerialNumber.Text(16), want.SerialNumber.Text(16))
		}
		return nil
	})
	return got
}

func assertNoKeyMaterial(t *testing.T, logs *logLines) {
	t.Helper()
	if all := logs.all(); strings.Contains(all, "PRIVATE KEY") || strings.Contains(all, "BEGIN") {
		t.Fatalf("key material in the logs:\n%s", all)
	}
}

func TestWebhookCertConfig(t *testing.T) {
	good := WebhookCertConfig{
		Namespace: "ns", SecretName: "s", ServiceName: "svc", ConfigName: "c", CertDir: "/tmp/x",
		Clock: clocktesting.NewFakeClock(time.Now()), RESTConfig: cfg,
	}
	if _, err := NewWebhookCertManager(good); err != nil {
		t.Fatalf("valid config: %v", err)
	}
	for name, tc := range map[string]struct {
		edit func(*WebhookCertConfig)
		want string
	}{
		"no namespace":       {func(c *WebhookCertConfig) { c.Namespace = "" }, "the namespace is empty"},
		"no clock":           {func(c *WebhookCertConfig) { c.Clock = nil }, "no clock"},
		"leaf outlives CA":   {func(c *WebhookCertConfig) { c.LeafLifetime = 2 * certs.DefaultCALifetime }, "longer than the CA lifetime"},
		"lifetime too short": {func(c *WebhookCertConfig) { c.CALifetime = time.Minute }, "shorter than"},
	} {
		c := good
		tc.edit(&c)
		if _, err := NewWebhookCertManager(c); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want %q", name, err, tc.want)
		}
	}
}

// TestWebhookCertIssue: the first replica creates the Secret, the files and the
// caBundle, and the webhook server serves a certificate that chains to the caBundle.
func TestWebhookCertIssue(t *testing.T) {
	e := newCertEnv(t, "wcert-issue", true)
	r := e.newReplica()
	if err := r.m.Ready(); err == nil {
		t.Fatal("ready before the first pass")
	}
	if r.m.NeedLeaderElection() {
		t.Fatal("the certificate runnable must run on every replica")
	}
	e.start(r)
	eventually(t, "converged", func() error { return e.converged(r) })
	if err := r.m.Checker()(nil); err != nil {
		t.Fatalf("readyz check: %v", err)
	}

	s := e.secret()
	if s.Type != corev1.SecretTypeTLS || s.Labels[v1alpha1.LabelManagedBy] != v1alpha1.ManagedByValue {
		t.Fatalf("Secret type %s labels %v", s.Type, s.Labels)
	}
	for _, k := range []string{corev1.TLSCertKey, corev1.TLSPrivateKeyKey, WebhookCAKey, WebhookCAPrivateKey} {
		if len(s.Data[k]) == 0 {
			t.Fatalf("Secret has no %s", k)
		}
	}
	st := e.state(s)
	if len(st.Previous) != 0 || !st.CA.NotAfter.Equal(e.clock.Now().Add(certs.DefaultCALifetime)) ||
		!st.Leaf.NotAfter.Equal(e.clock.Now().Add(certs.DefaultLeafLifetime)) {
		t.Fatalf("fresh pair: %d previous CAs, CA until %v, leaf until %v", len(st.Previous), st.CA.NotAfter, st.Leaf.NotAfter)
	}
	if info, err := os.Stat(filepath.Join(r.dir, corev1.TLSPrivateKeyKey)); err != nil || info.Mode().Perm() != 0o600 {
		t.Fatalf("tls.key: %v, mode %v", err, info.Mode())
	}

	addr := serveWebhook(t, r.dir)
	served := waitServed(t, addr, st.Leaf)
	if err := e.verifyServing(served, e.mwc().Webhooks[0].ClientConfig.CABundle); err != nil {
		t.Fatalf("served certificate against the caBundle: %v", err)
	}
	if got := testutil.ToFloat64(webhookCertExpiry.WithLabelValues("serving")); got != float64(st.Leaf.NotAfter.Unix()) {
		t.Fatalf("expiry metric %v, want %v", got, st.Leaf.NotAfter.Unix())
	}
	if len(r.logs.matching("Issued the webhook CA and serving certificate")) != 1 {
		t.Fatalf("want one issue log line:\n%s", r.logs.all())
	}
	assertNoKeyMaterial(t, r.logs)
}

// TestWebhookCertSecondReplica: a replica that starts later adopts the Secret and the
// caBundle as they are.
func TestWebhookCertSecondReplica(t *testing.T) {
	e := newCertEnv(t, "wcert-second", true)
	a := e.startReplica()
	eventually(t, "first replica converged", func() error { return e.converged(a) })
	s, mwc := e.secret(), e.mwc()

	b := e.newReplica()
	if err := b.m.Bootstrap(b.ctx()); err != nil {
		t.Fatalf("Bootstrap: %v", err)
	}
	if err := e.converged(a, b); err != nil {
		t.Fatalf("after Bootstrap: %v", err)
	}
	e.start(b)
	eventually(t, "both converged", func() error { return e.converged(a, b) })
	if got := e.secret().ResourceVersion; got != s.ResourceVersion {
		t.Fatalf("the second replica rewrote the Secret (resourceVersion %s → %s)", s.ResourceVersion, got)
	}
	if got := e.mwc().ResourceVersion; got != mwc.ResourceVersion {
		t.Fatalf("the second replica rewrote the MutatingWebhookConfiguration (resourceVersion %s → %s)", mwc.ResourceVersion, got)
	}
	if lines := b.logs.matching("webhook CA"); len(lines) != 0 {
		t.Fatalf("the second replica issued: %v", lines)
	}
}

// TestWebhookCertReplicasRace: two replicas start at once; one creates the Secret, the
// other gets AlreadyExists, reads it and serves the same pair.
func TestWebhookCertReplicasRace(t *testing.T) {
	e := newCertEnv(t, "wcert-race", true)
	a, b := e.newReplica(), e.newReplica()
	e.start(a)
	e.start(b)
	eventually(t, "both converged", func() error { return e.converged(a, b) })
	if n := len(a.logs.matching("Issued the webhook CA")) + len(b.logs.matching("Issued the webhook CA")); n != 1 {
		t.Fatalf("%d replicas issued a CA, want 1:\n%s\n%s", n, a.logs.all(), b.logs.all())
	}
}

// stepToNextDue sets the fake clock to the stored pair's next due time and waits until
// the replicas have renewed and converged. It returns the Secret before and after.
func (e *certEnv) stepToNextDue(replicas ...*replica) (before, after *corev1.Secret) {
	e.t.Helper()
	before = e.secret()
	plan := certs.PlanRenewal(e.clock.Now(), replicas[0].m.policy, e.state(before))
	if plan.Changes() {
		e.t.Fatalf("unplanned changes pending: %+v", plan)
	}
	e.clock.SetTime(plan.NextDue)
	eventually(e.t, "renewed at "+plan.NextDue.String(), func() error {
		if e.secret().ResourceVersion == before.ResourceVersion {
			return errors.New("the Secret did not change")
		}
		return e.converged(replicas...)
	})
	return before, e.secret()
}

// TestWebhookCertRenewal steps the fake clock across a leaf renewal, a CA renewal and
// the end of the CA overlap, with two replicas and a webhook server.
func TestWebhookCertRenewal(t *testing.T) {
	e := newCertEnv(t, "wcert-renew", true)
	a, b := e.startReplica(), e.startReplica()
	eventually(t, "converged", func() error { return e.converged(a, b) })
	addr := serveWebhook(t, a.dir)
	s0 := e.state(e.secret())
	waitServed(t, addr, s0.Leaf)

	// Past 2/3 of the leaf's lifetime: a new leaf from the same CA; caBundle untouched.
	mwcRV, sRV := e.mwc().ResourceVersion, e.secret().ResourceVersion
	e.clock.Step(certs.DefaultLeafLifetime * 2 / 3)
	eventually(t, "leaf renewed", func() error {
		if e.secret().ResourceVersion == sRV {
			return errors.New("the Secret did not change")
		}
		return e.converged(a, b)
	})
	s1 := e.state(e.secret())
	if !s1.CA.Equal(s0.CA) || s1.Leaf.Equal(s0.Leaf) || len(s1.Previous) != 0 {
		t.Fatalf("leaf renewal: same CA %v, new leaf %v, previous %d", s1.CA.Equal(s0.CA), !s1.Leaf.Equal(s0.Leaf), len(s1.Previous))
	}
	if got := e.mwc().ResourceVersion; got != mwcRV {
		t.Fatal("a leaf renewal changed the MutatingWebhookConfiguration")
	}
	served := waitServed(t, addr, s1.Leaf)
	if err := e.verifyServing(served, e.mwc().Webhooks[0].ClientConfig.CABundle); err != nil {
		t.Fatalf("renewed certificate: %v", err)
	}
	if len(a.logs.matching("Renewed the webhook serving certificate", "Expiring"))+len(b.logs.matching("Renewed the webhook serving certificate", "Expiring")) != 1 {
		t.Fatalf("want one renewal log line:\n%s\n%s", a.logs.all(), b.logs.all())
	}

	// Renew at every due time until the CA is renewed.
	var before *corev1.Secret
	for after := e.secret(); e.state(after).CA.Equal(s0.CA); {
		before, after = e.stepToNextDue(a, b)
	}
	old, s2 := e.state(before), e.state(e.secret())
	if s2.CA.Equal(s0.CA) || len(s2.Previous) != 1 || !s2.Previous[0].Equal(s0.CA) {
		t.Fatalf("after the CA renewal: new CA %v, previous %d", !s2.CA.Equal(s0.CA), len(s2.Previous))
	}
	if !s2.OverlapUntil.Equal(old.Leaf.NotAfter) {
		t.Fatalf("overlap until %v, want the old leaf's expiry %v", s2.OverlapUntil, old.Leaf.NotAfter)
	}
	bundle := e.mwc().Webhooks[0].ClientConfig.CABundle
	if n := bytes.Count(bundle, []byte("BEGIN CERTIFICATE")); n != 2 {
		t.Fatalf("caBundle holds %d certificates, want the new and the old CA", n)
	}
	// A replica still serving the old certificate is trusted, and so is the new one.
	if err := e.verifyServing(old.Leaf, bundle); err != nil {
		t.Fatalf("old serving certificate against the overlap bundle: %v", err)
	}
	served = waitServed(t, addr, s2.Leaf)
	if err := e.verifyServing(served, bundle); err != nil {
		t.Fatalf("new serving certificate: %v", err)
	}

	// The old CA leaves the bundle once the old serving certificate has expired.
	for after := e.secret(); len(e.state(after).Previous) > 0; {
		_, after = e.stepToNextDue(a, b)
	}
	if e.clock.Now().Before(old.Leaf.NotAfter) {
		t.Fatalf("old CA dropped at %v, before the old serving certificate expired at %v", e.clock.Now(), old.Leaf.NotAfter)
	}
	if n := bytes.Count(e.mwc().Webhooks[0].ClientConfig.CABundle, []byte("BEGIN CERTIFICATE")); n != 1 {
		t.Fatalf("caBundle holds %d certificates after the overlap, want 1", n)
	}
	if _, ok := e.secret().Annotations[AnnotationCAOverlapUntil]; ok {
		t.Fatal("overlap annotation left behind")
	}
	assertNoKeyMaterial(t, a.logs)
	assertNoKeyMaterial(t, b.logs)
}

// TestWebhookCertRepairsCABundle: a caBundle reset or replaced by hand (or by a helm
// upgrade) is set back, and a deleted Secret is created again.
func TestWebhookCertRepairsCABundle(t *testing.T) {
	e := newCertEnv(t, "wcert-repair", true)
	r := e.startReplica()
	eventually(t, "converged", func() error { return e.converged(r) })
	sRV := e.secret().ResourceVersion

	other := certs.Parse(certs.Stored{})
	otherPair, err := certs.Apply(e.clock.Now(), r.m.policy, other, certs.PlanRenewal(e.clock.Now(), r.m.policy, other))
	if err != nil {
		t.Fatal(err)
	}
	mwc := e.mwc()
	mwc.Webhooks[0].ClientConfig.CABundle = otherPair.BundlePEM
	mwc.Webhooks[1].ClientConfig.CABundle = nil
	if err := k8sClient.Update(context.Background(), mwc); err != nil {
		t.Fatalf("editing the caBundle: %v", err)
	}
	eventually(t, "caBundle repaired", func() error { return e.converged(r) })
	if e.secret().ResourceVersion != sRV {
		t.Fatal("repairing the caBundle rewrote the Secret")
	}
	if len(r.logs.matching("Set the caBundle", `"reason"="Repaired"`)) == 0 {
		t.Fatalf("no repair log line:\n%s", r.logs.all())
	}

	// A deleted Secret is created again, and the caBundle follows.
	if err := k8sClient.Delete(context.Background(), e.secret()); err != nil {
		t.Fatalf("deleting the Secret: %v", err)
	}
	eventually(t, "Secret re-created", func() error {
		s := &corev1.Secret{}
		if err := k8sClient.Get(context.Background(), types.NamespacedName{Namespace: e.ns, Name: "keyward-webhook-cert"}, s); err != nil {
			return err
		}
		return e.converged(r)
	})
}

// TestWebhookCertCorruptSecret: garbage in tls.crt gets a new serving certificate from
// the same CA; garbage in ca.key gets a new CA. Both say so in the log.
func TestWebhookCertCorruptSecret(t *testing.T) {
	e := newCertEnv(t, "wcert-corrupt", true)
	r := e.startReplica()
	eventually(t, "converged", func() error { return e.converged(r) })
	s0 := e.state(e.secret())

	corrupt := func(key string) {
		t.Helper()
		s := e.secret()
		s.Data[key] = []byte("garbage")
		if err := k8sClient.Update(context.Background(), s); err != nil {
			t.Fatalf("corrupting %s: %v", key, err)
		}
		eventually(t, "replaced "+key, func() error {
			st := certs.Parse(storedFromSecret(e.secret()))
			if st.CAErr != nil || st.LeafErr != nil {
				return fmt.Errorf("still invalid: %v %v", st.CAErr, st.LeafErr)
			}
			return e.converged(r)
		})
	}

	corrupt(corev1.TLSCertKey)
	s1 := e.state(e.secret())
	if !s1.CA.Equal(s0.CA) || s1.Leaf.Equal(s0.Leaf) {
		t.Fatalf("garbage tls.crt: same CA %v, new leaf %v", s1.CA.Equal(s0.CA), !s1.Leaf.Equal(s0.Leaf))
	}
	if len(r.logs.matching("Replaced the invalid webhook serving certificate", "serving certificate: no PEM certificate")) != 1 {
		t.Fatalf("no clear log line for the garbage tls.crt:\n%s", r.logs.all())
	}

	corrupt(WebhookCAPrivateKey)
	s2 := e.state(e.secret())
	if s2.CA.Equal(s0.CA) || len(s2.Previous) != 0 {
		t.Fatalf("garbage ca.key: new CA %v, previous %d", !s2.CA.Equal(s0.CA), len(s2.Previous))
	}
	if len(r.logs.matching("Replaced the invalid webhook CA and serving certificate", "CA key: no PEM private key")) != 1 {
		t.Fatalf("no clear log line for the garbage ca.key:\n%s", r.logs.all())
	}
	if err := e.verifyServing(s2.Leaf, e.mwc().Webhooks[0].ClientConfig.CABundle); err != nil {
		t.Fatalf("replacement certificate against the caBundle: %v", err)
	}
	assertNoKeyMaterial(t, r.logs)
}

// TestWebhookCertWaitsForConfig: without the MutatingWebhookConfiguration the replica
// still writes its files and becomes ready, says so once, and sets the caBundle as soon
// as the configuration appears.
func TestWebhookCertWaitsForConfig(t *testing.T) {
	e := newCertEnv(t, "wcert-noconfig", false)
	r := e.startReplica()
	eventually(t, "ready without the configuration", r.m.Ready)
	e.clock.Step(webhookCertResync) // one more pass
	e.createConfig()
	eventually(t, "caBundle set once the configuration exists", func() error { return e.converged(r) })
	if n := len(r.logs.matching("Found no MutatingWebhookConfiguration")); n != 1 {
		t.Fatalf("%d log lines about the missing configuration, want 1:\n%s", n, r.logs.all())
	}
}

// TestWebhookCertWrongSecretType: a Secret of another type is not overwritten; the
// replica reports it and stays unready.
func TestWebhookCertWrongSecretType(t *testing.T) {
	e := newCertEnv(t, "wcert-type", true)
	s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "keyward-webhook-cert", Namespace: e.ns}, StringData: map[string]string{"x": "y"}}
	if err := k8sClient.Create(context.Background(), s); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	r := e.startReplica()
	eventually(t, "error logged", func() error {
		if len(r.logs.matching("Failed to reconcile the webhook certificate", "has type Opaque")) == 0 {
			return errors.New("no error log")
		}
		return nil
	})
	if r.m.Ready() == nil {
		t.Fatal("ready without a certificate")
	}
	if got := e.secret(); got.Data["x"] == nil || got.Type != corev1.SecretTypeOpaque {
		t.Fatal("the foreign Secret was changed")
	}
}

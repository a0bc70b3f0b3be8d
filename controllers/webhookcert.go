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
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	admissionv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/metadata/metadatainformer"
	"k8s.io/client-go/rest"
	toolscache "k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/events"
	"k8s.io/klog/v2"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	"github.com/keyward-dev/keyward/api/v1alpha1"
	"github.com/keyward-dev/keyward/internal/certs"
)

// Data keys and annotation of the webhook certificate Secret (type kubernetes.io/tls).
const (
	// WebhookCAKey holds the trust bundle: the current CA first, then a renewed CA kept
	// until the serving certificate it signed expires. It is the webhook's caBundle.
	WebhookCAKey = "ca.crt"
	// WebhookCAPrivateKey holds the current CA's private key.
	WebhookCAPrivateKey = "ca.key"
	// AnnotationCAOverlapUntil is when the renewed CAs leave the trust bundle (RFC 3339).
	AnnotationCAOverlapUntil = "auth.keyward.dev/ca-overlap-until"

	webhookCertManager   = "keyward-webhook-cert" // field manager
	webhookCertComponent = "webhook-cert"         // app.kubernetes.io/component of the Secret
	webhookCertResync    = 10 * time.Minute       // longest wait between two passes
	webhookCertAttempts  = 5                      // passes in a row after a concurrent write
	webhookCertMaxDelay  = 5 * time.Minute        // longest retry delay after an error
)

var webhookCertExpiry = prometheus.NewGaugeVec(prometheus.GaugeOpts{
	Name: "keyward_operator_webhook_cert_expiry_timestamp_seconds",
	Help: "Expiry (Unix time) of the webhook certificate this replica serves (certificate=serving) and of the CA that signed it (certificate=ca).",
}, []string{"certificate"})

func init() {
	metrics.Registry.MustRegister(webhookCertExpiry)
}

// WebhookCertConfig configures a WebhookCertManager.
type WebhookCertConfig struct {
	// Namespace of the Secret and of the webhook Service (the operator's own).
	Namespace string
	// SecretName is the kubernetes.io/tls Secret that holds the CA and the serving pair.
	SecretName string
	// ServiceName is the webhook Service the certificate is issued for.
	ServiceName string
	// ConfigName is the MutatingWebhookConfiguration whose caBundle is kept current.
	ConfigName string
	// CertDir receives tls.crt and tls.key for the webhook server.
	CertDir string
	// ClusterDomain is the cluster's DNS domain (default cluster.local).
	ClusterDomain string
	// CALifetime and LeafLifetime default to certs.DefaultCALifetime and
	// certs.DefaultLeafLifetime.
	CALifetime, LeafLifetime time.Duration
	// Clock drives renewals (clock.RealClock{} in main).
	Clock clock.Clock
	// RESTConfig builds the clients: reads are live, watches are metadata-only and
	// limited to the two objects, so no key material is cached and the manager's
	// label-filtered cache is not involved.
	RESTConfig *rest.Config
	// Recorder records events on the Secret and the MutatingWebhookConfiguration
	// (optional).
	Recorder events.EventRecorder
}

// WebhookCertManager keeps the self-managed webhook serving certificate: the Secret,
// the files in the cert dir and the caBundle of the MutatingWebhookConfiguration. It is
// a manager.Runnable that runs on every replica (each serves the webhook), and the
// replicas converge on the one Secret through optimistic concurrency.
//
// A pass reads the MutatingWebhookConfiguration and then the Secret live, plans with
// internal/certs, writes the Secret if the plan has changes (Create, or Update with the
// read resourceVersion), sets the caBundle (patch with the read resourceVersion) and
// only then writes the files, so that the API server trusts a new CA before any
// replica serves a certificate it signed. Reading the MutatingWebhookConfiguration
// first means a replica with a stale Secret cannot overwrite a newer caBundle: the
// writer of the newer Secret patched the caBundle after this read, so the patch
// conflicts and the pass is redone.
type WebhookCertManager struct {
	cfg    WebhookCertConfig
	policy certs.Policy
	kube   kubernetes.Interface
	meta   metadata.Interface
	poke   chan struct{}

	mu            sync.Mutex                       // one pass at a time (Bootstrap and Start)
	configMissing bool                             // the MutatingWebhookConfiguration was absent at the last pass
	served        atomic.Pointer[x509.Certificate] // the serving certificate in the cert dir
	fileErr       atomic.Pointer[error]            // the last failure to write it
}

// The webhook configuration rule names the default configuration (the chart adds a rule
// for the name it renders); list and watch are authorized by name because the watch
// selects metadata.name.
// +kubebuilder:rbac:groups="",resources=secrets,verbs=get;list;watch;create;update;patch
// +kubebuilder:rbac:groups=admissionregistration.k8s.io,resources=mutatingwebhookconfigurations,resourceNames=keyward-injector,verbs=get;list;watch;patch;update
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch

// NewWebhookCertManager validates cfg, fills in the defaults and builds the clients.
func NewWebhookCertManager(cfg WebhookCertConfig) (*WebhookCertManager, error) {
	if cfg.CALifetime == 0 {
		cfg.CALifetime = certs.DefaultCALifetime
	}
	if cfg.LeafLifetime == 0 {
		cfg.LeafLifetime = certs.DefaultLeafLifetime
	}
	var errs []error
	for name, v := range map[string]string{"namespace": cfg.Namespace, "secret name": cfg.SecretName, "service name": cfg.ServiceName,
		"webhook configuration name": cfg.ConfigName, "cert dir": cfg.CertDir} {
		if v == "" {
			errs = append(errs, fmt.Errorf("the %s is empty", name))
		}
	}
	if cfg.Clock == nil {
		errs = append(errs, errors.New("no clock"))
	}
	if cfg.RESTConfig == nil {
		errs = append(errs, errors.New("no REST config"))
	}
	policy := certs.Policy{
		DNSNames:     certs.ServiceDNSNames(cfg.ServiceName, cfg.Namespace, cfg.ClusterDomain),
		CALifetime:   cfg.CALifetime,
		LeafLifetime: cfg.LeafLifetime,
		CAName:       cfg.ServiceName + "-ca",
	}
	if err := policy.Validate(); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("webhook certificate: %w", err)
	}
	kube, err := kubernetes.NewForConfig(cfg.RESTConfig)
	if err != nil {
		return nil, fmt.Errorf("webhook certificate: %w", err)
	}
	meta, err := metadata.NewForConfig(cfg.RESTConfig)
	if err != nil {
		return nil, fmt.Errorf("webhook certificate: %w", err)
	}
	return &WebhookCertManager{cfg: cfg, policy: policy, kube: kube, meta: meta, poke: make(chan struct{}, 1)}, nil
}

// NeedLeaderElection is false: every replica serves the webhook and needs the files.
func (m *WebhookCertManager) NeedLeaderElection() bool { return false }

// Bootstrap runs one pass, so that the cert dir holds a certificate before the webhook
// server starts (controller-runtime's webhook server fails to start without one).
// Call it before mgr.Start.
func (m *WebhookCertManager) Bootstrap(ctx context.Context) error {
	_, err := m.sync(logf.IntoContext(ctx, logf.FromContext(ctx).WithName("webhook-cert")))
	return err
}

// Start runs passes at start, at the planner's next due time (at least every ten
// minutes), whenever the Secret or the MutatingWebhookConfiguration changes, and after
// an error with a capped exponential backoff. It returns when ctx is done.
func (m *WebhookCertManager) Start(ctx context.Context) error {
	log := logf.FromContext(ctx).WithName("webhook-cert")
	ctx = logf.IntoContext(ctx, log)
	if err := m.watch(ctx); err != nil {
		return err
	}
	failures := 0
	for {
		due, err := m.sync(ctx)
		if ctx.Err() != nil {
			return nil
		}
		now := m.cfg.Clock.Now()
		if err != nil {
			failures++
			delay := min(time.Second<<min(failures-1, 9), webhookCertMaxDelay)
			log.Error(err, "Failed to reconcile the webhook certificate", "retryAfter", delay)
			due = now.Add(delay)
		} else {
			failures = 0
		}
		if due.IsZero() || due.After(now.Add(webhookCertResync)) {
			due = now.Add(webhookCertResync)
		}
		if !m.wait(ctx, due) {
			return nil
		}
	}
}

// wait returns at due, on a change of a watched object, or (false) when ctx is done.
func (m *WebhookCertManager) wait(ctx context.Context, due time.Time) bool {
	t := m.cfg.Clock.NewTimer(due.Sub(m.cfg.Clock.Now()))
	defer t.Stop()
	// The clock may have passed due between reading it and setting the timer.
	if !m.cfg.Clock.Now().Before(due) {
		return ctx.Err() == nil
	}
	select {
	case <-ctx.Done():
		return false
	case <-m.poke:
	case <-t.C():
	}
	return true
}

// watch starts metadata-only informers on the Secret and the MutatingWebhookConfiguration
// (each listed by name) that wake the loop on any change.
func (m *WebhookCertManager) watch(ctx context.Context) error {
	handler := toolscache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { m.wake() },
		UpdateFunc: func(any, any) { m.wake() },
		DeleteFunc: func(any) { m.wake() },
	}
	for _, w := range []struct {
		gvr             schema.GroupVersionResource
		namespace, name string
	}{
		{corev1.SchemeGroupVersion.WithResource("secrets"), m.cfg.Namespace, m.cfg.SecretName},
		{admissionv1.SchemeGroupVersion.WithResource("mutatingwebhookconfigurations"), "", m.cfg.ConfigName},
	} {
		byName := fields.OneTermEqualSelector("metadata.name", w.name).String()
		inf := metadatainformer.NewFilteredMetadataInformer(m.meta, w.gvr, w.namespace, 0, toolscache.Indexers{},
			func(o *metav1.ListOptions) { o.FieldSelector = byName }).Informer()
		if _, err := inf.AddEventHandler(handler); err != nil {
			return fmt.Errorf("watching %s: %w", w.gvr.Resource, err)
		}
		go inf.RunWithContext(ctx)
	}
	return nil
}

func (m *WebhookCertManager) wake() {
	select {
	case m.poke <- struct{}{}:
	default:
	}
}

// Ready reports whether this replica has written a serving certificate that is still
// valid. It stays ready through later API errors: the written certificate keeps serving.
func (m *WebhookCertManager) Ready() error {
	c := m.served.Load()
	if c == nil {
		if p := m.fileErr.Load(); p != nil {
			return fmt.Errorf("the webhook serving certificate is not written yet: %w", *p)
		}
		return errors.New("the webhook serving certificate is not written yet")
	}
	if !m.cfg.Clock.Now().Before(c.NotAfter) {
		return fmt.Errorf("the webhook serving certificate expired at %s", c.NotAfter.Format(time.RFC3339))
	}
	return nil
}

// Checker is Ready as a healthz.Checker for mgr.AddReadyzCheck.
func (m *WebhookCertManager) Checker() healthz.Checker {
	return func(*http.Request) error { return m.Ready() }
}

// sync runs a pass, again at once after a conflict with another replica's write.
func (m *WebhookCertManager) sync(ctx context.Context) (time.Time, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var err error
	for range webhookCertAttempts {
		var due time.Time
		if due, err = m.pass(ctx); !apierrors.IsConflict(err) && !apierrors.IsAlreadyExists(err) {
			return due, err
		}
		logf.FromContext(ctx).V(1).Info("Read the webhook certificate again after a concurrent write", "reason", err.Error())
	}
	return time.Time{}, err
}

// pass reads the world, plans, and applies the plan: Secret, caBundle, files.
func (m *WebhookCertManager) pass(ctx context.Context) (time.Time, error) {
	now := m.cfg.Clock.Now()
	mwc, err := m.kube.AdmissionregistrationV1().MutatingWebhookConfigurations().Get(ctx, m.cfg.ConfigName, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		mwc = nil
	} else if err != nil {
		return time.Time{}, fmt.Errorf("reading MutatingWebhookConfiguration %s: %w", m.cfg.ConfigName, err)
	}
	secret, err := m.kube.CoreV1().Secrets(m.cfg.Namespace).Get(ctx, m.cfg.SecretName, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		secret = nil
	} else if err != nil {
		return time.Time{}, fmt.Errorf("reading Secret %s/%s: %w", m.cfg.Namespace, m.cfg.SecretName, err)
	}
	if secret != nil && secret.Type != corev1.SecretTypeTLS {
		return time.Time{}, fmt.Errorf("secret %s/%s has type %s, not %s: delete it and Keyward will create it",
			m.cfg.Namespace, m.cfg.SecretName, secret.Type, corev1.SecretTypeTLS)
	}

	stored := storedFromSecret(secret)
	st := certs.Parse(stored)
	plan := certs.PlanRenewal(now, m.policy, st)
	renewed := plan.Changes()
	if renewed {
		next, err := certs.Apply(now, m.policy, st, plan)
		if err != nil {
			return time.Time{}, err
		}
		if secret, err = m.writeSecret(ctx, secret, next); err != nil {
			return time.Time{}, err
		}
		stored, st = next, certs.Parse(next)
		m.reportRenewal(ctx, secret, plan, st)
		plan = certs.PlanRenewal(now, m.policy, st)
	}

	bundleErr := m.ensureCABundle(ctx, mwc, stored.BundlePEM, renewed)
	if bundleErr != nil && m.served.Load() != nil {
		// Keep serving the written certificate: the API server may not trust a new CA yet.
		return time.Time{}, bundleErr
	}
	if err := m.writeFiles(ctx, stored); err != nil {
		m.fileErr.Store(&err)
		return time.Time{}, errors.Join(bundleErr, err)
	}
	m.served.Store(st.Leaf)
	webhookCertExpiry.WithLabelValues("serving").Set(float64(st.Leaf.NotAfter.Unix()))
	webhookCertExpiry.WithLabelValues("ca").Set(float64(st.CA.NotAfter.Unix()))
	return plan.NextDue, bundleErr
}

func storedFromSecret(s *corev1.Secret) certs.Stored {
	if s == nil {
		return certs.Stored{}
	}
	out := certs.Stored{
		CertPEM:   s.Data[corev1.TLSCertKey],
		KeyPEM:    s.Data[corev1.TLSPrivateKeyKey],
		BundlePEM: s.Data[WebhookCAKey],
		CAKeyPEM:  s.Data[WebhookCAPrivateKey],
	}
	// An unreadable time keeps the renewed CAs until they expire (the safe side).
	out.OverlapUntil, _ = time.Parse(time.RFC3339, s.Annotations[AnnotationCAOverlapUntil])
	return out
}

// writeSecret creates the Secret, or updates it with the resourceVersion it was read at.
// AlreadyExists and Conflict mean another replica wrote first: the caller reads again.
func (m *WebhookCertManager) writeSecret(ctx context.Context, cur *corev1.Secret, s certs.Stored) (*corev1.Secret, error) {
	secret := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: m.cfg.SecretName, Namespace: m.cfg.Namespace},
		Type:       corev1.SecretTypeTLS,
	}
	if cur != nil {
		secret = cur.DeepCopy()
	}
	if secret.Labels == nil {
		secret.Labels = map[string]string{}
	}
	secret.Labels[v1alpha1.LabelManagedBy] = v1alpha1.ManagedByValue
	secret.Labels[v1alpha1.LabelComponent] = webhookCertComponent
	if s.OverlapUntil.IsZero() {
		delete(secret.Annotations, AnnotationCAOverlapUntil)
	} else {
		if secret.Annotations == nil {
			secret.Annotations = map[string]string{}
		}
		secret.Annotations[AnnotationCAOverlapUntil] = s.OverlapUntil.UTC().Format(time.RFC3339)
	}
	if secret.Data == nil {
		secret.Data = map[string][]byte{}
	}
	secret.Data[corev1.TLSCertKey] = s.CertPEM
	secret.Data[corev1.TLSPrivateKeyKey] = s.KeyPEM
	secret.Data[WebhookCAKey] = s.BundlePEM
	secret.Data[WebhookCAPrivateKey] = s.CAKeyPEM
	secrets := m.kube.CoreV1().Secrets(m.cfg.Namespace)
	if cur == nil {
		return secrets.Create(ctx, secret, metav1.CreateOptions{FieldManager: webhookCertManager})
	}
	return secrets.Update(ctx, secret, metav1.UpdateOptions{FieldManager: webhookCertManager})
}

// reportRenewal logs and records what a plan changed. Never key material: names,
// reasons, serial numbers and expiry times only.
func (m *WebhookCertManager) reportRenewal(ctx context.Context, secret *corev1.Secret, plan certs.Plan, st *certs.State) {
	log := logf.FromContext(ctx).WithValues("secret", klog.KObj(secret))
	leaf := []any{"serial", st.Leaf.SerialNumber.Text(16), "dnsNames", st.Leaf.DNSNames, "notAfter", st.Leaf.NotAfter.UTC()}
	switch {
	case plan.CAReason == certs.ReasonMissing:
		log.Info("Issued the webhook CA and serving certificate", append(leaf, "caNotAfter", st.CA.NotAfter.UTC())...)
		m.event(secret, corev1.EventTypeNormal, "Issued", "Issue", "Issued the webhook CA and serving certificate, valid until %s",
			st.Leaf.NotAfter.UTC().Format(time.RFC3339))
	case plan.CAReason == certs.ReasonInvalid:
		log.Info("Replaced the invalid webhook CA and serving certificate", append(leaf, "problem", plan.CADetail)...)
		m.event(secret, corev1.EventTypeWarning, "ReplacedInvalid", "Replace", "Replaced the invalid webhook CA and serving certificate: %s", plan.CADetail)
	case plan.NewCA:
		log.Info("Renewed the webhook CA and serving certificate", append(leaf, "reason", plan.CAReason,
			"keptPreviousCA", plan.KeepOldCA, "caOverlapUntil", st.OverlapUntil, "caNotAfter", st.CA.NotAfter.UTC())...)
		m.event(secret, corev1.EventTypeNormal, "RenewedCA", "Renew", "Renewed the webhook CA (%s); %s",
			plan.CAReason, overlapText(plan.KeepOldCA, st.OverlapUntil))
	case plan.LeafReason == certs.ReasonInvalid:
		log.Info("Replaced the invalid webhook serving certificate", append(leaf, "problem", plan.LeafDetail)...)
		m.event(secret, corev1.EventTypeWarning, "ReplacedInvalid", "Replace", "Replaced the invalid webhook serving certificate: %s", plan.LeafDetail)
	case plan.NewLeaf:
		log.Info("Renewed the webhook serving certificate", append(leaf, "reason", plan.LeafReason)...)
		m.event(secret, corev1.EventTypeNormal, "Renewed", "Renew", "Renewed the webhook serving certificate (%s), valid until %s",
			plan.LeafReason, st.Leaf.NotAfter.UTC().Format(time.RFC3339))
	}
	for _, c := range plan.Prune {
		log.Info("Removed a previous CA from the webhook trust bundle", "ca", c.Subject.CommonName, "caNotAfter", c.NotAfter.UTC())
	}
}

func overlapText(kept bool, until time.Time) string {
	if !kept {
		return "the previous CA was dropped: nothing it signed is still valid"
	}
	return "the previous CA stays trusted until " + until.UTC().Format(time.RFC3339)
}

func (m *WebhookCertManager) event(obj *corev1.Secret, eventType, reason, action, note string, args ...any) {
	if m.cfg.Recorder != nil {
		m.cfg.Recorder.Eventf(obj, nil, eventType, reason, action, note, args...)
	}
}

// ensureCABundle sets every webhook's caBundle of the MutatingWebhookConfiguration to
// bundle, with a strategic merge patch (webhooks merge by name) that carries the
// resourceVersion read at the start of the pass. renewed says the pass has just written
// a new bundle; otherwise a different caBundle was reset or edited (a helm upgrade, a
// hand edit) and is repaired. An absent configuration is logged once per absence: the
// watch brings it back.
func (m *WebhookCertManager) ensureCABundle(ctx context.Context, mwc *admissionv1.MutatingWebhookConfiguration, bundle []byte, renewed bool) error {
	log := logf.FromContext(ctx)
	if mwc == nil {
		if !m.configMissing {
			log.Info("Found no MutatingWebhookConfiguration yet; its caBundle will be set once it exists", "mutatingWebhookConfiguration", m.cfg.ConfigName)
			m.configMissing = true
		}
		return nil
	}
	m.configMissing = false
	type clientConfig struct {
		CABundle []byte `json:"caBundle"`
	}
	type webhook struct {
		Name         string       `json:"name"`
		ClientConfig clientConfig `json:"clientConfig"`
	}
	var stale []webhook
	var names []string
	reason := "Empty"
	for _, wh := range mwc.Webhooks {
		if !bytes.Equal(wh.ClientConfig.CABundle, bundle) {
			stale = append(stale, webhook{Name: wh.Name, ClientConfig: clientConfig{CABundle: bundle}})
			names = append(names, wh.Name)
			if len(wh.ClientConfig.CABundle) > 0 {
				reason = "Repaired"
			}
		}
	}
	if len(stale) == 0 {
		return nil
	}
	if renewed {
		reason = "Renewed"
	}
	patch, err := json.Marshal(map[string]any{
		"metadata": map[string]any{"resourceVersion": mwc.ResourceVersion},
		"webhooks": stale,
	})
	if err != nil {
		return err
	}
	if _, err := m.kube.AdmissionregistrationV1().MutatingWebhookConfigurations().Patch(ctx, mwc.Name, types.StrategicMergePatchType, patch,
		metav1.PatchOptions{FieldManager: webhookCertManager}); err != nil {
		return fmt.Errorf("setting the caBundle of MutatingWebhookConfiguration %s: %w", mwc.Name, err)
	}
	log.Info("Set the caBundle of the MutatingWebhookConfiguration", "mutatingWebhookConfiguration", klog.KObj(mwc), "webhooks", names, "reason", reason)
	if m.cfg.Recorder != nil {
		m.cfg.Recorder.Eventf(mwc, nil, corev1.EventTypeNormal, "CABundle"+reason, "Patch", "Set the caBundle of webhooks %v to the Keyward webhook CA (%s)", names, reason)
	}
	return nil
}

// writeFiles writes tls.crt and tls.key into the cert dir when they differ, each
// through a temporary file and a rename, so the webhook server's certificate watcher
// never reads a partial file.
func (m *WebhookCertManager) writeFiles(ctx context.Context, s certs.Stored) error {
	if err := os.MkdirAll(m.cfg.CertDir, 0o700); err != nil {
		return fmt.Errorf("creating the cert dir: %w", err)
	}
	var wrote bool
	for _, f := range []struct {
		name string
		data []byte
		perm os.FileMode
	}{
		{corev1.TLSPrivateKeyKey, s.KeyPEM, 0o600},
		{corev1.TLSCertKey, s.CertPEM, 0o644},
	} {
		w, err := writeFileAtomic(filepath.Join(m.cfg.CertDir, f.name), f.data, f.perm)
		if err != nil {
			return err
		}
		wrote = wrote || w
	}
	if wrote {
		logf.FromContext(ctx).Info("Wrote the webhook serving certificate", "dir", m.cfg.CertDir)
	}
	return nil
}

// writeFileAtomic replaces path with data unless it already holds it.
func writeFileAtomic(path string, data []byte, perm os.FileMode) (bool, error) {
	if cur, err := os.ReadFile(path); err == nil && bytes.Equal(cur, data) {
		return false, nil
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return false, fmt.Errorf("writing %s: %w", path, err)
	}
	defer os.Remove(tmp.Name()) // a no-op after the rename
	_, err = tmp.Write(data)
	if err == nil {
		err = tmp.Chmod(perm)
	}
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		return false, fmt.Errorf("writing %s: %w", path, err)
	}
	return true, nil
}

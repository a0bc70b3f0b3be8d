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

// Package e2e drives Keyward on a real single-node cluster (hack/cluster.sh): the operator
// installed by its Helm chart, sample apps injected through real admission, traffic from
// this host to the pods on the local bridge. hack/e2e.sh sets the cluster up and runs it;
// `make test` calls that. Without KEYWARD_E2E=1 the package skips.
package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/config"

	"github.com/keyward-dev/keyward/api/v1alpha1"
	"github.com/keyward-dev/keyward/internal/mint"
)

const (
	issuer     = "https://auth.e2e.keyward.test"
	audience   = "echo"
	keysName   = "e2e-keys"
	policyName = "e2e"
	listenPort = 15080
)

var (
	k8s        client.Client
	ns         string
	operatorNS = envOr("KEYWARD_NAMESPACE", "keyward-system")
	report     *os.File
	jtiSeq     atomic.Int64
	httpClient = &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
)

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

func TestMain(m *testing.M) {
	if os.Getenv("KEYWARD_E2E") != "1" {
		fmt.Println("skipping the end-to-end tests: run them with hack/e2e.sh (make test does)")
		os.Exit(0)
	}
	scheme := runtime.NewScheme()
	_ = clientgoscheme.AddToScheme(scheme)
	_ = v1alpha1.AddToScheme(scheme)
	cfg, err := config.GetConfig()
	if err != nil {
		fmt.Fprintln(os.Stderr, "kubeconfig:", err)
		os.Exit(1)
	}
	cfg.QPS, cfg.Burst = 100, 200
	if k8s, err = client.New(cfg, client.Options{Scheme: scheme}); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if report, err = os.Create(envOr("KEYWARD_E2E_REPORT", "e2e-report.txt")); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	ns = fmt.Sprintf("e2e-%d", time.Now().Unix())
	if err := setup(context.Background()); err != nil {
		fmt.Fprintln(os.Stderr, "setup:", err)
		os.Exit(1)
	}
	code := m.Run()
	if os.Getenv("KEYWARD_E2E_KEEP") == "" {
		_ = k8s.Delete(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}})
	}
	report.Close()
	os.Exit(code)
}

// reportf writes a measured result to the report file and the test log.
func reportf(t *testing.T, format string, args ...any) {
	t.Helper()
	line := fmt.Sprintf(format, args...)
	t.Log(line)
	fmt.Fprintln(report, line)
}

func setup(ctx context.Context) error {
	objs := []client.Object{
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns, Labels: map[string]string{"auth.keyward.dev/injection": "enabled"}}},
		&v1alpha1.SigningKey{
			ObjectMeta: metav1.ObjectMeta{Name: keysName, Namespace: ns},
			Spec: v1alpha1.SigningKeySpec{
				Algorithm: v1alpha1.ES256,
				// Fake-fast: the shortest period the API allows. Pre-publication outlasts
				// the file-mode sidecars' kubelet sync (syncFrequency 10s).
				Rotation: v1alpha1.RotationSpec{
					Period:     metav1.Duration{Duration: time.Minute},
					PrePublish: metav1.Duration{Duration: 25 * time.Second},
					Retain:     metav1.Duration{Duration: 2 * time.Minute},
				},
			},
		},
		&v1alpha1.TokenPolicy{
			ObjectMeta: metav1.ObjectMeta{Name: policyName, Namespace: ns},
			Spec: v1alpha1.TokenPolicySpec{
				Issuer: issuer, Audiences: []string{audience}, SigningKeys: []string{keysName},
				AccessToken:   v1alpha1.AccessTokenSpec{TTL: metav1.Duration{Duration: time.Minute}},
				Routes:        []v1alpha1.RouteRule{{Path: "/healthz", Anonymous: true}},
				ForwardClaims: []v1alpha1.ClaimHeader{{Claim: "email", Header: "X-User-Email"}},
			},
		},
		echoDeployment("echo-watch", 2, "watch"),
		echoDeployment("echo-file", 1, "file"),
		echoService("echo-watch"),
	}
	for _, o := range objs {
		if err := k8s.Create(ctx, o); err != nil {
			return fmt.Errorf("creating %T %s: %w", o, o.GetName(), err)
		}
	}
	for _, d := range []string{"echo-watch", "echo-file"} {
		if err := waitDeploymentReady(ctx, d, 3*time.Minute); err != nil {
			return err
		}
	}
	return nil
}

func echoDeployment(name string, replicas int32, mode string) *appsv1.Deployment {
	labels := map[string]string{"app": name}
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: appsv1.DeploymentSpec{
			Replicas: &replicas,
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels, Annotations: map[string]string{
					"auth.keyward.dev/policy": policyName, "auth.keyward.dev/port": "http",
					"auth.keyward.dev/bundle-mode": mode,
				}},
				Spec: corev1.PodSpec{
					TerminationGracePeriodSeconds: ptr(int64(5)),
					Containers: []corev1.Container{{
						Name: "echo", Image: envOr("KEYWARD_ECHO_IMAGE", "ghcr.io/keyward-dev/keyward-echo:0.1.0"),
						ImagePullPolicy: corev1.PullIfNotPresent,
						// The application listens on loopback only: the sidecar is its one way in.
						Args:  []string{"--listen=127.0.0.1:8080"},
						Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 8080}},
					}},
				},
			},
		},
	}
}

func echoService(name string) *corev1.Service {
	return &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: corev1.ServiceSpec{
			Selector: map[string]string{"app": name},
			// targetPort by name: after injection the name belongs to the sidecar.
			Ports: []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intOrName("http")}},
		},
	}
}

func waitDeploymentReady(ctx context.Context, name string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		d := &appsv1.Deployment{}
		err := k8s.Get(ctx, types.NamespacedName{Namespace: ns, Name: name}, d)
		if err == nil && d.Spec.Replicas != nil && d.Status.ReadyReplicas == *d.Spec.Replicas &&
			d.Status.UpdatedReplicas == *d.Spec.Replicas && d.Status.Replicas == *d.Spec.Replicas {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("deployment %s/%s not ready after %s (err %v, status %+v)", ns, name, timeout, err, d.Status)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// podIPs are the ready pods of app, addressed on the local bridge.
func podIPs(t *testing.T, app string) []string {
	t.Helper()
	pods := &corev1.PodList{}
	if err := k8s.List(context.Background(), pods, client.InNamespace(ns), client.MatchingLabels{"app": app}); err != nil {
		t.Fatal(err)
	}
	var ips []string
	for _, p := range pods.Items {
		if p.DeletionTimestamp == nil && p.Status.PodIP != "" && podReady(&p) {
			ips = append(ips, p.Status.PodIP)
		}
	}
	sort.Strings(ips)
	if len(ips) == 0 {
		t.Fatalf("no ready pod of %s", app)
	}
	return ips
}

func podReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// signer mints access tokens with the SigningKey's active key, read from its Secret like
// the token service does (internal/mint).
type signer struct{ *mint.Signer }

func loadSigner(ctx context.Context) (*signer, error) {
	secret := &corev1.Secret{}
	if err := k8s.Get(ctx, types.NamespacedName{Namespace: ns, Name: keysName + "-keys"}, secret); err != nil {
		return nil, err
	}
	s, err := mint.FromSecret(secret.Data)
	if err != nil {
		return nil, err
	}
	return &signer{s}, nil
}

// claims for a fresh token; jti is unique per call unless given.
func claims(jti string) map[string]any {
	if jti == "" {
		jti = fmt.Sprintf("e2e-%d-%d", time.Now().UnixNano(), jtiSeq.Add(1))
	}
	now := time.Now()
	return map[string]any{
		"iss": issuer, "aud": audience, "sub": "alice", "email": "alice@example.test",
		"jti": jti, "iat": now.Unix() - 1, "exp": now.Add(time.Minute).Unix(),
	}
}

func (s *signer) token(jti string) string {
	tok, err := s.Sign(claims(jti), "at+jwt")
	if err != nil {
		panic(err)
	}
	return tok
}

// get sends GET path to ip:listenPort with an optional bearer token.
func get(ip, path, token string) (int, http.Header, []byte, error) {
	req, err := http.NewRequest(http.MethodGet, fmt.Sprintf("http://%s:%d%s", ip, listenPort, path), nil)
	if err != nil {
		return 0, nil, nil, err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		return 0, nil, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, body, err
}

// waitRejected polls every ip with token until each answers 401, and returns the time
// from start until the last one did.
func waitRejected(ips []string, token string, start time.Time, timeout time.Duration) (time.Duration, error) {
	var wg sync.WaitGroup
	var mu sync.Mutex
	var worst time.Duration
	var firstErr error
	for _, ip := range ips {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				code, _, _, err := get(ip, "/", token)
				if err == nil && code == http.StatusUnauthorized {
					d := time.Since(start)
					mu.Lock()
					worst = max(worst, d)
					mu.Unlock()
					return
				}
				if time.Since(start) > timeout {
					mu.Lock()
					firstErr = fmt.Errorf("%s still answers %d (err %v) after %s", ip, code, err, timeout)
					mu.Unlock()
					return
				}
				time.Sleep(20 * time.Millisecond)
			}
		}()
	}
	wg.Wait()
	return worst, firstErr
}

// waitAccepted polls until every ip accepts token (a key just published, a fresh pod).
func waitAccepted(ips []string, token string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for _, ip := range ips {
		for {
			code, _, _, err := get(ip, "/", token)
			if err == nil && code == http.StatusOK {
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("%s answers %d (err %v), want 200", ip, code, err)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	return nil
}

func percentiles(ds []time.Duration) (p50, p99, maxD time.Duration) {
	s := slices.Clone(ds)
	slices.Sort(s)
	at := func(q float64) time.Duration {
		i := int(q*float64(len(s))+0.999999) - 1
		return s[min(max(i, 0), len(s)-1)]
	}
	return at(0.50), at(0.99), s[len(s)-1]
}

func revoke(ctx context.Context, t *testing.T, name string, spec v1alpha1.RevocationEntrySpec) {
	t.Helper()
	if spec.Reason == "" {
		spec.Reason = "e2e"
	}
	re := &v1alpha1.RevocationEntry{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}, Spec: spec}
	if err := k8s.Create(ctx, re); err != nil {
		t.Fatal(err)
	}
}

func ptr[T any](v T) *T { return &v }

func headerOf(body []byte, name string) string {
	var seen struct {
		Headers map[string][]string `json:"headers"`
	}
	if err := json.Unmarshal(body, &seen); err != nil {
		return ""
	}
	for k, v := range seen.Headers {
		if strings.EqualFold(k, name) && len(v) > 0 {
			return v[0]
		}
	}
	return ""
}

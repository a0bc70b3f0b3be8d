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

package e2e

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwk"
	appsv1 "k8s.io/api/apps/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/keyward-dev/keyward/api/v1alpha1"
	"github.com/keyward-dev/keyward/internal/jwks"
	"github.com/keyward-dev/keyward/internal/mint"
)

func intOrName(s string) intstr.IntOrString { return intstr.FromString(s) }

// An annotated Deployment gets the sidecar through real admission; requests without a
// token get 401, forged ones 401, valid ones reach the app with the identity headers.
func TestInjectedSidecarAuthenticates(t *testing.T) {
	ctx := context.Background()
	pods := &corev1.PodList{}
	if err := k8s.List(ctx, pods, client.InNamespace(ns), client.MatchingLabels{"app": "echo-watch"}); err != nil {
		t.Fatal(err)
	}
	for _, p := range pods.Items {
		if len(p.Spec.InitContainers) == 0 || p.Spec.InitContainers[0].Name != "keyward-verifier" {
			t.Fatalf("pod %s has no injected sidecar", p.Name)
		}
		if p.Annotations["auth.keyward.dev/injected"] == "" {
			t.Fatalf("pod %s lacks the injected mark", p.Name)
		}
	}
	s, err := loadSigner(ctx)
	if err != nil {
		t.Fatal(err)
	}
	forged := forgedSigner(t, s.KID()) // same kid, another key
	for _, ip := range append(podIPs(t, "echo-watch"), podIPs(t, "echo-file")...) {
		code, hdr, _, err := get(ip, "/orders", "")
		if err != nil || code != http.StatusUnauthorized || !strings.HasPrefix(hdr.Get("WWW-Authenticate"), "Bearer") {
			t.Fatalf("%s without a token: %d %v %v", ip, code, hdr, err)
		}
		if code, _, _, err := get(ip, "/orders", forged.token("")); err != nil || code != http.StatusUnauthorized {
			t.Fatalf("%s with a forged token: %d %v", ip, code, err)
		}
		if code, _, _, err := get(ip, "/healthz", ""); err != nil || code != http.StatusOK {
			t.Fatalf("%s anonymous route: %d %v", ip, code, err)
		}
		code, _, body, err := get(ip, "/orders", s.token(""))
		if err != nil || code != http.StatusOK {
			t.Fatalf("%s with a valid token: %d %v", ip, code, err)
		}
		if got := headerOf(body, "X-Keyward-Subject"); got != "alice" {
			t.Fatalf("%s: X-Keyward-Subject = %q; the app saw %s", ip, got, body)
		}
		if got := headerOf(body, "X-User-Email"); got != "alice@example.test" {
			t.Fatalf("%s: X-User-Email = %q", ip, got)
		}
		// Port 8080 is the application's, bound to the pod's loopback: not reachable.
		if resp, err := httpClient.Get(fmt.Sprintf("http://%s:8080/", ip)); err == nil {
			resp.Body.Close()
			t.Fatalf("%s:8080 answered %d: the application is reachable around the sidecar", ip, resp.StatusCode)
		}
	}
	// Through the Service: its named targetPort now points at the sidecar.
	svc := &corev1.Service{}
	if err := k8s.Get(ctx, types.NamespacedName{Namespace: ns, Name: "echo-watch"}, svc); err != nil {
		t.Fatal(err)
	}
	url := fmt.Sprintf("http://%s/orders", svc.Spec.ClusterIP)
	// kube-proxy programs the Service's rules a moment after the pods are Ready: retry
	// connection errors (not statuses) for a while.
	var code int
	if err := waitFor(30*time.Second, func() bool {
		var derr error
		code, derr = status(url, "")
		return derr == nil
	}); err != nil {
		t.Fatalf("the Service %s never answered: %v", url, err)
	}
	if code != http.StatusUnauthorized {
		t.Fatalf("Service without a token: %d", code)
	}
	if code, err := status(url, s.token("")); err != nil || code != http.StatusOK {
		t.Fatalf("Service with a valid token: %d %v", code, err)
	}
}

// status GETs url with an optional bearer token and returns the status code.
func status(url, token string) (int, error) {
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		return 0, err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode, nil
}

// forgedSigner signs with a fresh key under someone else's kid.
func forgedSigner(t *testing.T, kid string) *signer {
	t.Helper()
	k, err := jwks.Generate(jwks.AlgES256, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := k.Set(jwk.KeyIDKey, kid); err != nil {
		t.Fatal(err)
	}
	s, err := mint.New(k)
	if err != nil {
		t.Fatal(err)
	}
	return &signer{s}
}

// Rotation under continuous load: at least three rotations of a fake-fast SigningKey
// (period 1m, pre-publication 25s), with the leading manager pod deleted while a key is
// pre-published. Tokens are minted with the key the Secret says is active, as the token
// service does. Not one valid request may be rejected.
func TestRotationUnderLoad(t *testing.T) {
	ctx := context.Background()
	ips := append(podIPs(t, "echo-watch"), podIPs(t, "echo-file")...)
	first, err := loadSigner(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var cur atomic.Pointer[signer]
	cur.Store(first)
	kids := []string{first.KID()}
	stop := make(chan struct{})
	var sent, rejected, failed atomic.Int64
	var mu sync.Mutex
	var rejections []string
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				s := cur.Load()
				ip := ips[(i+w)%len(ips)]
				code, _, _, err := get(ip, "/", s.token(""))
				sent.Add(1)
				switch {
				case err != nil:
					failed.Add(1)
				case code != http.StatusOK:
					rejected.Add(1)
					mu.Lock()
					rejections = append(rejections, fmt.Sprintf("%s kid %s: %d", ip, s.KID(), code))
					mu.Unlock()
				}
			}
		}()
	}
	restarted := false
	deadline := time.Now().Add(6 * time.Minute)
	for len(kids) < 4 && time.Now().Before(deadline) {
		time.Sleep(200 * time.Millisecond)
		s, err := loadSigner(ctx)
		if err != nil {
			t.Logf("reading the signing key: %v", err)
			continue
		}
		if s.KID() != kids[len(kids)-1] {
			kids = append(kids, s.KID())
			t.Logf("rotation %d: kid %s active after %d requests", len(kids)-1, s.KID(), sent.Load())
		}
		cur.Store(s)
		if !restarted && len(kids) == 2 && pendingKey(ctx, t) {
			leader := deleteLeader(ctx, t)
			restarted = true
			t.Logf("deleted the leading manager pod %s while a key was pre-published", leader)
		}
	}
	// Keep the load on for a while with the last key.
	time.Sleep(5 * time.Second)
	close(stop)
	wg.Wait()
	reportf(t, "rotation under load: %d rotations (kids %v), manager leader deleted mid-rotation: %v, %d requests, %d valid rejected, %d transport errors",
		len(kids)-1, kids, restarted, sent.Load(), rejected.Load(), failed.Load())
	if len(kids) < 4 {
		t.Fatalf("only %d rotations within the deadline", len(kids)-1)
	}
	if !restarted {
		t.Fatal("the manager was never restarted mid-rotation")
	}
	if rejected.Load() != 0 || failed.Load() != 0 {
		t.Fatalf("%d valid requests rejected, %d failed; first: %v", rejected.Load(), failed.Load(), rejections[:min(len(rejections), 10)])
	}
}

func pendingKey(ctx context.Context, t *testing.T) bool {
	sk := &v1alpha1.SigningKey{}
	if err := k8s.Get(ctx, types.NamespacedName{Namespace: ns, Name: keysName}, sk); err != nil {
		t.Logf("reading the SigningKey: %v", err)
		return false
	}
	for _, k := range sk.Status.Keys {
		if k.State == "Pending" {
			return true
		}
	}
	return false
}

// deleteLeader deletes the manager pod that holds the leader Lease.
func deleteLeader(ctx context.Context, t *testing.T) string {
	t.Helper()
	lease := &coordinationv1.Lease{}
	if err := k8s.Get(ctx, types.NamespacedName{Namespace: operatorNS, Name: "keyward-manager.auth.keyward.dev"}, lease); err != nil {
		t.Fatal(err)
	}
	holder := ""
	if lease.Spec.HolderIdentity != nil {
		holder = strings.SplitN(*lease.Spec.HolderIdentity, "_", 2)[0]
	}
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: operatorNS, Name: holder}}
	if err := k8s.Delete(ctx, pod); err != nil {
		t.Fatalf("deleting leader pod %q: %v", holder, err)
	}
	return holder
}

// Revocation propagation, watch mode: ≥ 50 RevocationEntries, one after the other, each
// timed from its creation until every watch-mode sidecar rejects the token.
func TestRevocationPropagationWatch(t *testing.T) {
	ctx := context.Background()
	ips := podIPs(t, "echo-watch")
	const n = 50
	var delays []time.Duration
	for i := range n {
		s, err := loadSigner(ctx)
		if err != nil {
			t.Fatal(err)
		}
		jti := fmt.Sprintf("watch-%d-%d", time.Now().Unix(), i)
		tok := s.token(jti)
		if err := waitAccepted(ips, tok, 30*time.Second); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		revoke(ctx, t, fmt.Sprintf("watch-%d", i), v1alpha1.RevocationEntrySpec{JTI: jti})
		d, err := waitRejected(ips, tok, start, 60*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		delays = append(delays, d)
	}
	p50, p99, mx := percentiles(delays)
	reportf(t, "revocation propagation, watch mode, %d entries x %d sidecars: p50 %s, p99 %s, max %s (target p99 < 2s)",
		n, len(ips), p50.Round(time.Millisecond), p99.Round(time.Millisecond), mx.Round(time.Millisecond))
}

// Revocation propagation, file mode: the kubelet refreshes the mounted ConfigMap on its
// sync loop, so the entries are created 200 ms apart and timed concurrently.
func TestRevocationPropagationFile(t *testing.T) {
	ctx := context.Background()
	ips := podIPs(t, "echo-file")
	const n = 50
	s, err := loadSigner(ctx)
	if err != nil {
		t.Fatal(err)
	}
	delays := make([]time.Duration, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		jti := fmt.Sprintf("file-%d-%d", time.Now().Unix(), i)
		tok := s.token(jti)
		if err := waitAccepted(ips, tok, 30*time.Second); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		revoke(ctx, t, fmt.Sprintf("file-%d", i), v1alpha1.RevocationEntrySpec{JTI: jti})
		wg.Add(1)
		go func() {
			defer wg.Done()
			delays[i], errs[i] = waitRejected(ips, tok, start, 3*time.Minute)
		}()
		time.Sleep(200 * time.Millisecond)
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	p50, p99, mx := percentiles(delays)
	reportf(t, "revocation propagation, file mode, %d entries x %d sidecars, kubelet syncFrequency %s: p50 %s, p99 %s, max %s",
		n, len(ips), envOr("KUBELET_SYNC_FREQUENCY", "10s"), p50.Round(time.Millisecond), p99.Round(time.Millisecond), mx.Round(time.Millisecond))
}

// Emergency key revocation: a RevocationEntry for the active kid withdraws the key; timed
// until every sidecar (watch and file mode) rejects a token it signed.
func TestEmergencyKeyRevocation(t *testing.T) {
	ctx := context.Background()
	watchIPs, fileIPs := podIPs(t, "echo-watch"), podIPs(t, "echo-file")
	const n = 5
	var watchD, fileD []time.Duration
	for i := range n {
		s, err := loadSigner(ctx)
		if err != nil {
			t.Fatal(err)
		}
		tok := s.token("")
		// A key that signs at once (the emergency replacement) may not be in the file-mode
		// sidecars yet: wait until all of them accept it.
		if err := waitAccepted(append(watchIPs, fileIPs...), tok, 90*time.Second); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		revoke(ctx, t, fmt.Sprintf("key-%d", i), v1alpha1.RevocationEntrySpec{KeyID: s.KID(), Reason: "e2e: key exposed"})
		var wd, fd time.Duration
		var werr, ferr error
		var wg sync.WaitGroup
		wg.Add(2)
		go func() { defer wg.Done(); wd, werr = waitRejected(watchIPs, tok, start, time.Minute) }()
		go func() { defer wg.Done(); fd, ferr = waitRejected(fileIPs, tok, start, 3*time.Minute) }()
		wg.Wait()
		if werr != nil || ferr != nil {
			t.Fatalf("watch: %v; file: %v", werr, ferr)
		}
		watchD, fileD = append(watchD, wd), append(fileD, fd)
		// The SigningKey replaces the withdrawn key with one that signs at once.
		if err := waitFor(30*time.Second, func() bool {
			ns, err := loadSigner(ctx)
			return err == nil && ns.KID() != s.KID()
		}); err != nil {
			t.Fatalf("no new active key after withdrawing %s", s.KID())
		}
	}
	p50, _, mx := percentiles(watchD)
	fp50, _, fmx := percentiles(fileD)
	reportf(t, "emergency key revocation, %d keys: watch mode (%d sidecars) p50 %s, max %s; file mode (%d sidecar) p50 %s, max %s",
		n, len(watchIPs), p50.Round(time.Millisecond), mx.Round(time.Millisecond), len(fileIPs), fp50.Round(time.Millisecond), fmx.Round(time.Millisecond))
}

func waitFor(timeout time.Duration, cond func() bool) error {
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			return fmt.Errorf("timed out after %s", timeout)
		}
		time.Sleep(200 * time.Millisecond)
	}
	return nil
}

// The operator down (the webhook's pods gone), as docs/injection.md says: opted-in pods
// cannot be created (failurePolicy Fail: never a pod without its sidecar), other pods can;
// running sidecars keep enforcing the bundle in force; a revocation waits for the operator
// and is enforced once it is back.
func TestOperatorDown(t *testing.T) {
	ctx := context.Background()
	ips := podIPs(t, "echo-watch")
	scale(ctx, t, 0)
	restored := false
	defer func() {
		if !restored {
			scale(ctx, t, -1)
		}
	}()
	if err := waitFor(2*time.Minute, func() bool { return managerPods(ctx, t) == 0 }); err != nil {
		t.Fatal("the manager pods did not go away")
	}
	pod := echoDeployment("late", 1, "watch").Spec.Template
	late := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "late", Namespace: ns, Annotations: pod.Annotations}, Spec: pod.Spec}
	err := k8s.Create(ctx, late)
	if err == nil || !strings.Contains(err.Error(), "inject.auth.keyward.dev") {
		t.Fatalf("an opted-in pod was admitted without the webhook: %v", err)
	}
	t.Logf("opted-in pod refused while the webhook is down: %v", err)
	other := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "unrelated", Namespace: "default"}, Spec: *pod.Spec.DeepCopy()}
	if err := k8s.Create(ctx, other); err != nil {
		t.Fatalf("a pod outside the injection namespaces was refused: %v", err)
	}
	defer k8s.Delete(ctx, other)

	s, err := loadSigner(ctx)
	if err != nil {
		t.Fatal(err)
	}
	tok := s.token("")
	if err := waitAccepted(ips, tok, 10*time.Second); err != nil {
		t.Fatalf("sidecars stopped serving with the operator down: %v", err)
	}
	jti := fmt.Sprintf("down-%d", time.Now().Unix())
	revoked := s.token(jti)
	revoke(ctx, t, "while-down", v1alpha1.RevocationEntrySpec{JTI: jti})
	time.Sleep(3 * time.Second)
	if err := waitAccepted(ips, revoked, 5*time.Second); err != nil {
		t.Fatalf("a revocation was enforced with no operator to publish it? %v", err)
	}
	start := time.Now()
	scale(ctx, t, -1)
	restored = true
	d, err := waitRejected(ips, revoked, start, 3*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	reportf(t, "operator down: opted-in pod creation refused, other pods admitted, sidecars kept serving; revocation made while down enforced %s after scaling the manager back up",
		d.Round(100*time.Millisecond))
	if err := waitDeploymentReadyIn(ctx, operatorNS, managerDeployment(ctx, t), 3*time.Minute); err != nil {
		t.Fatal(err)
	}
	if err := k8s.Create(ctx, late); err != nil {
		t.Fatalf("opted-in pod refused after the operator came back: %v", err)
	}
	_ = k8s.Delete(ctx, late)
}

var savedReplicas int32 = 1

func managerDeployment(ctx context.Context, t *testing.T) string {
	t.Helper()
	list := &appsv1.DeploymentList{}
	if err := k8s.List(ctx, list, client.InNamespace(operatorNS)); err != nil {
		t.Fatal(err)
	}
	for _, d := range list.Items {
		for _, c := range d.Spec.Template.Spec.Containers {
			if c.Name == "manager" {
				return d.Name
			}
		}
	}
	t.Fatalf("no manager Deployment in %s", operatorNS)
	return ""
}

// scale sets the manager's replicas; -1 restores the saved count.
func scale(ctx context.Context, t *testing.T, replicas int32) {
	t.Helper()
	d := &appsv1.Deployment{}
	if err := k8s.Get(ctx, types.NamespacedName{Namespace: operatorNS, Name: managerDeployment(ctx, t)}, d); err != nil {
		t.Fatal(err)
	}
	if replicas < 0 {
		replicas = savedReplicas
	} else {
		savedReplicas = *d.Spec.Replicas
	}
	patch := client.MergeFrom(d.DeepCopy())
	d.Spec.Replicas = &replicas
	if err := k8s.Patch(ctx, d, patch); err != nil {
		t.Fatal(err)
	}
}

func managerPods(ctx context.Context, t *testing.T) int {
	pods := &corev1.PodList{}
	if err := k8s.List(ctx, pods, client.InNamespace(operatorNS)); err != nil && !apierrors.IsNotFound(err) {
		t.Fatal(err)
	}
	n := 0
	for _, p := range pods.Items {
		for _, c := range p.Spec.Containers {
			if c.Name == "manager" {
				n++
			}
		}
	}
	return n
}

func waitDeploymentReadyIn(ctx context.Context, namespace, name string, timeout time.Duration) error {
	return waitFor(timeout, func() bool {
		d := &appsv1.Deployment{}
		if err := k8s.Get(ctx, types.NamespacedName{Namespace: namespace, Name: name}, d); err != nil {
			return false
		}
		return d.Spec.Replicas != nil && d.Status.ReadyReplicas == *d.Spec.Replicas && d.Status.UpdatedReplicas == *d.Spec.Replicas
	})
}

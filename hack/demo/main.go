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

// Command demo narrates Keyward on a cluster where hack/demo.sh installed it and the
// sample in hack/demo/manifests.yaml: requests through the injected sidecar, a key
// rotation under load, a revocation and how long it took to be enforced.
//
// Tokens are minted here from the SigningKey's Secret with the admin credentials, the way
// the token service does; the demo stands in for it.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwk"

	"github.com/keyward-dev/keyward/internal/jwks"
	"github.com/keyward-dev/keyward/internal/mint"
)

const (
	ns       = "keyward-demo"
	issuer   = "https://auth.demo.keyward.test"
	audience = "echo"
	localURL = "http://127.0.0.1:18080"
)

var kubectlBin = envOr("KUBECTL", "kubectl")

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "demo failed:", err)
		os.Exit(1)
	}
}

func step(format string, args ...any) { fmt.Printf("\n\033[1m==> "+format+"\033[0m\n", args...) }

func kubectl(args ...string) (string, error) {
	out, err := exec.Command(kubectlBin, args...).CombinedOutput()
	return string(out), err
}

// show runs kubectl and prints the command and its output.
func show(args ...string) {
	fmt.Printf("$ kubectl %s\n", strings.Join(args, " "))
	out, err := kubectl(args...)
	fmt.Print(out)
	if err != nil {
		fmt.Println("  (", err, ")")
	}
}

func jsonpath(kind, name, path string) string {
	out, _ := kubectl("get", "-n", ns, kind, name, "-o", "jsonpath={"+path+"}")
	return strings.TrimSpace(out)
}

func waitFor(what string, timeout time.Duration, cond func() bool) error {
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			return fmt.Errorf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(250 * time.Millisecond)
	}
	return nil
}

type signer struct{ *mint.Signer }

// loadSigner reads the active key from the SigningKey Secret.
func loadSigner() (*signer, error) {
	out, err := kubectl("get", "secret", "-n", ns, "demo-keys-keys", "-o", "json")
	if err != nil {
		return nil, fmt.Errorf("reading the signing Secret: %w: %s", err, out)
	}
	var secret struct {
		Data map[string][]byte `json:"data"`
	}
	if err := json.Unmarshal([]byte(out), &secret); err != nil {
		return nil, err
	}
	s, err := mint.FromSecret(secret.Data)
	if err != nil {
		return nil, err
	}
	return &signer{s}, nil
}

func (s *signer) token(jti, scope string) string {
	now := time.Now()
	c := map[string]any{"iss": issuer, "aud": audience, "sub": "alice", "email": "alice@example.test",
		"jti": jti, "iat": now.Unix() - 1, "exp": now.Add(5 * time.Minute).Unix()}
	if scope != "" {
		c["scope"] = scope
	}
	tok, err := s.Sign(c, "at+jwt")
	if err != nil {
		panic(err)
	}
	return tok
}

var client = &http.Client{Timeout: 5 * time.Second}

func request(path, token string) (int, string, http.Header) {
	req, _ := http.NewRequest(http.MethodGet, localURL+path, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, err.Error(), nil
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body), resp.Header
}

func call(what, path, token string) int {
	code, body, hdr := request(path, token)
	fmt.Printf("  %-44s → %d", what, code)
	if v := hdr.Get("WWW-Authenticate"); v != "" {
		fmt.Printf("  WWW-Authenticate: %s", v)
	}
	fmt.Println()
	if code == http.StatusOK && strings.Contains(body, "X-Keyward-Subject") {
		var seen struct {
			Headers map[string][]string `json:"headers"`
		}
		_ = json.Unmarshal([]byte(body), &seen)
		fmt.Printf("    the app saw X-Keyward-Subject=%v X-User-Email=%v\n", seen.Headers["X-Keyward-Subject"], seen.Headers["X-User-Email"])
	}
	return code
}

func run() error {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	step("The sample: a SigningKey, a TokenPolicy and an echo app with the injection annotations")
	show("get", "-n", ns, "signingkeys,tokenpolicies")
	show("get", "pods", "-n", ns, "-l", "app=echo", "-o",
		`custom-columns=POD:.metadata.name,SIDECAR:.spec.initContainers[0].name,RESTART:.spec.initContainers[0].restartPolicy,APP:.spec.containers[0].name,READY:.status.conditions[?(@.type=="Ready")].status`)

	pf := exec.CommandContext(ctx, kubectlBin, "port-forward", "-n", ns, "svc/echo", "18080:80")
	if err := pf.Start(); err != nil {
		return err
	}
	defer func() { cancel(); _ = pf.Wait() }()
	if err := waitFor("kubectl port-forward", 30*time.Second, func() bool { c, _, _ := request("/healthz", ""); return c == http.StatusOK }); err != nil {
		return err
	}

	s, err := loadSigner()
	if err != nil {
		return err
	}
	forgedKey, err := jwks.Generate(jwks.AlgES256, 0) // a key of our own under the real kid
	if err != nil {
		return err
	}
	if err := forgedKey.Set(jwk.KeyIDKey, s.KID()); err != nil {
		return err
	}
	fs, err := mint.New(forgedKey)
	if err != nil {
		return err
	}
	forged := &signer{fs}

	step("Requests through the sidecar (Service echo → port-forward %s)", localURL)
	call("GET /orders without a token", "/orders", "")
	call("GET /orders with a forged token (same kid)", "/orders", forged.token("forged", ""))
	call("GET /orders with a valid token", "/orders", s.token("demo-1", ""))
	call("GET /admin/users without the admin scope", "/admin/users", s.token("demo-2", ""))
	call("GET /admin/users with scope admin", "/admin/users", s.token("demo-3", "admin"))

	step("Rotation under load: 4 clients keep calling while the key rotates (pre-published 20 s)")
	var cur atomic.Pointer[signer]
	cur.Store(s)
	var sent, failed atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				code, _, _ := request("/orders", cur.Load().token(fmt.Sprintf("load-%d", i), ""))
				sent.Add(1)
				if code != http.StatusOK {
					failed.Add(1)
				}
			}
		}()
	}
	show("patch", "signingkey", "-n", ns, "demo-keys", "--type=merge", "-p",
		fmt.Sprintf(`{"spec":{"rotationRequest":%q}}`, time.Now().UTC().Format(time.RFC3339)))
	_ = waitFor("the pending key", 30*time.Second, func() bool {
		return strings.Contains(jsonpath("signingkey", "demo-keys", ".status.keys[*].state"), "Pending")
	})
	show("get", "signingkey", "-n", ns, "demo-keys", "-o", `jsonpath={range .status.keys[*]}{.kid}{"\t"}{.state}{"\n"}{end}`)
	fmt.Println("  … the new key is in every JWKS and bundle; it signs once pre-publication ends")
	if err := waitFor("the new key to sign", 2*time.Minute, func() bool {
		n, err := loadSigner()
		if err == nil && n.KID() != s.KID() {
			cur.Store(n)
			return true
		}
		return false
	}); err != nil {
		return err
	}
	time.Sleep(5 * time.Second)
	close(stop)
	wg.Wait()
	show("get", "signingkey", "-n", ns, "demo-keys", "-o", `jsonpath={range .status.keys[*]}{.kid}{"\t"}{.state}{"\n"}{end}`)
	fmt.Printf("  %d requests during the rotation, %d rejected\n", sent.Load(), failed.Load())
	if failed.Load() != 0 {
		return fmt.Errorf("%d requests failed during the rotation", failed.Load())
	}
	call("GET /orders with a token of the old key", "/orders", s.token("old-key", ""))

	step("Revocation: one token's jti is revoked; how long until the sidecar rejects it")
	n := cur.Load()
	jti := fmt.Sprintf("demo-revoke-%d", time.Now().Unix())
	tok := n.token(jti, "")
	call("GET /orders before the revocation", "/orders", tok)
	entry := fmt.Sprintf(`{"apiVersion":"auth.keyward.dev/v1alpha1","kind":"RevocationEntry","metadata":{"name":%q,"namespace":%q},"spec":{"jti":%q,"reason":"demo: token leaked"}}`, jti, ns, jti)
	start := time.Now()
	apply := exec.Command(kubectlBin, "apply", "-f", "-")
	apply.Stdin = strings.NewReader(entry)
	if out, err := apply.CombinedOutput(); err != nil {
		return fmt.Errorf("kubectl apply: %w: %s", err, out)
	}
	if err := waitFor("the revocation to be enforced", 2*time.Minute, func() bool { c, _, _ := request("/orders", tok); return c == http.StatusUnauthorized }); err != nil {
		return err
	}
	fmt.Printf("  revoked: enforced by the sidecar %s after kubectl apply\n", time.Since(start).Round(time.Millisecond))
	call("GET /orders after the revocation", "/orders", tok)
	call("GET /orders with another token", "/orders", n.token("other", ""))

	step("Where to look")
	show("get", "-n", ns, "signingkeys,tokenpolicies,revocationentries")
	show("get", "events", "-n", ns, "--field-selector", "involvedObject.kind=SigningKey", "-o", "custom-columns=REASON:.reason,MESSAGE:.message")
	fmt.Println(`
  kubectl describe signingkey -n keyward-demo demo-keys    keys, states, Events
  kubectl get tokenpolicy -n keyward-demo demo -o yaml      bundle generation and hash
  kubectl -n keyward-system port-forward deploy/keyward-manager 8080 & curl -s localhost:8080/metrics | grep keyward_operator_
  kubectl -n keyward-demo port-forward deploy/echo 15090 & curl -s localhost:15090/metrics | grep keyward_verifier_`)
	return nil
}

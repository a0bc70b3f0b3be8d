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

// Command demo is the interim `make demo`: it starts a real kube-apiserver and etcd
// (envtest binaries from bin/k8s), runs the manager binary against them, applies the
// samples from config/samples with kubectl and shows a rotation, a revocation and the
// verifier bundle the sidecar will read. The full demo (a single-node cluster with the
// sidecar in front of a sample app) replaces it with the injection and Helm issue.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"time"

	"sigs.k8s.io/controller-runtime/pkg/envtest"
)

var kubeconfig string

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

func step(format string, args ...any) { fmt.Printf("\n\033[1m==> "+format+"\033[0m\n", args...) }

func kubectl(args ...string) (string, error) {
	cmd := exec.Command(filepath.Join(os.Getenv("KUBEBUILDER_ASSETS"), "kubectl"), args...)
	cmd.Env = append(os.Environ(), "KUBECONFIG="+kubeconfig)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func show(args ...string) {
	fmt.Println("$ kubectl " + strings.Join(args, " "))
	out, err := kubectl(args...)
	fmt.Print(out)
	if err != nil {
		fmt.Println("(error:", err, ")")
	}
}

func waitFor(what string, timeout time.Duration, cond func() bool) error {
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			return fmt.Errorf("timed out waiting for %s", what)
		}
		time.Sleep(time.Second)
	}
	return nil
}

func jsonpath(kind, name, path string) string {
	out, _ := kubectl("get", kind, name, "-o", "jsonpath={"+path+"}")
	return strings.TrimSpace(out)
}

func run() error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	step("Starting kube-apiserver %s and etcd (built from the Go module proxy into bin/k8s)", "v1.37.2")
	env := &envtest.Environment{CRDDirectoryPaths: []string{"config/crd/bases"}, ErrorIfCRDPathMissing: true}
	if _, err := env.Start(); err != nil {
		return err
	}
	defer env.Stop() //nolint:errcheck
	user, err := env.AddUser(envtest.User{Name: "demo", Groups: []string{"system:masters"}}, nil)
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "keyward-demo")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	kc, _ := user.KubeConfig()
	kubeconfig = filepath.Join(dir, "kubeconfig")
	if err := os.WriteFile(kubeconfig, kc, 0o600); err != nil {
		return err
	}

	step("Building and starting the Keyward manager")
	bin := filepath.Join(dir, "manager")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		return fmt.Errorf("building the manager: %w\n%s", err, out)
	}
	logPath := filepath.Join(dir, "manager.log")
	logFile, _ := os.Create(logPath)
	mgr := exec.CommandContext(ctx, bin, "--leader-elect=false", "--enable-webhook=false", "--metrics-bind-address=127.0.0.1:0", "--health-probe-bind-address=127.0.0.1:0")
	mgr.Env = append(os.Environ(), "KUBECONFIG="+kubeconfig)
	mgr.Stdout, mgr.Stderr = logFile, logFile
	if err := mgr.Start(); err != nil {
		return err
	}
	defer func() { _ = mgr.Process.Signal(os.Interrupt); _ = mgr.Wait() }()

	step("Applying config/samples: a SigningKey (period 2m, prePublish 30s), a TokenPolicy, a RevocationEntry")
	show("apply", "-k", "config/samples")
	if err := waitFor("the first key", time.Minute, func() bool { return jsonpath("signingkey", "web-keys", ".status.activeKeyID") != "" }); err != nil {
		return err
	}
	if err := waitFor("the bundle", time.Minute, func() bool { return jsonpath("tokenpolicy", "web", ".status.bundleGeneration") != "" }); err != nil {
		return err
	}
	show("get", "signingkeys,tokenpolicies,revocationentries")
	first := jsonpath("signingkey", "web-keys", ".status.activeKeyID")

	step("Manual rotation: the new key is published at once and signs 30 s later")
	show("patch", "signingkey", "web-keys", "--type=merge", "-p", fmt.Sprintf(`{"spec":{"rotationRequest":%q}}`, time.Now().UTC().Format(time.RFC3339)))
	if err := waitFor("the pending key", 30*time.Second, func() bool {
		return strings.Contains(jsonpath("signingkey", "web-keys", ".status.keys[*].state"), "Pending")
	}); err != nil {
		return err
	}
	show("get", "signingkey", "web-keys", "-o", "jsonpath={range .status.keys[*]}{.kid}{\"\\t\"}{.state}{\"\\n\"}{end}")
	fmt.Println("… waiting for pre-publication to end")
	if err := waitFor("the activation", 90*time.Second, func() bool {
		return jsonpath("signingkey", "web-keys", ".status.activeKeyID") != first
	}); err != nil {
		return err
	}
	show("get", "signingkey", "web-keys", "-o", "jsonpath={range .status.keys[*]}{.kid}{\"\\t\"}{.state}{\"\\n\"}{end}")
	show("get", "signingkeys")

	step("Revoking a leaked token id: it reaches the verifier bundle")
	gen := jsonpath("tokenpolicy", "web", ".status.bundleGeneration")
	re := `{"apiVersion":"auth.keyward.dev/v1alpha1","kind":"RevocationEntry","metadata":{"name":"leaked-token"},"spec":{"jti":"3f1c9a2e-demo","reason":"Token pasted in a public channel"}}`
	cmd := exec.Command(filepath.Join(os.Getenv("KUBEBUILDER_ASSETS"), "kubectl"), "create", "-f", "-")
	cmd.Env = append(os.Environ(), "KUBECONFIG="+kubeconfig)
	cmd.Stdin = strings.NewReader(re)
	out, err := cmd.CombinedOutput()
	fmt.Print(string(out))
	if err != nil {
		return err
	}
	if err := waitFor("the new bundle", 30*time.Second, func() bool { return jsonpath("tokenpolicy", "web", ".status.bundleGeneration") != gen }); err != nil {
		return err
	}
	show("get", "revocationentries", "-o", "wide")
	bundleJSON := jsonpath("configmap", "web-bundle", `.data.bundle\.json`)
	var doc struct {
		Format     string `json:"format"`
		Generation int64  `json:"generation"`
		Hash       string `json:"hash"`
		Content    struct {
			JWKS        struct{ Keys []struct{ Kid string } } `json:"jwks"`
			Revocations json.RawMessage                       `json:"revocations"`
		} `json:"content"`
	}
	if err := json.Unmarshal([]byte(bundleJSON), &doc); err != nil {
		return fmt.Errorf("bundle: %w", err)
	}
	fmt.Printf("bundle %s generation %d %s\n  keys: %d\n  revocations: %s\n", doc.Format, doc.Generation, doc.Hash, len(doc.Content.JWKS.Keys), doc.Content.Revocations)

	step("Events an operator on call sees")
	show("get", "events", "--sort-by=.metadata.creationTimestamp", "-o", "custom-columns=REASON:.reason,OBJECT:.involvedObject.name,MESSAGE:.message")
	fmt.Printf("\nManager log: %s (removed at exit). The sidecar, Helm chart and real-cluster demo come next.\n", logPath)
	return nil
}

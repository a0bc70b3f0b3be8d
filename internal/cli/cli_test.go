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

package cli

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/keyward-dev/keyward/api/v1alpha1"
	"github.com/keyward-dev/keyward/internal/bundle"
	"github.com/keyward-dev/keyward/internal/cli/clitest"
)

// The suite runs every command in process against a real kube-apiserver and etcd
// (envtest), with the three Keyward controllers running in a manager in this process
// (real clock), as main.go wires them.
var env *clitest.Env

func TestMain(m *testing.M) {
	var err error
	if env, err = clitest.Start("../.."); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if err := env.StartManager(); err != nil {
		fmt.Fprintln(os.Stderr, "starting the manager:", err)
		env.Stop()
		os.Exit(1)
	}
	code := m.Run()
	env.Stop()
	os.Exit(code)
}

// invocation is one run of kubectl-keyward.
type invocation struct {
	stdin   string
	tty     bool
	clock   clock.PassiveClock
	kubecfg string
}

type result struct {
	out, errOut string
	err         error
}

// code is the exit status the binary would return.
func (r result) code() int { return ExitCode(r.err, io.Discard) }

func (r result) String() string {
	return fmt.Sprintf("err=%v\nstdout:\n%s\nstderr:\n%s", r.err, r.out, r.errOut)
}

func (inv invocation) run(t *testing.T, args ...string) result {
	t.Helper()
	var out, errOut bytes.Buffer
	clk := inv.clock
	if clk == nil {
		clk = clock.RealClock{}
	}
	cmd := NewCommand(Options{
		IOStreams:  genericiooptions.IOStreams{In: strings.NewReader(inv.stdin), Out: &out, ErrOut: &errOut},
		Clock:      clk,
		IsTerminal: func(io.Reader) bool { return inv.tty },
		Version:    "test",
	})
	kc := inv.kubecfg
	if kc == "" {
		kc = env.Kubeconfig
	}
	cmd.SetArgs(append([]string{"--kubeconfig", kc}, args...))
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	err := cmd.ExecuteContext(ctx)
	return result{out: out.String(), errOut: errOut.String(), err: err}
}

// kw runs kubectl-keyward with the admin kubeconfig and no stdin.
func kw(t *testing.T, args ...string) result {
	t.Helper()
	return invocation{}.run(t, args...)
}

// mustKW runs a command that must succeed.
func mustKW(t *testing.T, args ...string) result {
	t.Helper()
	r := kw(t, args...)
	if r.err != nil {
		t.Fatalf("kubectl keyward %s: %s", strings.Join(args, " "), r)
	}
	return r
}

// fixture is a namespace with SigningKey web-keys trusted by TokenPolicies web (which
// signs with it) and admin, both rendered.
type fixture struct {
	ns     string
	issuer string
}

func newFixture(t *testing.T, prefix string, skSpec *v1alpha1.SigningKeySpec) fixture {
	t.Helper()
	f := fixture{ns: env.Namespace(t, prefix)}
	f.issuer = "https://auth.example.test/" + f.ns
	env.SigningKey(t, f.ns, "web-keys", skSpec)
	env.TokenPolicy(t, f.ns, "web", f.issuer, "api", "web-keys")
	env.TokenPolicy(t, f.ns, "admin", f.issuer, "admin-api", "web-keys")
	env.WaitPolicyReady(t, f.ns, "web")
	env.WaitPolicyReady(t, f.ns, "admin")
	return f
}

func (f fixture) signingKey(t *testing.T) *v1alpha1.SigningKey {
	t.Helper()
	sk := &v1alpha1.SigningKey{}
	if err := env.Client.Get(context.Background(), client.ObjectKey{Namespace: f.ns, Name: "web-keys"}, sk); err != nil {
		t.Fatal(err)
	}
	return sk
}

// bundle reads and decodes a policy's bundle ConfigMap, as a sidecar does.
func (f fixture) bundle(t *testing.T, policy string) *bundle.Bundle {
	t.Helper()
	cm := &corev1.ConfigMap{}
	if err := env.Client.Get(context.Background(), client.ObjectKey{Namespace: f.ns, Name: policy + "-bundle"}, cm); err != nil {
		t.Fatal(err)
	}
	b, err := bundle.Decode([]byte(cm.Data[bundle.DataKey]))
	if err != nil {
		t.Fatalf("decoding the bundle of %s: %v", policy, err)
	}
	return b
}

// jwksKIDs reads the kids of the SigningKey's JWKS ConfigMap.
func (f fixture) jwksKIDs(t *testing.T) string {
	t.Helper()
	cm := &corev1.ConfigMap{}
	if err := env.Client.Get(context.Background(), client.ObjectKey{Namespace: f.ns, Name: "web-keys-jwks"}, cm); err != nil {
		t.Fatal(err)
	}
	return cm.Data["jwks.json"]
}

func (f fixture) kw(t *testing.T, args ...string) result {
	t.Helper()
	return kw(t, append([]string{"-n", f.ns}, args...)...)
}

func (f fixture) mustKW(t *testing.T, args ...string) result {
	t.Helper()
	return mustKW(t, append([]string{"-n", f.ns}, args...)...)
}

// mint mints a token for the web policy and returns it.
func (f fixture) mint(t *testing.T, inv invocation, args ...string) string {
	t.Helper()
	r := inv.run(t, append([]string{"-n", f.ns, "mint", "--policy", "web"}, args...)...)
	if r.err != nil {
		t.Fatalf("mint: %s", r)
	}
	return strings.TrimSpace(r.out)
}

// inspect runs inspect with the token on stdin.
func (f fixture) inspect(t *testing.T, token string, args ...string) result {
	t.Helper()
	r := invocation{stdin: token}.run(t, append([]string{"-n", f.ns, "inspect"}, append(args, "-")...)...)
	assertNoToken(t, r, token)
	return r
}

// assertNoToken fails when output holds the token or its signature.
func assertNoToken(t *testing.T, r result, token string) {
	t.Helper()
	parts := strings.Split(token, ".")
	for _, s := range []string{r.out, r.errOut} {
		if strings.Contains(s, token) || (len(parts) == 3 && len(parts[2]) > 8 && strings.Contains(s, parts[2])) {
			t.Fatalf("the output shows the token or its signature:\n%s", r)
		}
	}
}

func wantContains(t *testing.T, what, s string, subs ...string) {
	t.Helper()
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			t.Fatalf("%s lacks %q:\n%s", what, sub, s)
		}
	}
}

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

package main

import (
	"context"
	"strings"
	"testing"

	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/keyward-dev/keyward/api/v1alpha1"
)

// kubectl finds and runs the plugin, passes its exit status through, and completes its
// arguments through kubectl_complete-keyward (kubectl 1.26+ plugin completion).
func TestKubectlPlugin(t *testing.T) {
	ns := env.Namespace(t, "plugin")
	env.SigningKey(t, ns, "web-keys", nil)
	env.TokenPolicy(t, ns, "web", "https://auth.example.test/"+ns, "api", "web-keys")
	env.TokenPolicy(t, ns, "admin", "https://auth.example.test/"+ns, "admin-api", "web-keys")
	env.WaitPolicyReady(t, ns, "web")
	sh := newShell(t, map[string]string{"NS": ns})

	wantContains(t, "plugin list", sh.must(t, "kubectl plugin list 2>&1"), "kubectl-keyward")
	if out := sh.must(t, "kubectl keyward version"); out != "kubectl-keyward dev\n" {
		t.Fatalf("version: %q", out)
	}
	wantContains(t, "help", sh.must(t, "kubectl keyward --help"), "kubectl keyward [command]", "Examples:", "revoke", "inspect")
	wantContains(t, "status", sh.must(t, `kubectl keyward status -n "$NS"`), "web-keys", "web-bundle")

	// Errors: kubectl style on stderr, exit status 1; a rejected token: exit status 1 and
	// no "error:" line (the verdict is the output).
	r := sh.run(t, `kubectl keyward rotate nope -n "$NS"`)
	if r.exit != 1 || !strings.Contains(r.stderr, `error: SigningKey "nope" not found`) {
		t.Fatalf("rotate of a missing SigningKey: %s", r)
	}
	r = sh.run(t, `echo not.a.token | kubectl keyward inspect -n "$NS" --policy web`)
	if r.exit != 1 || strings.Contains(r.stderr, "error:") || !strings.Contains(r.stdout, "REJECTED: base64") {
		t.Fatalf("inspect of garbage: %s", r)
	}

	sk := &v1alpha1.SigningKey{}
	if err := env.Client.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: "web-keys"}, sk); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		line string
		want []string
	}{
		{`kubectl __complete keyward ""`, []string{"status", "rotate", "revoke", "inspect", "mint"}},
		{`kubectl __complete keyward -n "$NS" rotate ""`, []string{"web-keys", ":4"}},
		{`kubectl __complete keyward -n "$NS" revoke session s-1 --policy ""`, []string{"admin", "web"}},
		{`kubectl __complete keyward -n "$NS" revoke key ""`, []string{sk.Status.ActiveKeyID}},
		{`kubectl __complete keyward -n "" `, []string{ns}},
	} {
		wantContains(t, tc.line, sh.must(t, tc.line), tc.want...)
	}
	// The standalone binary's own completion scripts.
	wantContains(t, "completion bash", sh.must(t, "kubectl-keyward completion bash"), "__start_kubectl-keyward")
}

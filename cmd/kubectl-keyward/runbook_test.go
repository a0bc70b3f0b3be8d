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
	"bufio"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/keyward-dev/keyward/api/v1alpha1"
	"github.com/keyward-dev/keyward/internal/bundle"
)

// runbookDir holds the runbooks; every one of them (but README.md) must have a test here.
const runbookDir = "../../docs/runbooks"

// block is a fenced code block of a runbook.
type block struct {
	info  string // "sh" blocks run; "sh cluster-only" blocks need a real cluster
	lines []string
}

// step is one command line of a runbook and what it did.
type step struct {
	line     string
	wantExit int
	result   stepResult
}

type runbook struct {
	name    string
	blocks  []block
	exports []string
	steps   []*step
}

var exitComment = regexp.MustCompile(`#.*\bexit status (\d+)`)

func loadRunbook(t *testing.T, name string) *runbook {
	t.Helper()
	f, err := os.Open(filepath.Join(runbookDir, name))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rb := &runbook{name: name}
	var cur *block
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		trimmed := strings.TrimSpace(line)
		switch {
		case cur == nil && strings.HasPrefix(trimmed, "```"):
			cur = &block{info: strings.TrimSpace(strings.TrimPrefix(trimmed, "```"))}
		case cur != nil && trimmed == "```":
			rb.blocks = append(rb.blocks, *cur)
			cur = nil
		case cur != nil:
			if n := len(cur.lines); n > 0 && strings.HasSuffix(cur.lines[n-1], "\\") {
				cur.lines[n-1] = strings.TrimSuffix(cur.lines[n-1], "\\") + " " + trimmed
			} else {
				cur.lines = append(cur.lines, trimmed)
			}
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if cur != nil {
		t.Fatalf("%s: unterminated code block", name)
	}
	return rb
}

// run executes every line of the runbook's sh blocks in order. hooks run when a
// cluster-only block containing their key is reached (the test plays that part).
func (rb *runbook) run(t *testing.T, sh *shell, hooks map[string]func()) {
	t.Helper()
	executed := 0
	for _, b := range rb.blocks {
		switch b.info {
		case "sh":
		case "sh cluster-only":
			for key, hook := range hooks {
				if strings.Contains(strings.Join(b.lines, "\n"), key) {
					hook()
					delete(hooks, key)
				}
			}
			continue
		default:
			continue
		}
		for _, line := range b.lines {
			if line == "" || strings.HasPrefix(line, "#") {
				continue
			}
			if name, ok := strings.CutPrefix(line, "export "); ok {
				name, _, _ = strings.Cut(name, "=")
				if _, set := sh.vars[name]; !set {
					t.Fatalf("%s sets %s, which the test does not provide", rb.name, name)
				}
				rb.exports = append(rb.exports, name)
				continue
			}
			s := &step{line: line}
			if m := exitComment.FindStringSubmatch(line); m != nil {
				s.wantExit, _ = strconv.Atoi(m[1])
			}
			s.result = sh.run(t, line)
			t.Logf("$ %s\n%s%s", line, s.result.stdout, s.result.stderr)
			if s.result.exit != s.wantExit {
				t.Fatalf("%s: %q exited %d, want %d:\n%s", rb.name, line, s.result.exit, s.wantExit, s.result)
			}
			rb.steps = append(rb.steps, s)
			executed++
		}
	}
	if executed == 0 {
		t.Fatalf("%s runs no command", rb.name)
	}
	for key := range hooks {
		t.Fatalf("%s has no cluster-only block with %q", rb.name, key)
	}
	for name := range sh.vars {
		if !slices.Contains(rb.exports, name) {
			t.Fatalf("%s does not list %s among its variables", rb.name, name)
		}
	}
}

// nth returns the n-th (from 1) step whose command starts with prefix.
func (rb *runbook) nth(t *testing.T, prefix string, n int) stepResult {
	t.Helper()
	for _, s := range rb.steps {
		if strings.HasPrefix(s.line, prefix) {
			if n--; n == 0 {
				return s.result
			}
		}
	}
	t.Fatalf("%s has no step %q (#%d)", rb.name, prefix, n)
	return stepResult{}
}

// incident is a namespace as the runbooks expect it: SigningKey web-keys trusted by the
// TokenPolicies web (which signs with it) and admin, and an incident responder bound to
// the Role documented in docs/kubectl-keyward.md.
type incident struct {
	ns, issuer string
	// responder is the kubeconfig of a user with exactly the responder Role.
	responder string
}

func newIncident(t *testing.T, extra ...rbacv1.PolicyRule) incident {
	t.Helper()
	in := incident{ns: env.Namespace(t, "runbook")}
	in.issuer = "https://auth.example.test/" + in.ns
	env.SigningKey(t, in.ns, "web-keys", nil)
	env.TokenPolicy(t, in.ns, "web", in.issuer, "api", "web-keys")
	env.TokenPolicy(t, in.ns, "admin", in.issuer, "admin-api", "web-keys")
	user := "responder-" + in.ns
	env.Grant(t, in.ns, user, append(responderRole(t).Rules, extra...)...)
	var err error
	if in.responder, err = env.KubeconfigFor(user); err != nil {
		t.Fatal(err)
	}
	env.WaitPolicyReady(t, in.ns, "web")
	env.WaitPolicyReady(t, in.ns, "admin")
	return in
}

// responderShell runs the runbook as the incident responder.
func (in incident) responderShell(t *testing.T, sh *shell, vars map[string]string) *shell {
	t.Helper()
	return &shell{dir: sh.dir, home: sh.home, vars: vars, kubeconfig: in.responder}
}

// responderRole is the Role of docs/kubectl-keyward.md, read from the page itself.
func responderRole(t *testing.T) *rbacv1.Role {
	t.Helper()
	doc, err := os.ReadFile("../../docs/kubectl-keyward.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, chunk := range strings.Split(string(doc), "```yaml\n")[1:] {
		body, _, _ := strings.Cut(chunk, "```")
		if !strings.Contains(body, "keyward-responder") {
			continue
		}
		role := &rbacv1.Role{}
		if err := yaml.UnmarshalStrict([]byte(body), role); err != nil {
			t.Fatalf("the responder Role of docs/kubectl-keyward.md: %v", err)
		}
		return role
	}
	t.Fatal("docs/kubectl-keyward.md has no keyward-responder Role")
	return nil
}

func (in incident) bundle(t *testing.T, policy string) *bundle.Bundle {
	t.Helper()
	cm := &corev1.ConfigMap{}
	if err := env.Client.Get(context.Background(), client.ObjectKey{Namespace: in.ns, Name: policy + "-bundle"}, cm); err != nil {
		t.Fatal(err)
	}
	b, err := bundle.Decode([]byte(cm.Data[bundle.DataKey]))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func (in incident) signingKey(t *testing.T) *v1alpha1.SigningKey {
	t.Helper()
	sk := &v1alpha1.SigningKey{}
	if err := env.Client.Get(context.Background(), client.ObjectKey{Namespace: in.ns, Name: "web-keys"}, sk); err != nil {
		t.Fatal(err)
	}
	return sk
}

// mint mints a token for the web policy through the plugin and saves it to a file.
func (in incident) mint(t *testing.T, sh *shell, file string, args string) string {
	t.Helper()
	sh.must(t, fmt.Sprintf(`kubectl keyward mint -n %s --policy web %s --out %s`, in.ns, args, file))
	return filepath.Join(sh.dir, file)
}

func holds(list []bundle.Revoked, value string) bool {
	return slices.ContainsFunc(list, func(e bundle.Revoked) bool { return e.Value == value })
}

func TestRunbooks(t *testing.T) {
	tests := map[string]func(t *testing.T){
		"token-compromise.md":     testTokenCompromise,
		"lost-device.md":          testLostDevice,
		"signing-key-exposure.md": testSigningKeyExposure,
		"operator-down.md":        testOperatorDown,
	}
	files, err := filepath.Glob(filepath.Join(runbookDir, "*.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		name := filepath.Base(f)
		if name == "README.md" {
			continue
		}
		test, ok := tests[name]
		if !ok {
			t.Errorf("runbook %s has no test", name)
			continue
		}
		t.Run(strings.TrimSuffix(name, ".md"), test)
	}
}

func testTokenCompromise(t *testing.T) {
	in := newIncident(t)
	sh := newShell(t, nil)
	tokenFile := in.mint(t, sh, "leaked.jwt", "--sub alice --jti jti-leaked-1 --sid s-leaked-1")
	sh = in.responderShell(t, sh, map[string]string{"NS": in.ns, "POLICY": "web", "TOKEN_FILE": tokenFile, "INCIDENT": "INC-42", "JTI": "jti-leaked-1", "SID": "s-leaked-1"})
	rb := loadRunbook(t, "token-compromise.md")
	rb.run(t, sh, nil)

	wantContains(t, "inspect before", rb.nth(t, "kubectl keyward inspect", 1).stdout, "ACCEPTED", `"jti": "jti-leaked-1"`, `"sid": "s-leaked-1"`)
	wantContains(t, "revoke token", rb.nth(t, "kubectl keyward revoke token", 1).stdout,
		"TokenPolicy web: bundle web-bundle generation", "TokenPolicy admin: bundle admin-bundle generation", "holds jti=jti-leaked-1")
	wantContains(t, "revoke session", rb.nth(t, "kubectl keyward revoke session", 1).stdout, "holds sid=s-leaked-1")
	wantContains(t, "inspect after", rb.nth(t, "kubectl keyward inspect", 2).stdout, "REJECTED: revoked (revoked by jti)", "INC-42: access token leaked")
	wantContains(t, "status", rb.nth(t, "kubectl keyward status", 1).stdout, "REVOCATIONS: 2 active (jti 1, sid 1)", "jti-leaked-1", "s-leaked-1")
	wantContains(t, "kubectl get", rb.nth(t, "kubectl get revocationentries", 1).stdout, "jti=jti-leaked-1", "sid=s-leaked-1")
	for _, p := range []string{"web", "admin"} {
		r := in.bundle(t, p).Content.Revocations
		if !holds(r.JTI, "jti-leaked-1") || !holds(r.Session, "s-leaked-1") {
			t.Fatalf("bundle of %s: %+v", p, r)
		}
	}
	// The responder did all this without access to the signing Secret.
	if r := sh.run(t, `kubectl keyward mint -n "$NS" --policy web --sub x`); r.exit != 1 || !strings.Contains(r.stderr, "permission denied") {
		t.Fatalf("mint as the responder: %s", r)
	}
}

func testLostDevice(t *testing.T) {
	// The runbook's last step mints a token "on a development cluster where you may read the
	// signing Secret": the responder gets exactly that for this runbook.
	in := newIncident(t, rbacv1.PolicyRule{APIGroups: []string{""}, Resources: []string{"secrets"}, ResourceNames: []string{"web-keys-keys"}, Verbs: []string{"get"}})
	sh := newShell(t, nil)
	device := in.mint(t, sh, "device.jwt", "--sub alice --sid s-phone")
	laptop := in.mint(t, sh, "laptop.jwt", "--sub alice --sid s-laptop")
	bob := in.mint(t, sh, "bob.jwt", "--sub bob --sid s-bob")
	time.Sleep(1100 * time.Millisecond) // the subject cut-off (whole seconds) falls after these tokens' iat
	sh = in.responderShell(t, sh, map[string]string{"NS": in.ns, "SID": "s-phone", "SUBJECT": "alice", "INCIDENT": "INC-43", "DEVICE_TOKEN_FILE": device})
	rb := loadRunbook(t, "lost-device.md")
	rb.run(t, sh, nil)

	wantContains(t, "revoke session", rb.nth(t, "kubectl keyward revoke session", 1).stdout, "holds sid=s-phone", "Every bundle in scope (2)")
	wantContains(t, "revoke subject", rb.nth(t, "kubectl keyward revoke subject", 1).stdout, "holds sub=alice")
	wantContains(t, "inspect device", rb.nth(t, "kubectl keyward inspect", 1).stdout, "REJECTED: revoked (revoked by sub)", "sub=alice")
	wantContains(t, "status", rb.nth(t, "kubectl keyward status", 1).stdout, "REVOCATIONS: 2 active (sub 1, sid 1)")
	wantContains(t, "inspect after", rb.nth(t, "kubectl keyward inspect", 2).stdout, "ACCEPTED")
	// The user's other device is out too (subject), another user is not.
	r := sh.run(t, `kubectl keyward inspect -n "$NS" --policy web - < `+laptop)
	if r.exit != 1 || !strings.Contains(r.stdout, "REJECTED: revoked (revoked by sub)") {
		t.Fatalf("the laptop's token after the subject revocation: %s", r)
	}
	if r := sh.run(t, `kubectl keyward inspect -n "$NS" --policy web - < `+bob); r.exit != 0 {
		t.Fatalf("another user's token: %s", r)
	}
}

func testSigningKeyExposure(t *testing.T) {
	in := newIncident(t)
	sh := newShell(t, nil)
	sample := in.mint(t, sh, "sample.jwt", "--sub alice")
	old := in.signingKey(t).Status.ActiveKeyID
	sh = in.responderShell(t, sh, map[string]string{"NS": in.ns, "SIGNING_KEY": "web-keys", "INCIDENT": "INC-44", "TOKEN_FILE": sample})
	rb := loadRunbook(t, "signing-key-exposure.md")
	rb.run(t, sh, nil)

	wantContains(t, "status before", rb.nth(t, "kubectl keyward status", 1).stdout, old, "Active")
	rotate := rb.nth(t, "kubectl keyward rotate", 1).stdout
	wantContains(t, "rotate --emergency", rotate, "EMERGENCY ROTATION", old, "web-bundle", "admin-bundle",
		`spec.emergencyRotationRequest="INC-44"`, "every old key is withdrawn")
	sk := in.signingKey(t)
	if sk.Status.ActiveKeyID == old || sk.Status.EmergencyRotationRequest != "INC-44" || len(sk.Status.Keys) != 1 {
		t.Fatalf("after the emergency rotation: %+v", sk.Status)
	}
	jwksOut := rb.nth(t, "kubectl get configmap", 1).stdout
	if strings.Contains(jwksOut, old) || !strings.Contains(jwksOut, sk.Status.ActiveKeyID) {
		t.Fatalf("JWKS after the emergency rotation: %s (old %s, new %s)", jwksOut, old, sk.Status.ActiveKeyID)
	}
	for _, p := range []string{"web", "admin"} {
		b := in.bundle(t, p)
		var kids []string
		for _, k := range b.Keys {
			kid, _ := k.KeyID()
			kids = append(kids, kid)
		}
		if slices.Contains(kids, old) || !slices.Contains(kids, sk.Status.ActiveKeyID) {
			t.Fatalf("bundle of %s holds %v (old %s, new %s)", p, kids, old, sk.Status.ActiveKeyID)
		}
	}
	wantContains(t, "status after", rb.nth(t, "kubectl keyward status", 2).stdout, sk.Status.ActiveKeyID)
	wantContains(t, "inspect", rb.nth(t, "kubectl keyward inspect", 1).stdout, "REJECTED: unknown_kid", "No SigningKey of the namespace publishes it")
}

func testOperatorDown(t *testing.T) {
	in := newIncident(t)
	sh := newShell(t, nil)
	tokenFile := in.mint(t, sh, "token.jwt", "--sub alice --jti jti-outage-1")
	sh = in.responderShell(t, sh, map[string]string{"NS": in.ns, "POLICY": "web", "JTI": "jti-outage-1", "TOKEN_FILE": tokenFile, "INCIDENT": "INC-45"})
	genBefore := in.bundle(t, "web").Generation

	if err := env.StopManager(); err != nil {
		t.Fatal(err)
	}
	restarted := false
	t.Cleanup(func() {
		if !restarted {
			_ = env.StartManager()
		}
	})
	rb := loadRunbook(t, "operator-down.md")
	rb.run(t, sh, map[string]func(){
		"rollout restart": func() {
			// Until here the operator was down: nothing rendered the revocation.
			if g := in.bundle(t, "web").Generation; g != genBefore {
				t.Fatalf("bundle generation %d during the outage, %d before", g, genBefore)
			}
			if err := env.StartManager(); err != nil {
				t.Fatal(err)
			}
			restarted = true
		},
	})

	wantContains(t, "revoke during the outage", rb.nth(t, "kubectl keyward revoke token", 1).stderr,
		"timed out waiting for the bundles", "TokenPolicy web: bundle generation "+strconv.FormatInt(genBefore, 10)+" does not hold it")
	wantContains(t, "status during the outage", rb.nth(t, "kubectl keyward status", 1).stdout,
		"pending", "NOTES", "is not processed yet: is the operator running?", "does not hold 1 revocation(s) in its scope (jti=jti-outage-1")
	wantContains(t, "inspect during the outage", rb.nth(t, "kubectl keyward inspect", 1).stdout, "ACCEPTED")
	wantContains(t, "revoke after the restart", rb.nth(t, "kubectl keyward revoke token", 2).stdout, "unchanged", "holds jti=jti-outage-1")
	wantContains(t, "inspect after the restart", rb.nth(t, "kubectl keyward inspect", 2).stdout, "REJECTED: revoked")
	if out := rb.nth(t, "kubectl keyward status", 2).stdout; strings.Contains(out, "NOTES") {
		t.Fatalf("status after the restart still has notes:\n%s", out)
	}
}

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

package chart_test

import (
	"fmt"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"

	"github.com/keyward-dev/keyward/internal/inject"
)

// TestContractNames: with the release named keyward, the objects carry the names the
// manager uses by default, and the flags say so too.
func TestContractNames(t *testing.T) {
	objs := renderObjects(t, renderArgs{})
	named(t, objs, "Service", "keyward-webhook")
	named(t, objs, "Service", "keyward-metrics")
	named(t, objs, "MutatingWebhookConfiguration", "keyward-injector")
	named(t, objs, "Deployment", "keyward-manager")
	args := managerArgs(t, objs)
	for flag, want := range map[string]string{
		"webhook-service":       "keyward-webhook",
		"webhook-configuration": "keyward-injector",
		"webhook-secret":        "keyward-webhook-cert",
	} {
		if args[flag] != want {
			t.Errorf("--%s=%q, want %q", flag, args[flag], want)
		}
	}
}

// TestNamesFlowToFlags: whatever the release name or overrides, the manager is told the
// names of the objects the chart actually created, and every reference between objects
// resolves.
func TestNamesFlowToFlags(t *testing.T) {
	helmBin(t)
	for _, c := range []struct {
		name string
		renderArgs
		prefix string
	}{
		{"keyward", renderArgs{}, "keyward"},
		{"other release", renderArgs{release: "kw", namespace: "auth"}, "kw-keyward"},
		{"release containing the chart name", renderArgs{release: "keyward-prod"}, "keyward-prod"},
		{"nameOverride", renderArgs{release: "kw", set: []string{"nameOverride=tokens"}}, "kw-tokens"},
		{"fullnameOverride", renderArgs{release: "kw", set: []string{"fullnameOverride=auth"}}, "auth"},
		{"long release name", renderArgs{release: strings.Repeat("r", 53)}, strings.Repeat("r", 53)},
	} {
		t.Run(c.name, func(t *testing.T) {
			objs := renderObjects(t, c.renderArgs)
			ns := c.namespace
			if ns == "" {
				ns = releaseNamespace
			}
			for _, o := range objs {
				if len(o.GetName()) > 63 && o.GetKind() != "CustomResourceDefinition" {
					t.Errorf("%s %s: name longer than 63 characters", o.GetKind(), o.GetName())
				}
				if !strings.HasPrefix(o.GetName(), c.prefix[:min(len(c.prefix), 40)]) && o.GetKind() != "CustomResourceDefinition" {
					t.Errorf("%s %s: name does not start with %q", o.GetKind(), o.GetName(), c.prefix)
				}
			}
			args := managerArgs(t, objs)
			svc := named(t, objs, "Service", args["webhook-service"])
			mwc := named(t, objs, "MutatingWebhookConfiguration", args["webhook-configuration"])
			hook := field[[]any](t, mwc, "webhooks")[0].(map[string]any)
			ref := hook["clientConfig"].(map[string]any)["service"].(map[string]any)
			if ref["name"] != svc.GetName() || ref["namespace"] != ns {
				t.Errorf("webhook clientConfig.service = %v, want %s/%s", ref, ns, svc.GetName())
			}
			if args["webhook-secret"] != c.prefix+"-webhook-cert" && len(c.prefix) < 40 {
				t.Errorf("--webhook-secret=%s, want %s-webhook-cert", args["webhook-secret"], c.prefix)
			}
			// The ClusterRole grants exactly the MutatingWebhookConfiguration the manager is told about.
			cr := one(t, objs, "ClusterRole")
			var names []any
			for _, r := range field[[]any](t, cr, "rules") {
				r := r.(map[string]any)
				if slices.Contains(r["resources"].([]any), any("mutatingwebhookconfigurations")) {
					names = r["resourceNames"].([]any)
				}
			}
			if !reflect.DeepEqual(names, []any{mwc.GetName()}) {
				t.Errorf("ClusterRole resourceNames for mutatingwebhookconfigurations = %v, want [%s]", names, mwc.GetName())
			}
			// Service selectors select the Deployment's pods; bindings name the ServiceAccount.
			dep := one(t, objs, "Deployment")
			podLabels := field[map[string]any](t, dep, "spec", "template", "metadata", "labels")
			for _, s := range find(objs, "Service") {
				for k, v := range field[map[string]any](t, s, "spec", "selector") {
					if podLabels[k] != v {
						t.Errorf("Service %s selects %s=%v, the manager pods have %v", s.GetName(), k, v, podLabels[k])
					}
				}
			}
			sa := field[string](t, dep, "spec", "template", "spec", "serviceAccountName")
			named(t, objs, "ServiceAccount", sa)
			for _, kind := range []string{"ClusterRoleBinding", "RoleBinding"} {
				b := one(t, objs, kind)
				subj := field[[]any](t, b, "subjects")[0].(map[string]any)
				if subj["name"] != sa || subj["namespace"] != ns {
					t.Errorf("%s subject %v, want ServiceAccount %s/%s", kind, subj, ns, sa)
				}
				roleRef := field[string](t, b, "roleRef", "name")
				named(t, objs, field[string](t, b, "roleRef", "kind"), roleRef)
			}
		})
	}
}

// TestManagerFlags: the flags of the shared contract, with the chart's defaults.
func TestManagerFlags(t *testing.T) {
	args := managerArgs(t, renderObjects(t, renderArgs{}))
	want := map[string]string{
		"leader-elect":               "true",
		"leader-election-namespace":  releaseNamespace,
		"metrics-bind-address":       ":8080",
		"health-probe-bind-address":  ":8081",
		"kube-api-qps":               "500",
		"kube-api-burst":             "1000",
		"workers":                    "4",
		"revocation-workers":         "16",
		"zap-log-level":              "info",
		"enable-webhook":             "true",
		"webhook-port":               "9443",
		"webhook-cert-dir":           "/tmp/k8s-webhook-server/serving-certs",
		"webhook-cert-mode":          "self",
		"webhook-secret":             "keyward-webhook-cert",
		"webhook-configuration":      "keyward-injector",
		"webhook-service":            "keyward-webhook",
		"verifier-image":             "ghcr.io/keyward-dev/keyward:" + chartAppVersion(t),
		"verifier-image-pull-policy": "IfNotPresent",
		"sidecar-cpu-request":        "10m",
		"sidecar-memory-request":     "32Mi",
		"sidecar-memory-limit":       "128Mi",
	}
	if !reflect.DeepEqual(args, want) {
		t.Errorf("manager flags\n got %v\nwant %v", args, want)
	}
	env := managerEnv(t, renderObjects(t, renderArgs{}))
	if _, ok := env["POD_NAMESPACE"]; !ok {
		t.Error("no POD_NAMESPACE in the manager's environment")
	}
}

// TestFlagsExist: every flag the chart passes, in every value set, is one the manager
// defines (in the root package; zap's come from controller-runtime).
func TestFlagsExist(t *testing.T) {
	helmBin(t)
	defined := map[string]bool{}
	files, err := filepath.Glob(filepath.Join(root, "*.go"))
	must(t, err, "listing the manager's sources")
	re := regexp.MustCompile(`Var\([^,]+,\s*"([a-z0-9-]+)"`)
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		for _, m := range re.FindAllStringSubmatch(readFile(t, f), -1) {
			defined[m[1]] = true
		}
	}
	for _, c := range cases {
		for name := range managerArgs(t, renderObjects(t, c.renderArgs)) {
			if !defined[name] && !strings.HasPrefix(name, "zap-") {
				t.Errorf("%s: the chart passes --%s, which the manager does not define", c.name, name)
			}
		}
	}
}

// TestChartVersion: Chart.yaml's version and appVersion are the Makefile's VERSION, the
// tag `make images` builds.
func TestChartVersion(t *testing.T) {
	m := regexp.MustCompile(`(?m)^VERSION\s*\?=\s*(\S+)$`).FindStringSubmatch(readFile(t, root, "Makefile"))
	if m == nil {
		t.Fatal("no `VERSION ?= ...` in the Makefile")
	}
	var chart struct {
		Version    string `json:"version"`
		AppVersion string `json:"appVersion"`
	}
	must(t, yaml.Unmarshal([]byte(readFile(t, chartDir, "Chart.yaml")), &chart), "reading Chart.yaml")
	if chart.Version != m[1] || chart.AppVersion != m[1] {
		t.Errorf("Chart.yaml version %s, appVersion %s; the Makefile's VERSION is %s", chart.Version, chart.AppVersion, m[1])
	}
}

func chartAppVersion(t *testing.T) string {
	t.Helper()
	var chart struct {
		AppVersion string `json:"appVersion"`
	}
	must(t, yaml.Unmarshal([]byte(readFile(t, chartDir, "Chart.yaml")), &chart), "reading Chart.yaml")
	return chart.AppVersion
}

func TestGoMemLimit(t *testing.T) {
	helmBin(t)
	for _, c := range []struct {
		set  []string
		want string // "" for no GOMEMLIMIT
	}{
		{nil, "241591910"}, // 256Mi
		{[]string{"manager.resources.limits.memory=1Gi"}, "966367641"},
		{[]string{"manager.resources.limits.memory=0.5Gi"}, "483183820"},
		{[]string{"manager.resources.limits.memory=500M"}, "450000000"},
		{[]string{"manager.resources.limits.memory=128974848"}, "116077363"},
		{[]string{"manager.resources.limits.memory=1000k"}, "900000"},
		{[]string{"manager.resources.limits.memory=null"}, ""},
		{[]string{"manager.goMemLimit=200MiB"}, "200MiB"},
		{[]string{"manager.goMemLimit=off"}, "off"},
	} {
		t.Run(strings.Join(c.set, ","), func(t *testing.T) {
			r := renderArgs{set: c.set}
			if len(c.set) == 1 && strings.HasSuffix(c.set[0], "=128974848") {
				r = renderArgs{values: "manager:\n  resources:\n    limits:\n      memory: \"128974848\"\n"}
			}
			got, ok := managerEnv(t, renderObjects(t, r))["GOMEMLIMIT"]
			if c.want == "" && ok {
				t.Errorf("GOMEMLIMIT=%s without a memory limit", got)
			}
			if c.want != "" && got != c.want {
				t.Errorf("GOMEMLIMIT=%q, want %q", got, c.want)
			}
		})
	}
}

func TestNamespaceSelector(t *testing.T) {
	helmBin(t)
	exclusion := func(values ...any) map[string]any {
		return map[string]any{"key": "kubernetes.io/metadata.name", "operator": "NotIn", "values": values}
	}
	for _, c := range []struct {
		name string
		renderArgs
		want map[string]any
	}{
		{"default", renderArgs{}, map[string]any{
			"matchLabels":      map[string]any{"auth.keyward.dev/injection": "enabled"},
			"matchExpressions": []any{exclusion(releaseNamespace, "kube-system")},
		}},
		{"expressions kept", renderArgs{namespace: "auth", values: "webhook:\n  namespaceSelector:\n    matchExpressions:\n    - {key: team, operator: Exists}\n"}, map[string]any{
			"matchLabels": map[string]any{"auth.keyward.dev/injection": "enabled"},
			"matchExpressions": []any{
				map[string]any{"key": "team", "operator": "Exists"},
				exclusion("auth", "kube-system"),
			},
		}},
		{"empty selector still excludes", renderArgs{set: []string{"webhook.namespaceSelector=null"}}, map[string]any{
			"matchExpressions": []any{exclusion(releaseNamespace, "kube-system")},
		}},
		{"installed in kube-system", renderArgs{namespace: "kube-system"}, map[string]any{
			"matchLabels":      map[string]any{"auth.keyward.dev/injection": "enabled"},
			"matchExpressions": []any{exclusion("kube-system")},
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			mwc := one(t, renderObjects(t, c.renderArgs), "MutatingWebhookConfiguration")
			got := field[[]any](t, mwc, "webhooks")[0].(map[string]any)["namespaceSelector"]
			if !reflect.DeepEqual(got, c.want) {
				t.Errorf("namespaceSelector\n got %v\nwant %v", got, c.want)
			}
		})
	}
}

// TestWebhook: the one webhook of the contract.
func TestWebhook(t *testing.T) {
	objs := renderObjects(t, renderArgs{set: []string{"webhook.failurePolicy=Ignore", "webhook.timeoutSeconds=5", "webhook.objectSelector.matchLabels.app=web"}})
	mwc := one(t, objs, "MutatingWebhookConfiguration")
	hooks := field[[]any](t, mwc, "webhooks")
	if len(hooks) != 1 {
		t.Fatalf("%d webhooks, want 1", len(hooks))
	}
	h := hooks[0].(map[string]any)
	for k, want := range map[string]any{
		"name":                    "inject.auth.keyward.dev",
		"sideEffects":             "NoneOnDryRun",
		"failurePolicy":           "Ignore",
		"timeoutSeconds":          int64(5),
		"reinvocationPolicy":      "Never",
		"admissionReviewVersions": []any{"v1"},
		"objectSelector":          map[string]any{"matchLabels": map[string]any{"app": "web"}},
		"rules": []any{map[string]any{
			"apiGroups": []any{""}, "apiVersions": []any{"v1"}, "operations": []any{"CREATE"},
			"resources": []any{"pods"}, "scope": "Namespaced",
		}},
	} {
		if !reflect.DeepEqual(h[k], want) {
			t.Errorf("webhook %s = %#v, want %#v", k, h[k], want)
		}
	}
	svc := h["clientConfig"].(map[string]any)["service"].(map[string]any)
	if svc["path"] != "/mutate-v1-pod" || svc["port"] != int64(443) {
		t.Errorf("clientConfig.service = %v", svc)
	}
	if _, ok := h["clientConfig"].(map[string]any)["caBundle"]; ok {
		t.Error("the chart sets caBundle: an upgrade would overwrite the injected one")
	}
	ws := named(t, objs, "Service", "keyward-webhook")
	port := field[[]any](t, ws, "spec", "ports")[0].(map[string]any)
	if port["port"] != int64(443) || port["targetPort"] != "webhook" {
		t.Errorf("webhook Service port %v, want 443 -> webhook", port)
	}
}

func TestWebhookDisabled(t *testing.T) {
	objs := renderObjects(t, renderArgs{set: []string{"webhook.enabled=false"}})
	if len(find(objs, "MutatingWebhookConfiguration")) != 0 {
		t.Error("a MutatingWebhookConfiguration with webhook.enabled=false")
	}
	for _, s := range find(objs, "Service") {
		if s.GetName() != "keyward-metrics" {
			t.Errorf("Service %s with webhook.enabled=false", s.GetName())
		}
	}
	args := managerArgs(t, objs)
	if args["enable-webhook"] != "false" {
		t.Errorf("--enable-webhook=%q, want false", args["enable-webhook"])
	}
	for name := range args {
		if strings.HasPrefix(name, "webhook-") || strings.HasPrefix(name, "verifier-") || strings.HasPrefix(name, "sidecar-") {
			t.Errorf("--%s passed with the webhook disabled", name)
		}
	}
	if v := managerContainer(t, objs)["volumeMounts"]; v != nil {
		t.Errorf("volume mounts without the webhook: %v", v)
	}
	for _, kind := range []string{"ClusterRole", "Role"} {
		for _, r := range field[[]any](t, one(t, objs, kind), "rules") {
			r := r.(map[string]any)
			if r["resourceNames"] != nil {
				t.Errorf("%s rule %v for webhook objects with the webhook disabled", kind, r)
			}
		}
	}
}

func TestCertManager(t *testing.T) {
	helmBin(t)
	t.Run("self-signed issuer", func(t *testing.T) {
		objs := renderObjects(t, renderArgs{valuesFiles: []string{"cert-manager.yaml"}})
		cert := one(t, objs, "Certificate")
		issuer := one(t, objs, "Issuer")
		checkCertManager(t, objs, cert)
		if field[string](t, cert, "spec", "issuerRef", "name") != issuer.GetName() {
			t.Errorf("the Certificate's issuer is not the chart's Issuer %s", issuer.GetName())
		}
		if _, ok := field[map[string]any](t, issuer, "spec")["selfSigned"]; !ok {
			t.Error("the chart's Issuer is not self-signed")
		}
	})
	t.Run("existing issuer", func(t *testing.T) {
		objs := renderObjects(t, renderArgs{valuesFiles: []string{"cert-manager-issuer.yaml"}})
		if len(find(objs, "Issuer")) != 0 {
			t.Error("an Issuer although issuerRef names one")
		}
		cert := one(t, objs, "Certificate")
		checkCertManager(t, objs, cert)
		ref := field[map[string]any](t, cert, "spec", "issuerRef")
		if !reflect.DeepEqual(ref, map[string]any{"name": "internal-ca", "kind": "ClusterIssuer", "group": "cert-manager.io"}) {
			t.Errorf("issuerRef %v", ref)
		}
		dns := field[[]any](t, cert, "spec", "dnsNames")
		if dns[len(dns)-1] != "keyward-webhook.keyward-system.svc.corp.example" {
			t.Errorf("dnsNames %v do not end with the cluster domain", dns)
		}
	})
}

func checkCertManager(t *testing.T, objs []*unstructured.Unstructured, cert *unstructured.Unstructured) {
	t.Helper()
	args := managerArgs(t, objs)
	if args["webhook-cert-mode"] != "external" {
		t.Errorf("--webhook-cert-mode=%q, want external", args["webhook-cert-mode"])
	}
	mwc := one(t, objs, "MutatingWebhookConfiguration")
	if got, want := mwc.GetAnnotations()["cert-manager.io/inject-ca-from"], releaseNamespace+"/"+cert.GetName(); got != want {
		t.Errorf("inject-ca-from %q, want %q", got, want)
	}
	secret := field[string](t, cert, "spec", "secretName")
	dep := one(t, objs, "Deployment")
	vol := field[[]any](t, dep, "spec", "template", "spec", "volumes")[0].(map[string]any)
	if vol["secret"].(map[string]any)["secretName"] != secret {
		t.Errorf("the manager mounts %v, the Certificate writes Secret %s", vol, secret)
	}
	mount := managerContainer(t, objs)["volumeMounts"].([]any)[0].(map[string]any)
	if mount["mountPath"] != args["webhook-cert-dir"] || mount["readOnly"] != true {
		t.Errorf("certificate mount %v, want read-only at %s", mount, args["webhook-cert-dir"])
	}
	svc := args["webhook-service"]
	want := []any{svc, svc + "." + releaseNamespace, svc + "." + releaseNamespace + ".svc"}
	if got := field[[]any](t, cert, "spec", "dnsNames"); !reflect.DeepEqual(got[:3], want) {
		t.Errorf("dnsNames %v, want %v and the cluster-local name", got, want)
	}
	// cainjector fills the caBundle: the manager gets no right on the webhook configuration
	// or on the Secret.
	for _, kind := range []string{"ClusterRole", "Role"} {
		for _, r := range field[[]any](t, one(t, objs, kind), "rules") {
			if r.(map[string]any)["resourceNames"] != nil {
				t.Errorf("%s rule %v in cert-manager mode", kind, r)
			}
		}
	}
}

// TestRBAC: the ClusterRole is config/rbac/role.yaml without Leases and webhook
// configurations, plus the release's MutatingWebhookConfiguration by name; the Role holds
// Leases, Events and the certificate Secret.
func TestRBAC(t *testing.T) {
	roleYAML := readFile(t, root, "config", "rbac", "role.yaml")
	rulesFile := readFile(t, chartDir, "files", "manager-rules.yaml")
	if !strings.HasSuffix(rulesFile, roleYAML) {
		t.Fatal("charts/keyward/files/manager-rules.yaml differs from config/rbac/role.yaml: run `make manifests`")
	}
	var role struct {
		Rules []map[string]any `json:"rules"`
	}
	must(t, yaml.Unmarshal([]byte(roleYAML), &role), "reading role.yaml")
	var want []any
	for _, r := range role.Rules {
		groups := r["apiGroups"].([]any)
		if !slices.Contains(groups, any("coordination.k8s.io")) && !slices.Contains(groups, any("admissionregistration.k8s.io")) {
			want = append(want, any(r))
		}
	}
	want = append(want, map[string]any{
		"apiGroups": []any{"admissionregistration.k8s.io"}, "resources": []any{"mutatingwebhookconfigurations"},
		"resourceNames": []any{"keyward-injector"}, "verbs": []any{"get", "list", "watch", "patch", "update"},
	})
	objs := renderObjects(t, renderArgs{})
	cr := one(t, objs, "ClusterRole")
	if got := field[[]any](t, cr, "rules"); !reflect.DeepEqual(got, normalize(t, want)) {
		t.Errorf("ClusterRole rules\n got %v\nwant %v", got, want)
	}
	role2 := one(t, objs, "Role")
	if role2.GetNamespace() != releaseNamespace {
		t.Errorf("Role in namespace %q", role2.GetNamespace())
	}
	grants := map[string][]string{} // "group/resource[/name]" -> verbs
	for _, kind := range []string{"ClusterRole", "Role"} {
		for _, r := range field[[]any](t, one(t, objs, kind), "rules") {
			r := r.(map[string]any)
			for _, g := range r["apiGroups"].([]any) {
				for _, res := range r["resources"].([]any) {
					key := fmt.Sprintf("%s %s/%s", kind, g, res)
					if names, ok := r["resourceNames"].([]any); ok {
						key += fmt.Sprint(names)
					}
					for _, v := range r["verbs"].([]any) {
						grants[key] = append(grants[key], v.(string))
						if v == "*" || v == "escalate" || v == "bind" || v == "impersonate" {
							t.Errorf("%s grants %s on %s/%s", kind, v, g, res)
						}
					}
					if g == "*" || res == "*" {
						t.Errorf("%s has a wildcard rule %v", kind, r)
					}
					if res == "pods" || strings.HasPrefix(res.(string), "pods/") {
						t.Errorf("%s grants access to %s: the webhook needs none", kind, res)
					}
				}
			}
		}
	}
	for key, verbs := range map[string][]string{
		"Role coordination.k8s.io/leases":        {"create", "delete", "get", "list", "patch", "update", "watch"},
		"Role /events":                           {"create", "patch"},
		"Role /secrets[keyward-webhook-cert]":    {"get", "list", "patch", "update", "watch"},
		"Role /secrets":                          {"create"},
		"ClusterRole coordination.k8s.io/leases": nil, // namespaced only
	} {
		got := grants[key]
		sort.Strings(got)
		if !reflect.DeepEqual(got, verbs) {
			t.Errorf("%s: verbs %v, want %v", key, got, verbs)
		}
	}
	if len(find(renderObjects(t, renderArgs{set: []string{"rbac.create=false"}}), "ClusterRole")) != 0 {
		t.Error("a ClusterRole with rbac.create=false")
	}
}

// normalize gives values the types they have after a YAML round trip.
func normalize(t *testing.T, v any) any {
	t.Helper()
	b, err := yaml.Marshal(v)
	must(t, err, "marshalling")
	var out any
	must(t, yaml.Unmarshal(b, &out), "unmarshalling")
	return out
}

// TestCRDs: the CRD templates are config/crd/bases with the chart's labels and the keep
// annotation, gated by crds.install and crds.keep.
func TestCRDs(t *testing.T) {
	bases, err := filepath.Glob(filepath.Join(root, "config", "crd", "bases", "*.yaml"))
	must(t, err, "listing CRDs")
	crds := find(renderObjects(t, renderArgs{}), "CustomResourceDefinition")
	if len(crds) != len(bases) || len(bases) == 0 {
		t.Fatalf("%d CRDs rendered, %d in config/crd/bases: run `make manifests`", len(crds), len(bases))
	}
	for _, path := range bases {
		want := objects(t, readFile(t, path))[0]
		got := named(t, crds, "CustomResourceDefinition", want.GetName())
		if got.GetAnnotations()["helm.sh/resource-policy"] != "keep" {
			t.Errorf("CRD %s is not kept on uninstall", got.GetName())
		}
		if got.GetLabels()["app.kubernetes.io/managed-by"] != "Helm" {
			t.Errorf("CRD %s has no chart labels", got.GetName())
		}
		got = got.DeepCopy()
		ann := got.GetAnnotations()
		delete(ann, "helm.sh/resource-policy")
		got.SetAnnotations(ann)
		got.SetLabels(nil)
		if !reflect.DeepEqual(got.Object, want.Object) {
			t.Errorf("CRD %s differs from %s: run `make manifests`", got.GetName(), path)
		}
	}
	for _, crd := range find(renderObjects(t, renderArgs{set: []string{"crds.keep=false"}}), "CustomResourceDefinition") {
		if _, ok := crd.GetAnnotations()["helm.sh/resource-policy"]; ok {
			t.Errorf("CRD %s kept with crds.keep=false", crd.GetName())
		}
	}
	if n := len(find(renderObjects(t, renderArgs{set: []string{"crds.install=false"}}), "CustomResourceDefinition")); n != 0 {
		t.Errorf("%d CRDs with crds.install=false", n)
	}
}

// TestManagerPod: hardening, probes, ports, spreading, the disruption budget.
func TestManagerPod(t *testing.T) {
	objs := renderObjects(t, renderArgs{})
	dep := one(t, objs, "Deployment")
	if r := field[int64](t, dep, "spec", "replicas"); r != 2 {
		t.Errorf("replicas %d, want 2", r)
	}
	pod := field[map[string]any](t, dep, "spec", "template", "spec")
	psc := pod["securityContext"].(map[string]any)
	if psc["runAsNonRoot"] != true || psc["seccompProfile"].(map[string]any)["type"] != "RuntimeDefault" {
		t.Errorf("pod securityContext %v", psc)
	}
	c := managerContainer(t, objs)
	sc := c["securityContext"].(map[string]any)
	for k, want := range map[string]any{
		"runAsNonRoot": true, "readOnlyRootFilesystem": true, "allowPrivilegeEscalation": false,
		"capabilities":   map[string]any{"drop": []any{"ALL"}},
		"seccompProfile": map[string]any{"type": "RuntimeDefault"},
	} {
		if !reflect.DeepEqual(sc[k], want) {
			t.Errorf("container securityContext.%s = %v, want %v", k, sc[k], want)
		}
	}
	ports := map[string]int64{}
	for _, p := range c["ports"].([]any) {
		p := p.(map[string]any)
		ports[p["name"].(string)] = p["containerPort"].(int64)
	}
	if !reflect.DeepEqual(ports, map[string]int64{"metrics": 8080, "health": 8081, "webhook": 9443}) {
		t.Errorf("ports %v", ports)
	}
	for probe, path := range map[string]string{"livenessProbe": "/healthz", "readinessProbe": "/readyz"} {
		get := c[probe].(map[string]any)["httpGet"].(map[string]any)
		if get["path"] != path || get["port"] != "health" {
			t.Errorf("%s %v, want %s on the health port", probe, get, path)
		}
	}
	if _, ok := c["resources"].(map[string]any)["limits"]; !ok {
		t.Error("no resource limits")
	}
	mount := c["volumeMounts"].([]any)[0].(map[string]any)
	vol := pod["volumes"].([]any)[0].(map[string]any)
	if mount["mountPath"] != managerArgs(t, objs)["webhook-cert-dir"] || vol["emptyDir"] == nil {
		t.Errorf("self mode: cert dir mount %v, volume %v; want an emptyDir at the cert dir", mount, vol)
	}
	anti := pod["affinity"].(map[string]any)["podAntiAffinity"].(map[string]any)
	if anti["preferredDuringSchedulingIgnoredDuringExecution"] == nil {
		t.Error("no preferred pod anti-affinity")
	}
	pdb := one(t, objs, "PodDisruptionBudget")
	if field[int64](t, pdb, "spec", "minAvailable") != 1 {
		t.Error("PodDisruptionBudget minAvailable is not 1")
	}
	if n := len(find(renderObjects(t, renderArgs{set: []string{"manager.replicas=1"}}), "PodDisruptionBudget")); n != 0 {
		t.Error("a PodDisruptionBudget for a single replica would block node drains")
	}
}

func TestVerifierImage(t *testing.T) {
	helmBin(t)
	app := chartAppVersion(t)
	digest := "sha256:" + strings.Repeat("ab", 32)
	for _, c := range []struct {
		set  []string
		want string
	}{
		{nil, "ghcr.io/keyward-dev/keyward:" + app},
		{[]string{"image.tag=1.2.3"}, "ghcr.io/keyward-dev/keyward:1.2.3"},
		{[]string{"image.digest=" + digest}, "ghcr.io/keyward-dev/keyward@" + digest},
		{[]string{"image.repository=reg.example/kw"}, "reg.example/kw:" + app},
		{[]string{"verifier.image.tag=debug"}, "ghcr.io/keyward-dev/keyward:debug"},
		{[]string{"image.tag=1.2.3", "verifier.image.repository=reg.example/verifier"}, "reg.example/verifier:1.2.3"},
		{[]string{"image.digest=" + digest, "verifier.image.repository=reg.example/verifier"}, "reg.example/verifier:" + app},
		{[]string{"verifier.image.digest=" + digest}, "ghcr.io/keyward-dev/keyward@" + digest},
	} {
		t.Run(strings.Join(c.set, ","), func(t *testing.T) {
			if got := managerArgs(t, renderObjects(t, renderArgs{set: c.set}))["verifier-image"]; got != c.want {
				t.Errorf("--verifier-image=%s, want %s", got, c.want)
			}
		})
	}
}

// TestLabelsAndNamespaces: every object carries the standard labels; every namespaced
// object lives in the release namespace.
func TestLabelsAndNamespaces(t *testing.T) {
	helmBin(t)
	clusterScoped := map[string]bool{"CustomResourceDefinition": true, "ClusterRole": true,
		"ClusterRoleBinding": true, "MutatingWebhookConfiguration": true}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ns := c.namespace
			if ns == "" {
				ns = releaseNamespace
			}
			for _, o := range renderObjects(t, c.renderArgs) {
				l := o.GetLabels()
				for _, k := range []string{"app.kubernetes.io/name", "app.kubernetes.io/instance", "app.kubernetes.io/version",
					"app.kubernetes.io/managed-by", "app.kubernetes.io/part-of", "helm.sh/chart"} {
					if l[k] == "" {
						t.Errorf("%s %s: no label %s", o.GetKind(), o.GetName(), k)
					}
				}
				if l["app.kubernetes.io/component"] == "" && o.GetKind() != "CustomResourceDefinition" {
					t.Errorf("%s %s: no component label", o.GetKind(), o.GetName())
				}
				if clusterScoped[o.GetKind()] != (o.GetNamespace() == "") || (!clusterScoped[o.GetKind()] && o.GetNamespace() != ns) {
					t.Errorf("%s %s in namespace %q (release namespace %s)", o.GetKind(), o.GetName(), o.GetNamespace(), ns)
				}
			}
		})
	}
}

// TestAlerts: the four alerts, with their annotations, and every metric, label and label
// value they use exists in the code that exports it.
func TestAlerts(t *testing.T) {
	objs := renderObjects(t, renderArgs{valuesFiles: []string{"monitoring.yaml"}})
	rule := one(t, objs, "PrometheusRule")
	exported := exportedMetrics(t)
	alerts := map[string]bool{}
	for _, g := range field[[]any](t, rule, "spec", "groups") {
		for _, r := range g.(map[string]any)["rules"].([]any) {
			r := r.(map[string]any)
			name := r["alert"].(string)
			alerts[name] = true
			ann := r["annotations"].(map[string]any)
			for _, k := range []string{"summary", "description", "runbook", "runbook_url"} {
				if ann[k] == nil || ann[k] == "" {
					t.Errorf("%s: no %s annotation", name, k)
				}
			}
			if sev := r["labels"].(map[string]any)["severity"]; sev == nil {
				t.Errorf("%s: no severity", name)
			}
			expr := r["expr"].(string)
			for _, m := range regexp.MustCompile(`keyward_[a-z_]+`).FindAllString(expr, -1) {
				if !exported[m] && m != "keyward_issuer_refresh_reuse_total" { // the issuer comes later
					t.Errorf("%s uses %s, which no Keyward component exports", name, m)
				}
			}
		}
	}
	for _, want := range []string{"KeywardRotationOverdue", "KeywardSidecarBundleStale", "KeywardEmergencyRotation", "KeywardRefreshTokenReuse"} {
		if !alerts[want] {
			t.Errorf("no alert %s", want)
		}
	}
	// The label names and the Emergency reason the expressions rely on.
	metricsGo := readFile(t, root, "controllers", "metrics.go")
	for _, s := range []string{`"namespace", "signingkey", "reason"`, `"namespace", "tokenpolicy"`, `"namespace", "signingkey"`} {
		if !strings.Contains(metricsGo, s) {
			t.Errorf("controllers/metrics.go no longer has the labels %s that the alerts use", s)
		}
	}
	if !strings.Contains(readFile(t, root, "internal", "rotation", "rotation.go"), `ReasonEmergency      Reason = "Emergency"`) {
		t.Error(`the rotation reason "Emergency" the alert matches is gone from internal/rotation`)
	}
	// The PodMonitor scrapes the admin port of the sidecar the webhook injects.
	pm := one(t, objs, "PodMonitor")
	ep := field[[]any](t, pm, "spec", "podMetricsEndpoints")[0].(map[string]any)
	keep := ep["relabelings"].([]any)[0].(map[string]any)
	if ep["port"] != inject.AdminPortName || keep["action"] != "keep" || keep["regex"] != inject.ContainerName {
		t.Errorf("PodMonitor endpoint %v, want port %s of container %s", ep, inject.AdminPortName, inject.ContainerName)
	}
	sel := field[[]any](t, pm, "spec", "selector", "matchExpressions")[0].(map[string]any)
	if sel["key"] != inject.LabelPolicy || sel["operator"] != "Exists" {
		t.Errorf("PodMonitor selects %v, want pods labelled %s", sel, inject.LabelPolicy)
	}
	sm := one(t, objs, "ServiceMonitor")
	if ep := field[[]any](t, sm, "spec", "endpoints")[0].(map[string]any); ep["honorLabels"] != true || ep["port"] != "metrics" {
		t.Errorf("ServiceMonitor endpoint %v, want port metrics with honorLabels", ep)
	}
	// Without the monitoring values, none of the prometheus-operator objects.
	for _, o := range renderObjects(t, renderArgs{}) {
		if strings.HasPrefix(o.GetAPIVersion(), "monitoring.coreos.com/") {
			t.Errorf("%s rendered by default", o.GetKind())
		}
	}
}

// exportedMetrics are the metric names in the Go sources of the manager and the verifier.
func exportedMetrics(t *testing.T) map[string]bool {
	t.Helper()
	names := map[string]bool{}
	re := regexp.MustCompile(`Name:\s+"(keyward_[a-z_]+)"`)
	for _, f := range []string{filepath.Join(root, "controllers", "metrics.go"), filepath.Join(root, "internal", "sidecar", "metrics.go")} {
		for _, m := range re.FindAllStringSubmatch(readFile(t, f), -1) {
			names[m[1]] = true
		}
	}
	if len(names) == 0 {
		t.Fatal("no metric names found in the sources")
	}
	return names
}

// TestREADMEDocumentsEveryValue: every key of values.yaml (or a parent of it) has a row in
// the README's values table.
func TestREADMEDocumentsEveryValue(t *testing.T) {
	readme := readFile(t, chartDir, "README.md")
	var values map[string]any
	must(t, yaml.Unmarshal([]byte(readFile(t, chartDir, "values.yaml")), &values), "reading values.yaml")
	var walk func(prefix string, m map[string]any)
	walk = func(prefix string, m map[string]any) {
		for k, v := range m {
			path := k
			if prefix != "" {
				path = prefix + "." + k
			}
			if strings.Contains(readme, "| `"+path+"` |") {
				continue
			}
			if sub, ok := v.(map[string]any); ok && len(sub) > 0 {
				walk(path, sub)
				continue
			}
			t.Errorf("values.yaml key %s has no row in charts/keyward/README.md", path)
		}
	}
	walk("", values)
}

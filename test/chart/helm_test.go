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

// Package chart_test checks the Helm chart in charts/keyward with the real helm CLI
// (bin/helm, built by `make helm`): strict lint, golden `helm template` output, the values
// schema, what the rendered objects mean (names, flags, RBAC, security), and an install
// into a real kube-apiserver (envtest).
package chart_test

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utiljson "k8s.io/apimachinery/pkg/util/json"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"
)

const (
	releaseName      = "keyward"
	releaseNamespace = "keyward-system"
)

var (
	root     = filepath.Join("..", "..")
	chartDir = filepath.Join(root, "charts", "keyward")
)

// helmBin returns bin/helm (or $HELM). Without it the test is skipped, unless
// KEYWARD_REQUIRE_HELM is set (as `make test` does, after building it).
func helmBin(t *testing.T) string {
	t.Helper()
	bin := os.Getenv("HELM")
	if bin == "" {
		bin = filepath.Join(root, "bin", "helm")
	}
	if _, err := os.Stat(bin); err != nil {
		if os.Getenv("KEYWARD_REQUIRE_HELM") != "" {
			t.Fatalf("helm CLI not found at %s: run `make helm` (hack/helm.sh builds it into bin/)", bin)
		}
		t.Skipf("helm CLI not found at %s: run `make helm`, or set KEYWARD_REQUIRE_HELM=1 to fail instead", bin)
	}
	abs, err := filepath.Abs(bin)
	if err != nil {
		t.Fatal(err)
	}
	return abs
}

// helm runs the helm CLI with its state confined to a temporary directory.
func helm(t *testing.T, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	bin := helmBin(t)
	home := t.TempDir()
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(),
		"HELM_CACHE_HOME="+filepath.Join(home, "cache"),
		"HELM_CONFIG_HOME="+filepath.Join(home, "config"),
		"HELM_DATA_HOME="+filepath.Join(home, "data"),
	)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err = cmd.Run()
	return out.String(), errb.String(), err
}

// renderArgs are the arguments of `helm template` for a release, values files and --set flags.
type renderArgs struct {
	release, namespace string
	valuesFiles        []string // under testdata/values
	values             string   // YAML, after the files
	set                []string
}

func (r renderArgs) args(t *testing.T) []string {
	t.Helper()
	release, namespace := r.release, r.namespace
	if release == "" {
		release = releaseName
	}
	if namespace == "" {
		namespace = releaseNamespace
	}
	args := []string{"template", release, chartDir, "--namespace", namespace}
	for _, f := range r.valuesFiles {
		args = append(args, "--values", filepath.Join("testdata", "values", f))
	}
	if r.values != "" {
		path := filepath.Join(t.TempDir(), "values.yaml")
		must(t, os.WriteFile(path, []byte(r.values), 0o600), "writing values")
		args = append(args, "--values", path)
	}
	for _, s := range r.set {
		args = append(args, "--set", s)
	}
	return args
}

// render runs `helm template` and fails the test on an error.
func render(t *testing.T, r renderArgs) string {
	t.Helper()
	args := r.args(t)
	out, stderr, err := helm(t, args...)
	if err != nil {
		t.Fatalf("helm %s: %v\n%s", strings.Join(args, " "), err, stderr)
	}
	return out
}

// renderError runs `helm template` that must fail, and returns its error output.
func renderError(t *testing.T, r renderArgs) string {
	t.Helper()
	args := r.args(t)
	_, stderr, err := helm(t, args...)
	if err == nil {
		t.Fatalf("helm %s succeeded, want an error", strings.Join(args, " "))
	}
	return stderr
}

// objects decodes a multi-document manifest; whole numbers decode as int64, as the API
// machinery does.
func objects(t *testing.T, manifest string) []*unstructured.Unstructured {
	t.Helper()
	r := utilyaml.NewYAMLReader(bufio.NewReader(strings.NewReader(manifest)))
	var objs []*unstructured.Unstructured
	for {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			return objs
		}
		must(t, err, "reading the rendered manifest")
		j, err := yaml.YAMLToJSON(doc)
		must(t, err, "decoding the rendered manifest")
		var m map[string]any
		must(t, utiljson.Unmarshal(j, &m), "decoding the rendered manifest")
		if len(m) == 0 {
			continue
		}
		objs = append(objs, &unstructured.Unstructured{Object: m})
	}
}

// renderObjects renders and decodes.
func renderObjects(t *testing.T, r renderArgs) []*unstructured.Unstructured {
	t.Helper()
	return objects(t, render(t, r))
}

// find returns the objects of a kind.
func find(objs []*unstructured.Unstructured, kind string) []*unstructured.Unstructured {
	var out []*unstructured.Unstructured
	for _, o := range objs {
		if o.GetKind() == kind {
			out = append(out, o)
		}
	}
	return out
}

// one returns the only object of a kind, failing the test otherwise.
func one(t *testing.T, objs []*unstructured.Unstructured, kind string) *unstructured.Unstructured {
	t.Helper()
	found := find(objs, kind)
	if len(found) != 1 {
		t.Fatalf("%d objects of kind %s, want 1", len(found), kind)
	}
	return found[0]
}

// named returns the object of a kind and name, failing the test when it is missing.
func named(t *testing.T, objs []*unstructured.Unstructured, kind, name string) *unstructured.Unstructured {
	t.Helper()
	for _, o := range find(objs, kind) {
		if o.GetName() == name {
			return o
		}
	}
	t.Fatalf("no %s named %q", kind, name)
	return nil
}

// field reads a nested field, failing the test when it is missing.
func field[T any](t *testing.T, o *unstructured.Unstructured, path ...string) T {
	t.Helper()
	v, ok, err := unstructured.NestedFieldNoCopy(o.Object, path...)
	if err != nil || !ok {
		t.Fatalf("%s %s: no field %s (%v)", o.GetKind(), o.GetName(), strings.Join(path, "."), err)
	}
	tv, ok := v.(T)
	if !ok {
		t.Fatalf("%s %s: field %s is %T, want %T", o.GetKind(), o.GetName(), strings.Join(path, "."), v, tv)
	}
	return tv
}

// managerContainer returns the manager container of the Deployment.
func managerContainer(t *testing.T, objs []*unstructured.Unstructured) map[string]any {
	t.Helper()
	dep := one(t, objs, "Deployment")
	for _, c := range field[[]any](t, dep, "spec", "template", "spec", "containers") {
		if c := c.(map[string]any); c["name"] == "manager" {
			return c
		}
	}
	t.Fatal("no manager container")
	return nil
}

// managerArgs returns the manager's flags as name → value ("--x=y" → "x": "y").
func managerArgs(t *testing.T, objs []*unstructured.Unstructured) map[string]string {
	t.Helper()
	args := map[string]string{}
	for _, a := range managerContainer(t, objs)["args"].([]any) {
		s := a.(string)
		name, value, ok := strings.Cut(strings.TrimPrefix(s, "--"), "=")
		if !strings.HasPrefix(s, "--") || !ok {
			t.Fatalf("manager arg %q is not --name=value", s)
		}
		if _, dup := args[name]; dup {
			t.Fatalf("manager flag --%s given twice", name)
		}
		args[name] = value
	}
	return args
}

// managerEnv returns the manager's plain environment variables.
func managerEnv(t *testing.T, objs []*unstructured.Unstructured) map[string]string {
	t.Helper()
	env := map[string]string{}
	for _, e := range managerContainer(t, objs)["env"].([]any) {
		e := e.(map[string]any)
		v, _ := e["value"].(string)
		env[e["name"].(string)] = v
	}
	return env
}

func readFile(t *testing.T, path ...string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(path...))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func must(t *testing.T, err error, format string, args ...any) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", fmt.Sprintf(format, args...), err)
	}
}

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
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/ with the current output")

// cases are the value sets every check runs over: lint, golden files, the envtest install.
var cases = []struct {
	name string
	renderArgs
}{
	{name: "default"},
	{name: "cert-manager", renderArgs: renderArgs{valuesFiles: []string{"cert-manager.yaml"}}},
	{name: "cert-manager-issuer", renderArgs: renderArgs{valuesFiles: []string{"cert-manager-issuer.yaml"}}},
	{name: "webhook-disabled", renderArgs: renderArgs{valuesFiles: []string{"webhook-disabled.yaml"}}},
	{name: "monitoring", renderArgs: renderArgs{valuesFiles: []string{"monitoring.yaml"}}},
	{name: "custom", renderArgs: renderArgs{namespace: "platform", valuesFiles: []string{"custom.yaml"}}},
	{name: "release-name", renderArgs: renderArgs{release: "kw", namespace: "auth"}},
}

func TestLintStrict(t *testing.T) {
	helmBin(t)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			args := []string{"lint", "--strict", chartDir, "--namespace", releaseNamespace}
			for _, f := range c.valuesFiles {
				args = append(args, "--values", filepath.Join("testdata", "values", f))
			}
			out, stderr, err := helm(t, args...)
			if err != nil || !strings.Contains(out, "0 chart(s) failed") {
				t.Fatalf("helm %s: %v\n%s%s", strings.Join(args, " "), err, out, stderr)
			}
		})
	}
}

// TestGolden compares `helm template` output with testdata/<case>.golden. The CRDs are
// left out (TestCRDs compares them with config/crd/bases), so an API change does not
// touch every golden file. `go test ./test/chart -run TestGolden -update` rewrites them.
func TestGolden(t *testing.T) {
	helmBin(t)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := withoutCRDs(render(t, c.renderArgs))
			path := filepath.Join("testdata", c.name+".golden")
			if *update {
				must(t, os.WriteFile(path, []byte(got), 0o644), "writing %s", path)
				return
			}
			want := readFile(t, path)
			if got != want {
				t.Errorf("helm template for %q differs from %s (run with -update to accept):\n%s", c.name, path, diff(want, got))
			}
		})
	}
}

// withoutCRDs replaces each CRD document of a `helm template` output by a comment.
func withoutCRDs(manifest string) string {
	docs := strings.Split(manifest, "\n---\n")
	for i, d := range docs {
		source, _, _ := strings.Cut(strings.TrimPrefix(d, "---\n"), "\n")
		if strings.Contains(source, "/templates/crds/") {
			docs[i] = source + "\n# (CustomResourceDefinition: compared with config/crd/bases by TestCRDs)"
		}
	}
	return strings.Join(docs, "\n---\n")
}

// diff shows the first differing lines, with some context.
func diff(want, got string) string {
	w, g := strings.Split(want, "\n"), strings.Split(got, "\n")
	i := 0
	for i < len(w) && i < len(g) && w[i] == g[i] {
		i++
	}
	var b strings.Builder
	from := max(i-3, 0)
	for j := from; j < i; j++ {
		b.WriteString("  " + w[j] + "\n")
	}
	for j := i; j < min(i+8, len(w)); j++ {
		b.WriteString("- " + w[j] + "\n")
	}
	for j := i; j < min(i+8, len(g)); j++ {
		b.WriteString("+ " + g[j] + "\n")
	}
	return b.String()
}

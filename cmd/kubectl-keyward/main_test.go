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
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keyward-dev/keyward/internal/cli/clitest"
)

// The tests run kubectl-keyward the way users do: kubectl (built into bin/k8s for
// envtest) finds it on PATH as a plugin. The test binary itself is the plugin: linked
// as bin/kubectl-keyward, it runs main's run() instead of the tests.
var env *clitest.Env

func TestMain(m *testing.M) {
	if filepath.Base(os.Args[0]) == "kubectl-keyward" {
		os.Exit(run())
	}
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

var (
	pathOnce sync.Once
	pathDir  string
	pathErr  error
)

// pluginPath is a directory with kubectl, kubectl-keyward and kubectl_complete-keyward.
func pluginPath(t *testing.T) string {
	t.Helper()
	pathOnce.Do(func() {
		var self, assets, script string
		if self, pathErr = os.Executable(); pathErr != nil {
			return
		}
		if assets, pathErr = filepath.Abs(os.Getenv("KUBEBUILDER_ASSETS")); pathErr != nil {
			return
		}
		if script, pathErr = filepath.Abs("kubectl_complete-keyward"); pathErr != nil {
			return
		}
		if pathDir, pathErr = os.MkdirTemp("", "kubectl-keyward-path-"); pathErr != nil {
			return
		}
		for link, target := range map[string]string{
			"kubectl-keyward":          self,
			"kubectl":                  filepath.Join(assets, "kubectl"),
			"kubectl_complete-keyward": script,
		} {
			if _, err := os.Stat(target); err != nil {
				pathErr = fmt.Errorf("%s: %w", link, err)
				return
			}
			if pathErr = os.Symlink(target, filepath.Join(pathDir, link)); pathErr != nil {
				return
			}
		}
	})
	if pathErr != nil {
		t.Fatalf("preparing PATH: %v", pathErr)
	}
	return pathDir
}

// shell runs command lines with bash in dir, kubectl and the plugin on PATH, the admin
// kubeconfig, and vars.
type shell struct {
	dir        string
	vars       map[string]string
	home       string
	kubeconfig string
}

// newShell is a shell acting as the cluster admin.
func newShell(t *testing.T, vars map[string]string) *shell {
	t.Helper()
	return &shell{dir: t.TempDir(), vars: vars, home: t.TempDir(), kubeconfig: env.Kubeconfig}
}

type stepResult struct {
	stdout, stderr string
	exit           int
}

func (r stepResult) String() string {
	return fmt.Sprintf("exit status %d\nstdout:\n%s\nstderr:\n%s", r.exit, r.stdout, r.stderr)
}

func (s *shell) run(t *testing.T, line string) stepResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", "-u", "-o", "pipefail", "-c", line)
	cmd.Dir = s.dir
	cmd.Env = []string{
		"PATH=" + pluginPath(t) + string(os.PathListSeparator) + os.Getenv("PATH"),
		"KUBECONFIG=" + s.kubeconfig,
		"HOME=" + s.home,
		"LANG=C.UTF-8",
	}
	for k, v := range s.vars {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	r := stepResult{stdout: stdout.String(), stderr: stderr.String()}
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		r.exit = ee.ExitCode()
	case err != nil:
		t.Fatalf("running %q: %v", line, err)
	}
	return r
}

// must runs a line that must succeed and returns its stdout.
func (s *shell) must(t *testing.T, line string) string {
	t.Helper()
	r := s.run(t, line)
	if r.exit != 0 {
		t.Fatalf("%s: %s", line, r)
	}
	return r.stdout
}

func wantContains(t *testing.T, what, s string, subs ...string) {
	t.Helper()
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			t.Fatalf("%s lacks %q:\n%s", what, sub, s)
		}
	}
}

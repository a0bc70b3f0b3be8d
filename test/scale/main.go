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

// Command scale measures the Keyward product target "1,000 SigningKeys and 10,000
// RevocationEntries reach steady state in < 60 s on 2 cores, manager < 150 MiB".
//
// It starts a real control plane (envtest: kube-apiserver and etcd from
// KUBEBUILDER_ASSETS, CRDs from config/crd/bases), builds the manager (go build, from the
// repository root or -manager-src) and runs it as a subprocess against that control
// plane through a kubeconfig, as it runs in a cluster: its own process, client rate
// limits and caches. It then creates, in one namespace, the SigningKeys (ES256, default
// rotation), TokenPolicies that each trust 1-3 of them, and the RevocationEntries (85% jti
// with UUID values, 5% each subject, session and clientID, never keyID, which would
// trigger emergency rotations; 80% scoped to every policy, the rest to one to three), and
// polls with List calls every -poll (500 ms) until steady state:
//
//   - every SigningKey has status.activeKeyID and Ready=True for its current generation;
//   - every RevocationEntry has status.expiresAt;
//   - every TokenPolicy has Ready=True for its current generation and status.revocations
//     equal to the number of created entries in its scope.
//
// The polls are made cheap, because the harness shares the cores it measures: incomplete
// kinds are listed as server-side Tables (printer columns only), the 10,000-entry list
// every 2 s until 90% are done, and complete kinds are not listed again until a final full
// List of all three confirms steady state (see measure).
//
// Time to steady state is measured from the first create (and reported after the last
// create too); with -cold-start everything is created first and the clock starts with
// the manager (a restart over existing objects). The manager's VmRSS is sampled every
// 200 ms from /proc, VmHWM read at the end, and its CPU time (utime+stime) reported with
// the CPU of kube-apiserver, etcd, this harness and every other process on the machine
// (which is shared: other builds and tests skew the numbers, and the report says by how
// much). After steady state the run goes on for -settle, to show whether the manager goes
// quiet, and checks again. The report ends with the manager's controller and client
// metrics (reconciles, queue waits, API requests by verb), the API server's requests by
// resource, and a summary of the manager's log.
//
// It is a measurement, not a test: targets are printed as PASS or MISS next to the
// numbers, and the exit status is non-zero only when steady state is not reached within
// -timeout (1) or the setup fails (2).
//
// Run it from the repository root (see docs/scale.md):
//
//	make scale
//	make scale SCALE_FLAGS='-manager-args="--kube-api-qps=1000 --kube-api-burst=2000 --workers=16"'
//	make scale SCALE_FLAGS='-cold-start -manager-env="GOMEMLIMIT=100MiB GODEBUG=gctrace=1"'
//	KUBEBUILDER_ASSETS=bin/k8s go run ./test/scale -h
//
// The manager's log goes to a file in a temporary directory whose path is printed.
package main

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"text/tabwriter"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	k8sruntime "k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"github.com/keyward-dev/keyward/api/v1alpha1"
)

// The product targets.
const (
	targetConverge = 60 * time.Second
	targetRSSMiB   = 150.0
	targetCores    = 2
)

// clockTicks is USER_HZ, the unit of utime and stime in /proc/<pid>/stat (100 on Linux).
const clockTicks = 100.0

type options struct {
	signingKeys, policies, revocations int
	namespace                          string
	workers                            int
	qps                                float64
	timeout, poll, settle              time.Duration
	managerArgs, managerEnv            string
	seed                               uint64
	results                            string
	coldStart                          bool
	managerSrc                         string
}

func main() {
	var o options
	flag.IntVar(&o.signingKeys, "signing-keys", 1000, "SigningKeys to create.")
	flag.IntVar(&o.revocations, "revocations", 10000, "RevocationEntries to create.")
	flag.IntVar(&o.policies, "policies", 10, "TokenPolicies to create; each trusts 1-3 SigningKeys.")
	flag.StringVar(&o.namespace, "namespace", "scale", "Namespace of every object.")
	flag.IntVar(&o.workers, "workers", 16, "Client goroutines that create objects.")
	flag.Float64Var(&o.qps, "qps", 1000, "QPS of the harness client (burst is twice that).")
	flag.DurationVar(&o.timeout, "timeout", 5*time.Minute, "Give up when steady state is not reached this long after creation started.")
	flag.DurationVar(&o.poll, "poll", 500*time.Millisecond, "Interval between steady-state polls (List calls).")
	flag.DurationVar(&o.settle, "settle", 10*time.Second, "Keep running this long after convergence to measure idle CPU and re-check steady state.")
	flag.StringVar(&o.managerArgs, "manager-args", "", "Extra manager flags, space-separated, appended after the defaults (e.g. \"--kube-api-qps=500 --workers=8\").")
	flag.StringVar(&o.managerEnv, "manager-env", "", "Extra environment of the manager, space-separated KEY=VALUE (e.g. \"GOMEMLIMIT=100MiB GODEBUG=gctrace=1\").")
	flag.Uint64Var(&o.seed, "seed", 1, "Seed of the generated names and values.")
	flag.BoolVar(&o.coldStart, "cold-start", false, "Create every object first, then start the manager, and time steady state from the manager's start (a restart or upgrade over existing objects).")
	flag.StringVar(&o.managerSrc, "manager-src", "", "Build the manager from this module directory instead of the repository root (e.g. another checkout, to compare).")
	flag.StringVar(&o.results, "results", "", "Also write the report to this file (test/scale/results/ is git-ignored).")
	flag.Parse()
	if o.signingKeys < 1 || o.policies < 1 || o.revocations < 0 || o.workers < 1 {
		_, _ = fmt.Fprintln(os.Stderr, "scale: -signing-keys, -policies and -workers must be at least 1, -revocations at least 0")
		os.Exit(2)
	}
	os.Exit(run(o))
}

// ---------------------------------------------------------------------------------------
// Setup

func run(o options) int {
	// envtest logs through controller-runtime; its errors come back as errors anyway.
	ctrllog.SetLogger(zap.New(zap.WriteTo(io.Discard)))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	root, err := repoRoot()
	if err != nil {
		return fail(err)
	}
	assets := os.Getenv("KUBEBUILDER_ASSETS")
	if assets == "" {
		return fail(errors.New("KUBEBUILDER_ASSETS is not set: run `make scale` (it builds bin/k8s) or set it to the directory holding kube-apiserver and etcd"))
	}
	if !filepath.IsAbs(assets) {
		assets = filepath.Join(root, assets)
	}
	tmp, err := os.MkdirTemp("", "keyward-scale-")
	if err != nil {
		return fail(err)
	}
	logf("work directory %s", tmp)

	// Build first: it is the slow, CPU-heavy part and must not overlap the measurement.
	src := root
	if o.managerSrc != "" {
		if src, err = filepath.Abs(o.managerSrc); err != nil {
			return fail(err)
		}
	}
	source := fingerprint(ctx, src) // before the build: other engineers edit while this runs
	managerBin := filepath.Join(tmp, "manager")
	logf("building the manager (cd %s && go build -o %s .)", src, managerBin)
	build := exec.CommandContext(ctx, "go", "build", "-trimpath", "-o", managerBin, ".")
	build.Dir, build.Stdout, build.Stderr = src, os.Stderr, os.Stderr
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if err := build.Run(); err != nil {
		return fail(fmt.Errorf("building the manager: %w", err))
	}
	defer func() { _ = os.Remove(managerBin) }()

	scheme := k8sruntime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		return fail(err)
	}
	if err := v1alpha1.AddToScheme(scheme); err != nil {
		return fail(err)
	}

	logf("starting the control plane (envtest, assets %s)", assets)
	testEnv := &envtest.Environment{
		CRDDirectoryPaths:     []string{filepath.Join(root, "config", "crd", "bases")},
		ErrorIfCRDPathMissing: true,
		BinaryAssetsDirectory: assets,
		Scheme:                scheme,
	}
	cfg, err := testEnv.Start()
	if err != nil {
		return fail(fmt.Errorf("starting envtest: %w", err))
	}
	defer func() {
		if err := testEnv.Stop(); err != nil {
			logf("stopping envtest: %v", err)
		}
	}()
	user, err := testEnv.AddUser(envtest.User{Name: "scale", Groups: []string{"system:masters"}}, nil)
	if err != nil {
		return fail(fmt.Errorf("adding the envtest user: %w", err))
	}
	kubeconfig, err := user.KubeConfig()
	if err != nil {
		return fail(fmt.Errorf("rendering the kubeconfig: %w", err))
	}
	kubeconfigPath := filepath.Join(tmp, "kubeconfig")
	if err := os.WriteFile(kubeconfigPath, kubeconfig, 0o600); err != nil {
		return fail(err)
	}
	logf("kubeconfig %s", kubeconfigPath)

	hcfg := rest.CopyConfig(cfg)
	hcfg.QPS, hcfg.Burst = float32(o.qps), int(2*o.qps)
	hcfg.UserAgent = "keyward-scale"
	// Everything is on loopback: gzip of 10,000-object Lists would only burn the shared cores.
	hcfg.DisableCompression = true
	c, err := client.New(hcfg, client.Options{Scheme: scheme})
	if err != nil {
		return fail(err)
	}
	if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: o.namespace}}); err != nil && !apierrors.IsAlreadyExists(err) {
		return fail(fmt.Errorf("creating namespace %s: %w", o.namespace, err))
	}
	plane := controlPlanePIDs()
	load := generate(o)
	var cold *coldStart
	if o.coldStart {
		var sk, tp, re atomic.Int64
		logf("cold start: creating %d SigningKeys, %d TokenPolicies, %d RevocationEntries before the manager starts", len(load.signingKeys), len(load.policies), len(load.revocations))
		t, before := time.Now(), markCPU(0, plane)
		if err := createLoad(ctx, c, o, load, &sk, &tp, &re); err != nil {
			return fail(err)
		}
		cold = &coldStart{created: time.Since(t), createCPU: markCPU(0, plane).sub(before)}
		logf("created in %s", cold.created.Round(time.Millisecond))
		cold.cpu = markCPU(0, plane)
		cold.loadAvg = loadAvg()
		cold.start = time.Now()
	}

	logPath := filepath.Join(tmp, "manager.log")
	args := []string{"--leader-elect=false", "--enable-webhook=false", "--metrics-bind-address=127.0.0.1:0", "--health-probe-bind-address=127.0.0.1:0"}
	args = append(args, strings.Fields(o.managerArgs)...)
	env := strings.Fields(o.managerEnv)
	mgr, err := startManager(managerBin, args, env, kubeconfigPath, logPath)
	if err != nil {
		return fail(err)
	}
	defer mgr.kill()
	logf("manager pid %d, args %s, env %s", mgr.pid(), strings.Join(args, " "), strings.Join(env, " "))
	logf("manager log %s", logPath)
	mem := startSampler(mgr.pid(), 200*time.Millisecond) // from the start: a cold start peaks in the initial List
	if err := mgr.waitStarted(ctx, 90*time.Second); err != nil {
		mem.stop()
		return fail(err)
	}
	mgr.metricsURL = findMetricsURL(mgr.pid())
	if mgr.metricsURL == "" {
		logf("manager metrics endpoint not found; metrics summary skipped")
	}

	r := &runResult{opts: o, cfg: hcfg, args: args, env: env, logPath: logPath, load: load, source: source}
	code := measure(ctx, c, o, load, mgr, mem, plane, cold, r)
	r.hwmKiB, _ = readStatusKiB(mgr.pid(), "VmHWM:")
	r.peakRSSKiB, r.finalRSSKiB = mem.stop()
	r.metrics = mgr.scrape()
	r.apiserver = scrapeAPIServer(cfg)
	r.log = summarizeLog(logPath)
	report := r.render()
	fmt.Print(report)
	if o.results != "" {
		err := os.MkdirAll(filepath.Dir(o.results), 0o755)
		if err == nil {
			err = os.WriteFile(o.results, []byte(report), 0o644)
		}
		if err != nil {
			logf("writing %s: %v", o.results, err)
		}
	}
	return code
}

func fail(err error) int {
	_, _ = fmt.Fprintln(os.Stderr, "scale:", err)
	return 2
}

func logf(format string, args ...any) {
	_, _ = fmt.Fprintf(os.Stderr, "%s  "+format+"\n", append([]any{time.Now().Format("15:04:05.000")}, args...)...)
}

// repoRoot is the directory of the go.mod above the working directory.
func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if b, err := os.ReadFile(filepath.Join(dir, "go.mod")); err == nil && strings.Contains(string(b), "module github.com/keyward-dev/keyward\n") {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("run from inside the keyward repository (no go.mod of github.com/keyward-dev/keyward above the working directory)")
		}
		dir = parent
	}
}

// fingerprint identifies the manager's source: the Go files of the main module's
// packages that the manager is built from. Other engineers change them while runs are
// compared, so every report names the code it measured.
func fingerprint(ctx context.Context, src string) string {
	cmd := exec.CommandContext(ctx, "go", "list", "-deps", "-f", `{{if and .Module .Module.Main}}{{.Dir}}|{{join .GoFiles ","}}{{end}}`, ".")
	cmd.Dir = src
	out, err := cmd.Output()
	if err != nil {
		return fmt.Sprintf("%s (go list: %v)", src, err)
	}
	h := sha256.New()
	var n int
	var newest string
	var newestAt time.Time
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		dir, files, ok := strings.Cut(line, "|")
		if !ok || files == "" {
			continue
		}
		for _, f := range strings.Split(files, ",") {
			path := filepath.Join(dir, f)
			b, err := os.ReadFile(path)
			if err != nil {
				continue
			}
			rel, _ := filepath.Rel(src, path)
			n++
			_, _ = fmt.Fprintf(h, "%s\x00%d\x00", rel, len(b))
			_, _ = h.Write(b)
			if info, err := os.Stat(path); err == nil && info.ModTime().After(newestAt) {
				newest, newestAt = rel, info.ModTime()
			}
		}
	}
	return fmt.Sprintf("%s: sha256:%x over the %d Go files of the manager; newest %s, %s", src, h.Sum(nil)[:6], n, newest, newestAt.UTC().Format(time.RFC3339))
}

// ---------------------------------------------------------------------------------------
// The manager subprocess

type manager struct {
	cmd        *exec.Cmd
	logPath    string
	logFile    *os.File
	exited     chan struct{}
	exitErr    error
	metricsURL string
	killOnce   sync.Once
}

func startManager(bin string, args, env []string, kubeconfig, logPath string) (*manager, error) {
	f, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, args...)
	cmd.Env = append(append(os.Environ(), "KUBECONFIG="+kubeconfig), env...)
	cmd.Stdout, cmd.Stderr = f, f
	// Dies with the harness even when the harness is killed hard.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("starting the manager: %w", err)
	}
	m := &manager{cmd: cmd, logPath: logPath, logFile: f, exited: make(chan struct{})}
	go func() {
		if m.exitErr = cmd.Wait(); m.exitErr == nil {
			m.exitErr = errors.New("exit status 0")
		}
		close(m.exited)
	}()
	return m, nil
}

func (m *manager) pid() int { return m.cmd.Process.Pid }

func (m *manager) running() bool {
	select {
	case <-m.exited:
		return false
	default:
		return true
	}
}

// kill stops the manager: SIGTERM, then SIGKILL after 5 s.
func (m *manager) kill() {
	m.killOnce.Do(func() {
		if m.running() {
			_ = m.cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-m.exited:
			case <-time.After(5 * time.Second):
				_ = m.cmd.Process.Kill()
				<-m.exited
			}
		}
		_ = m.logFile.Close()
	})
}

// waitStarted waits until the three controllers run their workers (their caches are synced).
func (m *manager) waitStarted(ctx context.Context, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if !m.running() {
			return fmt.Errorf("the manager exited (%w); last log lines:\n%s", m.exitErr, tail(m.logPath, 20))
		}
		b, _ := os.ReadFile(m.logPath)
		if strings.Count(string(b), "Starting workers") >= 3 {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	return fmt.Errorf("the manager did not start its controllers within %s; last log lines:\n%s", timeout, tail(m.logPath, 20))
}

func tail(path string, n int) string {
	b, _ := os.ReadFile(path)
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// findMetricsURL finds the manager's metrics endpoint among its listening sockets: it was
// started on 127.0.0.1:0, so the port is only known from /proc.
func findMetricsURL(pid int) string {
	for range 50 {
		for _, port := range listeningPorts(pid) {
			u := fmt.Sprintf("http://127.0.0.1:%d/metrics", port)
			resp, err := (&http.Client{Timeout: 2 * time.Second}).Get(u)
			if err != nil {
				continue
			}
			b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK && strings.Contains(string(b), "controller_runtime_") {
				return u
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	return ""
}

func listeningPorts(pid int) []int {
	inodes := map[string]bool{}
	fds, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	for _, fd := range fds {
		link, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, fd.Name()))
		if err == nil && strings.HasPrefix(link, "socket:[") {
			inodes[strings.TrimSuffix(strings.TrimPrefix(link, "socket:["), "]")] = true
		}
	}
	var ports []int
	for _, table := range []string{"tcp", "tcp6"} {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/net/%s", pid, table))
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n")[1:] {
			f := strings.Fields(line)
			if len(f) < 10 || f[3] != "0A" || !inodes[f[9]] { // 0A: LISTEN
				continue
			}
			if i := strings.LastIndexByte(f[1], ':'); i >= 0 {
				if p, err := strconv.ParseInt(f[1][i+1:], 16, 32); err == nil {
					ports = append(ports, int(p))
				}
			}
		}
	}
	return ports
}

// scrape reads the manager's Prometheus metrics (nil when unavailable).
func (m *manager) scrape() promSamples {
	if m.metricsURL == "" || !m.running() {
		return nil
	}
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Get(m.metricsURL)
	if err != nil {
		return nil
	}
	defer func() { _ = resp.Body.Close() }()
	return parseProm(resp.Body)
}

// scrapeAPIServer reads the API server's metrics (nil when unavailable).
func scrapeAPIServer(cfg *rest.Config) promSamples {
	hc, err := rest.HTTPClientFor(cfg)
	if err != nil {
		return nil
	}
	hc.Timeout = 30 * time.Second
	resp, err := hc.Get(strings.TrimSuffix(cfg.Host, "/") + "/metrics")
	if err != nil {
		return nil
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusOK {
		return nil
	}
	return parseProm(resp.Body)
}

// promSamples maps `name{labels}` to a value; labels are kept as text.
type promSamples map[string]float64

func parseProm(r io.Reader) promSamples {
	out := promSamples{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		if v, err := strconv.ParseFloat(line[i+1:], 64); err == nil {
			out[line[:i]] = v
		}
	}
	return out
}

// sum adds the samples of a metric whose labels contain every given `k="v"` pair.
func (p promSamples) sum(name string, labels ...string) float64 {
	var s float64
	for k, v := range p {
		n, l, _ := strings.Cut(k, "{")
		if n != name {
			continue
		}
		if !slices.ContainsFunc(labels, func(want string) bool { return !strings.Contains(l, want) }) {
			s += v
		}
	}
	return s
}

// groupBy sums a metric per the values of the given labels (joined by a space).
func (p promSamples) groupBy(name string, labels ...string) map[string]float64 {
	out := map[string]float64{}
	for k, v := range p {
		n, l, _ := strings.Cut(k, "{")
		if n != name {
			continue
		}
		lv := parseLabels(strings.TrimSuffix(l, "}"))
		parts := make([]string, 0, len(labels))
		for _, want := range labels {
			parts = append(parts, lv[want])
		}
		out[strings.Join(parts, " ")] += v
	}
	return out
}

func parseLabels(s string) map[string]string {
	out := map[string]string{}
	for s != "" {
		k, rest, ok := strings.Cut(s, `="`)
		if !ok {
			break
		}
		var v strings.Builder
		i := 0
		for ; i < len(rest) && rest[i] != '"'; i++ {
			if rest[i] == '\\' && i+1 < len(rest) {
				i++
			}
			v.WriteByte(rest[i])
		}
		out[strings.TrimPrefix(k, ",")] = v.String()
		if i+1 >= len(rest) {
			break
		}
		s = rest[i+1:]
	}
	return out
}

// label values of a metric, for one label name.
func (p promSamples) labelValues(name, label string) []string {
	seen := map[string]bool{}
	for k := range p {
		n, l, _ := strings.Cut(k, "{")
		if n != name {
			continue
		}
		if _, rest, ok := strings.Cut(l, label+`="`); ok {
			if v, _, ok := strings.Cut(rest, `"`); ok {
				seen[v] = true
			}
		}
	}
	out := make([]string, 0, len(seen))
	for v := range seen {
		out = append(out, v)
	}
	sort.Strings(out)
	return out
}

// ---------------------------------------------------------------------------------------
// /proc sampling

func readStatusKiB(pid int, key string) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, key); ok {
			f := strings.Fields(rest)
			if len(f) > 0 {
				return strconv.ParseInt(f[0], 10, 64)
			}
		}
	}
	return 0, fmt.Errorf("%s not in /proc/%d/status", key, pid)
}

// cpuSeconds is utime+stime of a process.
func cpuSeconds(pid int) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 || i+2 >= len(s) {
		return 0
	}
	f := strings.Fields(s[i+2:]) // f[0] is field 3 (state); utime is field 14, stime 15
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseFloat(f[11], 64)
	st, _ := strconv.ParseFloat(f[12], 64)
	return (ut + st) / clockTicks
}

// controlPlanePIDs finds the kube-apiserver and etcd that envtest started (our children).
func controlPlanePIDs() map[string]int {
	out := map[string]int{}
	self := os.Getpid()
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			continue
		}
		s := string(b)
		open, closing := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
		if open < 0 || closing < open {
			continue
		}
		comm := s[open+1 : closing]
		f := strings.Fields(s[closing+2:])
		if len(f) < 2 {
			continue
		}
		if ppid, _ := strconv.Atoi(f[1]); ppid == self && (comm == "kube-apiserver" || comm == "etcd") {
			out[comm] = pid
		}
	}
	return out
}

type memSampler struct {
	mu       sync.Mutex
	peakKiB  int64
	lastKiB  int64
	done     chan struct{}
	finished chan struct{}
}

func startSampler(pid int, every time.Duration) *memSampler {
	s := &memSampler{done: make(chan struct{}), finished: make(chan struct{})}
	go func() {
		defer close(s.finished)
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			if kib, err := readStatusKiB(pid, "VmRSS:"); err == nil {
				s.mu.Lock()
				s.lastKiB, s.peakKiB = kib, max(s.peakKiB, kib)
				s.mu.Unlock()
			}
			select {
			case <-s.done:
				return
			case <-t.C:
			}
		}
	}()
	return s
}

func (s *memSampler) current() (last, peak int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lastKiB, s.peakKiB
}

func (s *memSampler) stop() (peak, last int64) {
	close(s.done)
	<-s.finished
	l, p := s.current()
	return p, l
}

func mib(kib int64) float64 { return float64(kib) / 1024 }

// ---------------------------------------------------------------------------------------
// Load

type load struct {
	signingKeys []*v1alpha1.SigningKey
	policies    []*v1alpha1.TokenPolicy
	revocations []*v1alpha1.RevocationEntry
	expected    map[string]int32 // policy name -> revocations in its scope
	targets     map[string]int   // jti, subject, ... -> entries
	scopes      map[string]int   // all, one policy, several policies -> entries
}

func generate(o options) *load {
	rng := rand.New(rand.NewPCG(o.seed, 0x6b657977617264))
	l := &load{expected: map[string]int32{}, targets: map[string]int{}, scopes: map[string]int{}}
	for i := range o.signingKeys {
		l.signingKeys = append(l.signingKeys, &v1alpha1.SigningKey{
			ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("sk-%05d", i), Namespace: o.namespace},
			Spec:       v1alpha1.SigningKeySpec{Algorithm: v1alpha1.ES256},
		})
	}
	policyNames := make([]string, o.policies)
	for i := range o.policies {
		name := fmt.Sprintf("policy-%03d", i)
		policyNames[i] = name
		n := min(1+rng.IntN(3), o.signingKeys)
		var keys []string
		for len(keys) < n {
			k := l.signingKeys[rng.IntN(o.signingKeys)].Name
			if !slices.Contains(keys, k) {
				keys = append(keys, k)
			}
		}
		l.policies = append(l.policies, &v1alpha1.TokenPolicy{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: o.namespace},
			Spec: v1alpha1.TokenPolicySpec{
				Issuer:      fmt.Sprintf("https://issuer-%03d.scale.keyward.test", i),
				Audiences:   []string{fmt.Sprintf("api-%03d", i), "scale"},
				SigningKeys: keys,
			},
		})
	}
	for i := range o.revocations {
		re := &v1alpha1.RevocationEntry{
			ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("rev-%06d", i), Namespace: o.namespace},
			Spec:       v1alpha1.RevocationEntrySpec{Reason: "scale test"},
		}
		// Targets: 85% jti, 5% each subject, session and client. Never keyID: that
		// withdraws a signing key (an emergency rotation), not what this load is about.
		switch p := rng.IntN(100); {
		case p < 85:
			re.Spec.JTI = uuid(rng)
			l.targets["jti"]++
		case p < 90:
			re.Spec.Subject = fmt.Sprintf("user-%06d@scale.keyward.test", i)
			l.targets["subject"]++
		case p < 95:
			re.Spec.SessionID = "sid-" + uuid(rng)
			l.targets["sessionID"]++
		default:
			re.Spec.ClientID = fmt.Sprintf("client-%06d", i)
			l.targets["clientID"]++
		}
		// Scope: 80% every policy, 15% one policy, 5% two or three.
		switch p := rng.IntN(100); {
		case p < 80:
			l.scopes["all policies"]++
		case p < 95:
			re.Spec.Policies = []string{policyNames[rng.IntN(o.policies)]}
			l.scopes["one policy"]++
		default:
			n := min(2+rng.IntN(2), o.policies)
			for len(re.Spec.Policies) < n {
				if p := policyNames[rng.IntN(o.policies)]; !slices.Contains(re.Spec.Policies, p) {
					re.Spec.Policies = append(re.Spec.Policies, p)
				}
			}
			l.scopes["2-3 policies"]++
		}
		for _, p := range policyNames {
			if len(re.Spec.Policies) == 0 || slices.Contains(re.Spec.Policies, p) {
				l.expected[p]++
			}
		}
		l.revocations = append(l.revocations, re)
	}
	return l
}

func uuid(rng *rand.Rand) string {
	var b [16]byte
	for i := range b {
		b[i] = byte(rng.Uint32())
	}
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

// createAll creates objects with a pool of workers; transient errors are retried.
func createAll[T client.Object](ctx context.Context, c client.Client, workers int, objs []T, created *atomic.Int64) error {
	ch := make(chan T)
	errc := make(chan error, workers)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for obj := range ch {
				if err := createWithRetry(ctx, c, obj); err != nil {
					errc <- fmt.Errorf("creating %s: %w", obj.GetName(), err)
					cancel()
					return
				}
				created.Add(1)
			}
		})
	}
feed:
	for _, obj := range objs {
		select {
		case ch <- obj:
		case <-ctx.Done():
			break feed
		}
	}
	close(ch)
	wg.Wait()
	select {
	case err := <-errc:
		return err
	default:
		return ctx.Err()
	}
}

func createWithRetry(ctx context.Context, c client.Client, obj client.Object) error {
	var err error
	for attempt := range 10 {
		err = c.Create(ctx, obj)
		switch {
		case err == nil, apierrors.IsAlreadyExists(err) && attempt > 0: // an earlier attempt got through
			return nil
		case apierrors.IsTooManyRequests(err), apierrors.IsServerTimeout(err), apierrors.IsTimeout(err),
			apierrors.IsInternalError(err), apierrors.IsServiceUnavailable(err), isNetError(err):
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(time.Duration(attempt+1) * 100 * time.Millisecond):
			}
		default:
			return err
		}
	}
	return err
}

func isNetError(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNRESET)
}

// ---------------------------------------------------------------------------------------
// Steady state

type kindState struct {
	ready, total int
	waiting      map[string]int // why objects are not ready -> count
}

func (k *kindState) notReady(why string) {
	if k.waiting == nil {
		k.waiting = map[string]int{}
	}
	k.waiting[why]++
}

func (k kindState) done(want int) bool { return k.total == want && k.ready == want }

func (k kindState) why() string {
	type kv struct {
		k string
		v int
	}
	var l []kv
	for k, v := range k.waiting {
		l = append(l, kv{k, v})
	}
	sort.Slice(l, func(i, j int) bool { return l[i].v > l[j].v || l[i].v == l[j].v && l[i].k < l[j].k })
	var parts []string
	for i, e := range l {
		if i == 4 {
			parts = append(parts, "...")
			break
		}
		parts = append(parts, fmt.Sprintf("%d %s", e.v, e.k))
	}
	return strings.Join(parts, "; ")
}

func readyCondition(conds []metav1.Condition, generation int64) (ok bool, why string) {
	c := meta.FindStatusCondition(conds, v1alpha1.ConditionReady)
	switch {
	case c == nil:
		return false, "without Ready"
	case c.Status != metav1.ConditionTrue:
		return false, "Ready=" + string(c.Status) + " (" + c.Reason + ")"
	case c.ObservedGeneration != generation:
		return false, "Ready for an older generation"
	}
	return true, ""
}

func checkSigningKeys(ctx context.Context, c client.Client, ns string) (kindState, error) {
	var list v1alpha1.SigningKeyList
	if err := c.List(ctx, &list, client.InNamespace(ns)); err != nil {
		return kindState{}, err
	}
	s := kindState{total: len(list.Items)}
	for i := range list.Items {
		sk := &list.Items[i]
		ok, why := readyCondition(sk.Status.Conditions, sk.Generation)
		switch {
		case sk.Status.ActiveKeyID == "":
			s.notReady("without activeKeyID")
		case sk.Status.ObservedGeneration != sk.Generation:
			s.notReady("observedGeneration behind")
		case !ok:
			s.notReady(why)
		default:
			s.ready++
		}
	}
	return s, nil
}

func checkPolicies(ctx context.Context, c client.Client, ns string, expected map[string]int32) (kindState, error) {
	var list v1alpha1.TokenPolicyList
	if err := c.List(ctx, &list, client.InNamespace(ns)); err != nil {
		return kindState{}, err
	}
	s := kindState{total: len(list.Items)}
	for i := range list.Items {
		tp := &list.Items[i]
		ok, why := readyCondition(tp.Status.Conditions, tp.Generation)
		switch {
		case !ok:
			s.notReady(why)
		case tp.Status.Revocations != expected[tp.Name]:
			s.notReady("short of their revocations")
		default:
			s.ready++
		}
	}
	return s, nil
}

// policyProgress is "revocations in the bundle / expected" summed over the policies.
func policyProgress(ctx context.Context, c client.Client, ns string) (int64, error) {
	var list v1alpha1.TokenPolicyList
	if err := c.List(ctx, &list, client.InNamespace(ns)); err != nil {
		return 0, err
	}
	var n int64
	for _, tp := range list.Items {
		n += int64(tp.Status.Revocations)
	}
	return n, nil
}

func checkRevocations(ctx context.Context, c client.Client, ns string) (kindState, error) {
	var list v1alpha1.RevocationEntryList
	if err := c.List(ctx, &list, client.InNamespace(ns)); err != nil {
		return kindState{}, err
	}
	s := kindState{total: len(list.Items)}
	for i := range list.Items {
		if list.Items[i].Status.ExpiresAt != nil {
			s.ready++
		} else {
			s.notReady("without expiresAt")
		}
	}
	return s, nil
}

// tableLister lists Keyward objects as server-side Tables (printer columns only).
type tableLister struct {
	hc       *http.Client
	base, ua string
}

func newTableLister(cfg *rest.Config, namespace string) (*tableLister, error) {
	hc, err := rest.HTTPClientFor(cfg)
	if err != nil {
		return nil, err
	}
	return &tableLister{hc: hc, ua: cfg.UserAgent,
		base: strings.TrimSuffix(cfg.Host, "/") + "/apis/" + v1alpha1.GroupVersion.String() + "/namespaces/" + namespace + "/"}, nil
}

// list returns the rows of a resource as column name -> cell.
func (t *tableLister) list(ctx context.Context, resource string, columns ...string) ([]map[string]any, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, t.base+resource+"?includeObject=None", nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/json;as=Table;v=v1;g=meta.k8s.io")
	req.Header.Set("User-Agent", t.ua)
	resp, err := t.hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return nil, fmt.Errorf("listing %s as a table: %s: %s", resource, resp.Status, b)
	}
	var table metav1.Table
	if err := json.NewDecoder(resp.Body).Decode(&table); err != nil {
		return nil, fmt.Errorf("decoding the %s table: %w", resource, err)
	}
	index := map[string]int{}
	for i, c := range table.ColumnDefinitions {
		index[c.Name] = i
	}
	for _, c := range columns {
		if _, ok := index[c]; !ok {
			return nil, fmt.Errorf("the %s table has no %q column (printer columns changed?)", resource, c)
		}
	}
	rows := make([]map[string]any, 0, len(table.Rows))
	for _, row := range table.Rows {
		m := make(map[string]any, len(columns))
		for _, c := range columns {
			if i := index[c]; i < len(row.Cells) {
				m[c] = row.Cells[i]
			}
		}
		rows = append(rows, m)
	}
	return rows, nil
}

func nonEmpty(v any) bool { s, _ := v.(string); return s != "" }

// signingKeys is the cheap SigningKey check: Ready=True and an active kid.
func (t *tableLister) signingKeys(ctx context.Context) (kindState, error) {
	rows, err := t.list(ctx, "signingkeys", "Ready", "Active KID")
	if err != nil {
		return kindState{}, err
	}
	s := kindState{total: len(rows)}
	for _, r := range rows {
		switch {
		case !nonEmpty(r["Active KID"]):
			s.notReady("without activeKeyID")
		case r["Ready"] != "True":
			s.notReady(fmt.Sprintf("Ready=%v", r["Ready"]))
		default:
			s.ready++
		}
	}
	return s, nil
}

// revocations is the cheap RevocationEntry check: the Expires column is status.expiresAt.
func (t *tableLister) revocations(ctx context.Context) (kindState, error) {
	rows, err := t.list(ctx, "revocationentries", "Expires")
	if err != nil {
		return kindState{}, err
	}
	s := kindState{total: len(rows)}
	for _, r := range rows {
		if nonEmpty(r["Expires"]) {
			s.ready++
		} else {
			s.notReady("without expiresAt")
		}
	}
	return s, nil
}

type cpuMark struct {
	manager, harness float64
	plane            map[string]float64
	busy, total      float64 // the whole machine, from /proc/stat
}

// machineCPU is the busy and total CPU seconds of the machine since boot.
func machineCPU() (busy, total float64) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	for i, v := range f[1:] {
		x, _ := strconv.ParseFloat(v, 64)
		if i >= 8 { // guest time is already counted in user time
			break
		}
		total += x
		if i != 3 && i != 4 { // idle, iowait
			busy += x
		}
	}
	return busy / clockTicks, total / clockTicks
}

func markCPU(mgrPID int, plane map[string]int) cpuMark {
	m := cpuMark{manager: cpuSeconds(mgrPID), harness: cpuSeconds(os.Getpid()), plane: map[string]float64{}}
	m.busy, m.total = machineCPU()
	for name, pid := range plane {
		m.plane[name] = cpuSeconds(pid)
	}
	return m
}

func (m cpuMark) sub(o cpuMark) cpuMark {
	d := cpuMark{manager: m.manager - o.manager, harness: m.harness - o.harness, plane: map[string]float64{},
		busy: m.busy - o.busy, total: m.total - o.total}
	for k, v := range m.plane {
		d.plane[k] = v - o.plane[k]
	}
	return d
}

type runResult struct {
	opts    options
	source  string
	cfg     *rest.Config
	args    []string
	env     []string
	logPath string
	load    *load

	createErr                       error
	converged                       bool
	creation, converge              time.Duration // from the first create
	skReadyAt, tpReadyAt, reReadyAt time.Duration // first poll where the kind was complete
	held                            bool          // steady state still held after settle
	last                            [3]kindState  // SigningKeys, TokenPolicies, RevocationEntries
	cpuStartup, cpuRun, cpuSettle   cpuMark
	settle                          time.Duration
	rssAtConverge                   int64
	peakRSSKiB, finalRSSKiB, hwmKiB int64
	metrics, apiserver              promSamples
	log                             logSummary
	managerExited                   bool
	createdSK, createdTP, createdRE int64
	pollCount                       int
	pollTime                        time.Duration
	loadStart, loadEnd              string
	cold                            time.Duration // -cold-start: creation before the manager started
	coldCPU                         cpuMark
}

func loadAvg() string {
	b, _ := os.ReadFile("/proc/loadavg")
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

// coldStart is the state of a -cold-start run when the manager starts.
type coldStart struct {
	created   time.Duration // creating every object took this long
	createCPU cpuMark       // CPU used while creating (no manager yet)
	start     time.Time     // the manager started then
	cpu       cpuMark       // CPU times then (the manager's is zero)
	loadAvg   string
}

// createLoad creates the SigningKeys, then the TokenPolicies, then the RevocationEntries.
func createLoad(ctx context.Context, c client.Client, o options, l *load, sk, tp, re *atomic.Int64) error {
	if err := createAll(ctx, c, o.workers, l.signingKeys, sk); err != nil {
		return err
	}
	if err := createAll(ctx, c, o.workers, l.policies, tp); err != nil {
		return err
	}
	return createAll(ctx, c, o.workers, l.revocations, re)
}

func measure(ctx context.Context, c client.Client, o options, l *load, mgr *manager, mem *memSampler, plane map[string]int, cold *coldStart, r *runResult) int {
	zero := cpuMark{plane: map[string]float64{}}
	cpu0 := markCPU(mgr.pid(), plane)
	r.cpuStartup = cpu0.sub(zero)
	r.loadStart = loadAvg()

	var createdSK, createdTP, createdRE atomic.Int64
	var creationDone atomic.Bool
	var creationEnd atomic.Int64
	start := time.Now()
	createErr := make(chan error, 1)
	if cold != nil {
		// Everything exists; the clock started with the manager, cache sync included.
		r.cold, r.coldCPU = cold.created, cold.createCPU
		start, cpu0, r.loadStart = cold.start, cold.cpu, cold.loadAvg
		createdSK.Store(int64(len(l.signingKeys)))
		createdTP.Store(int64(len(l.policies)))
		createdRE.Store(int64(len(l.revocations)))
		creationDone.Store(true)
		createErr <- nil
	} else {
		createCtx, cancelCreate := context.WithCancel(ctx)
		defer cancelCreate()
		logf("creating %d SigningKeys, %d TokenPolicies, %d RevocationEntries in namespace %s (%d workers, %.0f QPS)",
			len(l.signingKeys), len(l.policies), len(l.revocations), o.namespace, o.workers, o.qps)
		go func() {
			err := createLoad(createCtx, c, o, l, &createdSK, &createdTP, &createdRE)
			creationEnd.Store(int64(time.Since(start)))
			creationDone.Store(true)
			createErr <- err
		}()
	}

	deadline := start.Add(o.timeout)
	nextProgress := start.Add(5 * time.Second)
	// Polling must not eat the cores it measures: a full List of 10,000 RevocationEntries
	// costs about 0.9 s of API server CPU and 0.5 s of harness CPU. So while a kind is
	// incomplete it is listed as a server-side Table (the CRD's printer columns, no objects:
	// about 0.17 s of API server CPU for 10,000 rows), SigningKeys are listed in full only
	// once their table looks complete, and a kind is no longer listed once complete.
	// RevocationEntries and TokenPolicies only count once creation has ended. When every
	// kind has been seen complete, one more poll lists all three in full: steady state is
	// the start of the poll that finds all of them complete at once (a kind that regressed
	// is polled again).
	tables, err := newTableLister(r.cfg, o.namespace)
	if err != nil {
		logf("table lists: %v", err)
		return 2
	}
	var creationSeen bool
	var done [3]bool
	var lastRE time.Time
	var st [3]kindState
	want := [3]int{len(l.signingKeys), len(l.policies), len(l.revocations)}
	for {
		pollStart := time.Now()
		t := time.Since(start)
		if creationDone.Load() && !creationSeen {
			creationSeen = true
			r.creation = time.Duration(creationEnd.Load())
			if err := <-createErr; err != nil {
				r.createErr = err
				logf("creation failed after %s: %v", r.creation.Round(time.Millisecond), err)
				break
			}
			if cold == nil {
				logf("creation ended after %s", r.creation.Round(time.Millisecond))
			}
		}
		confirm := done[0] && done[1] && done[2]
		var errs []error
		if !done[0] || confirm {
			var err error
			if !confirm {
				st[0], err = tables.signingKeys(ctx)
			}
			// The table shows Ready and the active kid, not for which generation.
			if confirm || err == nil && st[0].done(want[0]) {
				st[0], err = checkSigningKeys(ctx, c, o.namespace)
			}
			errs = append(errs, err)
		}
		if !done[1] || confirm {
			var err error
			st[1], err = checkPolicies(ctx, c, o.namespace, l.expected)
			errs = append(errs, err)
		}
		// The RevocationEntry List is the expensive one: every 2 s until 90% have their
		// expiry, every poll after that.
		reEvery := 2 * time.Second
		if 10*st[2].ready >= 9*want[2] {
			reEvery = o.poll
		}
		if creationSeen && (confirm || !done[2] && time.Since(lastRE) >= reEvery-o.poll/2) {
			var err error
			lastRE = time.Now()
			if confirm {
				st[2], err = checkRevocations(ctx, c, o.namespace)
			} else {
				st[2], err = tables.revocations(ctx)
			}
			errs = append(errs, err)
		}
		r.pollCount++
		r.pollTime += time.Since(pollStart)
		err := errors.Join(errs...)
		if err != nil && ctx.Err() == nil {
			logf("poll: %v", err)
		}
		if err == nil {
			r.last = st
			complete := [3]bool{
				st[0].done(want[0]) && createdSK.Load() == int64(want[0]),
				creationSeen && st[1].done(want[1]),
				creationSeen && st[2].done(want[2]),
			}
			at := []*time.Duration{&r.skReadyAt, &r.tpReadyAt, &r.reReadyAt}
			for i := range done {
				if complete[i] && *at[i] == 0 {
					*at[i] = t
				}
				done[i] = complete[i]
			}
			if confirm && done[0] && done[1] && done[2] {
				r.converged, r.converge = true, t
				r.rssAtConverge, _ = readStatusKiB(mgr.pid(), "VmRSS:")
				break
			}
			if done[0] && done[1] && done[2] {
				continue // confirm at once
			}
		}
		if !mgr.running() {
			r.managerExited = true
			logf("the manager exited: %v; last log lines:\n%s", mgr.exitErr, tail(mgr.logPath, 20))
			break
		}
		if time.Now().After(nextProgress) {
			nextProgress = nextProgress.Add(5 * time.Second)
			rss, _ := mem.current()
			revs, _ := policyProgress(ctx, c, o.namespace)
			var bundled int64
			for _, n := range l.expected {
				bundled += int64(n)
			}
			re := "not listed until creation ends"
			if creationSeen {
				re = fmt.Sprintf("%d/%d with expiresAt", st[2].ready, len(l.revocations))
			}
			depth := ""
			if m := mgr.scrape(); m != nil {
				depth = fmt.Sprintf("  queues sk=%.0f tp=%.0f re=%.0f",
					m.sum("workqueue_depth", `controller="signingkey"`), m.sum("workqueue_depth", `controller="tokenpolicy"`), m.sum("workqueue_depth", `controller="revocationentry"`))
			}
			logf("t=%5.1fs created sk=%d tp=%d re=%d | SigningKeys ready %d/%d | TokenPolicies ready %d/%d (bundled %d/%d revocations) | RevocationEntries %s | manager RSS %.0f MiB, CPU %.1fs%s",
				t.Seconds(), createdSK.Load(), createdTP.Load(), createdRE.Load(),
				st[0].ready, len(l.signingKeys), st[1].ready, len(l.policies), revs, bundled, re,
				mib(rss), cpuSeconds(mgr.pid())-cpu0.manager, depth)
		}
		if time.Now().After(deadline) {
			logf("no steady state within %s", o.timeout)
			break
		}
		select {
		case <-ctx.Done():
			logf("interrupted")
			r.createdSK, r.createdTP, r.createdRE = createdSK.Load(), createdTP.Load(), createdRE.Load()
			return 130
		case <-time.After(o.poll - time.Since(pollStart)):
		}
	}
	r.createdSK, r.createdTP, r.createdRE = createdSK.Load(), createdTP.Load(), createdRE.Load()
	cpu1 := markCPU(mgr.pid(), plane)
	r.cpuRun = cpu1.sub(cpu0)
	r.loadEnd = loadAvg()
	if !r.converged {
		if r.createErr != nil {
			return 2
		}
		return 1
	}
	if cold != nil {
		logf("steady state %s after the manager started", r.converge.Round(time.Millisecond))
	} else {
		logf("steady state after %s (%s after creation ended)", r.converge.Round(time.Millisecond), (r.converge - r.creation).Round(time.Millisecond))
	}
	if o.settle > 0 {
		logf("settling for %s", o.settle)
		select {
		case <-ctx.Done():
			return 130
		case <-time.After(o.settle):
		}
		r.settle = o.settle
		r.cpuSettle = markCPU(mgr.pid(), plane).sub(cpu1)
		sk, err1 := checkSigningKeys(ctx, c, o.namespace)
		tp, err2 := checkPolicies(ctx, c, o.namespace, l.expected)
		re, err3 := checkRevocations(ctx, c, o.namespace)
		r.held = errors.Join(err1, err2, err3) == nil && sk.done(len(l.signingKeys)) && tp.done(len(l.policies)) && re.done(len(l.revocations))
		r.last = [3]kindState{sk, tp, re}
	}
	return 0
}

// ---------------------------------------------------------------------------------------
// Manager log

type logSummary struct {
	lines, throttled, reconcileErrors, bundleRenders int
	maxThrottle                                      time.Duration
	errorsByController                               map[string]int
	errorSamples                                     []string
}

func summarizeLog(path string) logSummary {
	s := logSummary{errorsByController: map[string]int{}}
	f, err := os.Open(path)
	if err != nil {
		return s
	}
	defer func() { _ = f.Close() }()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 4<<20)
	for sc.Scan() {
		line := sc.Text()
		s.lines++
		switch {
		case strings.Contains(line, "Waited before sending request") || strings.Contains(line, "client-side throttling"):
			s.throttled++
			if d := field(line, "delay"); d != "" {
				if v, err := time.ParseDuration(strings.Trim(d, `"`)); err == nil {
					s.maxThrottle = max(s.maxThrottle, v)
				}
			}
		case strings.Contains(line, "Reconciler error"):
			s.reconcileErrors++
			s.errorsByController[strings.Trim(field(line, "controller"), `"`)]++
			if len(s.errorSamples) < 3 {
				s.errorSamples = append(s.errorSamples, strings.Trim(field(line, "error"), `"`))
			}
		case strings.Contains(line, "Rendered verifier bundle"):
			s.bundleRenders++
		}
	}
	return s
}

// field extracts a value from a JSON log line (`"key":value`) or a klog line (`key=value`).
func field(line, key string) string {
	for _, sep := range []string{`"` + key + `":`, key + "="} {
		if _, rest, ok := strings.Cut(line, sep); ok {
			if strings.HasPrefix(rest, `"`) {
				if end := strings.Index(rest[1:], `"`); end >= 0 {
					return rest[:end+2]
				}
			}
			end := strings.IndexAny(rest, ", }")
			if end < 0 {
				end = len(rest)
			}
			return rest[:end]
		}
	}
	return ""
}

// ---------------------------------------------------------------------------------------
// Report

func verdict(ok bool) string {
	if ok {
		return "PASS"
	}
	return "MISS"
}

func secs(d time.Duration) string {
	if d <= 0 {
		return "-"
	}
	return fmt.Sprintf("%.1f s", d.Seconds())
}

func (r *runResult) render() string {
	var b strings.Builder
	o, l := r.opts, r.load
	host, _ := os.Hostname()
	_, _ = fmt.Fprintf(&b, "\nKeyward scale run, %s, host %s, nproc %d (GOMAXPROCS %d), %s\n",
		time.Now().UTC().Format(time.RFC3339), host, runtime.NumCPU(), runtime.GOMAXPROCS(0), runtime.Version())
	_, _ = fmt.Fprintf(&b, "load: %d SigningKeys (ES256, default rotation), %d TokenPolicies, %d RevocationEntries in namespace %q\n",
		len(l.signingKeys), len(l.policies), len(l.revocations), o.namespace)
	_, _ = fmt.Fprintf(&b, "      targets %s; scopes %s\n", mapString(l.targets), mapString(l.scopes))
	_, _ = fmt.Fprintf(&b, "      created %d/%d/%d with %d client workers at %.0f QPS\n", r.createdSK, r.createdTP, r.createdRE, o.workers, o.qps)
	_, _ = fmt.Fprintf(&b, "manager: %s\n", strings.Join(append(slices.Clone(r.env), r.args...), " "))
	_, _ = fmt.Fprintf(&b, "manager source: %s\n", r.source)
	_, _ = fmt.Fprintf(&b, "manager log: %s\n", r.logPath)
	_, _ = fmt.Fprintf(&b, "note: the machine is shared (other builds and tests may run on the same cores), so times are noisy; the\n")
	_, _ = fmt.Fprintf(&b, "      control plane (kube-apiserver, etcd) and this harness run on the same %d cores as the manager.\n\n", runtime.NumCPU())

	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	_, _ = fmt.Fprintln(tw, "measure\tvalue\ttarget\tverdict")
	_, _ = fmt.Fprintln(tw, "-------\t-----\t------\t-------")
	conv := "not reached"
	if r.converged {
		conv = secs(r.converge)
	}
	if r.opts.coldStart {
		_, _ = fmt.Fprintf(tw, "creation of all objects, before the manager started\t%s\t\t\n", secs(r.cold))
		_, _ = fmt.Fprintf(tw, "  CPU: kube-apiserver, etcd, harness\t%.1f s, %.1f s, %.1f s\t\t\n", r.coldCPU.plane["kube-apiserver"], r.coldCPU.plane["etcd"], r.coldCPU.harness)
		_, _ = fmt.Fprintf(tw, "steady state, from the manager's start (cold start)\t%s\t< %s on %d cores\t%s\n", conv, secs(targetConverge), targetCores, verdict(r.converged && r.converge < targetConverge))
	} else {
		_, _ = fmt.Fprintf(tw, "creation of all objects\t%s\t\t\n", secs(r.creation))
		_, _ = fmt.Fprintf(tw, "steady state, from the first create\t%s\t< %s on %d cores\t%s\n", conv, secs(targetConverge), targetCores, verdict(r.converged && r.converge < targetConverge))
		if r.converged {
			_, _ = fmt.Fprintf(tw, "steady state, after creation ended\t%s\t\t\n", secs(r.converge-r.creation))
		}
	}
	_, _ = fmt.Fprintf(tw, "  SigningKeys all ready at\t%s\t\t\n", secs(r.skReadyAt))
	_, _ = fmt.Fprintf(tw, "  RevocationEntries all with expiresAt at\t%s\t\t\n", secs(r.reReadyAt))
	_, _ = fmt.Fprintf(tw, "  TokenPolicies all ready and complete at\t%s\t\t\n", secs(r.tpReadyAt))
	_, _ = fmt.Fprintf(tw, "manager peak RSS (VmHWM)\t%.1f MiB\t< %.0f MiB\t%s\n", mib(r.hwmKiB), targetRSSMiB, verdict(r.hwmKiB > 0 && mib(r.hwmKiB) < targetRSSMiB))
	_, _ = fmt.Fprintf(tw, "manager peak RSS (VmRSS every 200 ms)\t%.1f MiB\t\t\n", mib(r.peakRSSKiB))
	if r.converged {
		_, _ = fmt.Fprintf(tw, "manager RSS at steady state\t%.1f MiB\t\t\n", mib(r.rssAtConverge))
	}
	_, _ = fmt.Fprintf(tw, "manager RSS at the end\t%.1f MiB\t\t\n", mib(r.finalRSSKiB))
	window := "creation to steady state"
	if r.opts.coldStart {
		window = "start to steady state"
	} else {
		_, _ = fmt.Fprintf(tw, "manager CPU, startup (before creation)\t%.1f s\t\t\n", r.cpuStartup.manager)
	}
	_, _ = fmt.Fprintf(tw, "manager CPU, %s\t%.1f s\t\t\n", window, r.cpuRun.manager)
	if r.settle > 0 {
		_, _ = fmt.Fprintf(tw, "manager CPU, %s after steady state\t%.1f s\t\t\n", r.settle, r.cpuSettle.manager)
		_, _ = fmt.Fprintf(tw, "steady state still held after %s\t%v\t\t\n", r.settle, r.held)
	}
	for _, name := range []string{"kube-apiserver", "etcd"} {
		if _, ok := r.cpuRun.plane[name]; ok {
			_, _ = fmt.Fprintf(tw, "%s CPU, %s\t%.1f s\t\t\n", name, window, r.cpuRun.plane[name])
		}
	}
	_, _ = fmt.Fprintf(tw, "harness CPU, %s\t%.1f s\t\t\n", window, r.cpuRun.harness)
	if c := r.cpuRun; c.total > 0 {
		ours := c.manager + c.harness
		for _, v := range c.plane {
			ours += v
		}
		_, _ = fmt.Fprintf(tw, "other processes' CPU, same window\t%.1f s of %.1f s\t\t(shared machine)\n", max(0, c.busy-ours), c.total)
	}
	_, _ = fmt.Fprintf(tw, "load average, start / end\t%s / %s\t\t\n", r.loadStart, r.loadEnd)
	if r.pollCount > 0 {
		_, _ = fmt.Fprintf(tw, "steady-state polls\t%d (avg %s)\t\t\n", r.pollCount, (r.pollTime / time.Duration(r.pollCount)).Round(time.Millisecond))
	}
	_ = tw.Flush()

	if !r.converged || !r.held && r.settle > 0 {
		_, _ = fmt.Fprintf(&b, "\nlast poll:\n")
		for i, name := range []string{"SigningKeys", "TokenPolicies", "RevocationEntries"} {
			k := r.last[i]
			_, _ = fmt.Fprintf(&b, "  %-18s %d/%d ready", name, k.ready, k.total)
			if w := k.why(); w != "" {
				_, _ = fmt.Fprintf(&b, "; waiting: %s", w)
			}
			_, _ = fmt.Fprintln(&b)
		}
	}
	if r.createErr != nil {
		_, _ = fmt.Fprintf(&b, "\ncreation failed: %v\n", r.createErr)
	}
	if r.managerExited {
		_, _ = fmt.Fprintf(&b, "\nthe manager exited during the run; see its log\n")
	}

	if m := r.metrics; m != nil {
		_, _ = fmt.Fprintf(&b, "\nmanager metrics at the end:\n")
		tw = tabwriter.NewWriter(&b, 0, 0, 2, ' ', tabwriter.AlignRight)
		_, _ = fmt.Fprintln(tw, "controller\treconciles\terrors\trequeues\tbusy (s)\tavg (ms)\tqueue adds\tavg wait (ms)\t")
		for _, c := range []string{"signingkey", "tokenpolicy", "revocationentry"} {
			ctl, q := `controller="`+c+`"`, `controller="`+c+`"`
			n := m.sum("controller_runtime_reconcile_total", ctl)
			busy, cnt := m.sum("controller_runtime_reconcile_time_seconds_sum", ctl), m.sum("controller_runtime_reconcile_time_seconds_count", ctl)
			wait, wcnt := m.sum("workqueue_queue_duration_seconds_sum", q), m.sum("workqueue_queue_duration_seconds_count", q)
			_, _ = fmt.Fprintf(tw, "%s\t%.0f\t%.0f\t%.0f\t%.1f\t%.1f\t%.0f\t%.0f\t\n", c, n,
				m.sum("controller_runtime_reconcile_total", ctl, `result="error"`),
				m.sum("controller_runtime_reconcile_total", ctl, `result="requeue"`)+m.sum("controller_runtime_reconcile_total", ctl, `result="requeue_after"`),
				busy, 1000*busy/max(cnt, 1), m.sum("workqueue_adds_total", q), 1000*wait/max(wcnt, 1))
		}
		_ = tw.Flush()
		_, _ = fmt.Fprintf(&b, "API requests by the manager:")
		for _, method := range m.labelValues("rest_client_requests_total", "method") {
			_, _ = fmt.Fprintf(&b, " %s=%.0f", method, m.sum("rest_client_requests_total", `method="`+method+`"`))
		}
		var non2xx float64
		for _, code := range m.labelValues("rest_client_requests_total", "code") {
			if !strings.HasPrefix(code, "2") {
				non2xx += m.sum("rest_client_requests_total", `code="`+code+`"`)
			}
		}
		_, _ = fmt.Fprintf(&b, " (non-2xx %.0f)\n", non2xx)
		_, _ = fmt.Fprintf(&b, "Go heap in use %.1f MiB, heap from the OS %.1f MiB, goroutines %.0f\n",
			m.sum("go_memstats_heap_inuse_bytes")/(1<<20), m.sum("go_memstats_heap_sys_bytes")/(1<<20), m.sum("go_goroutines"))
		if e := m.sum("keyward_operator_reconcile_errors_total"); e > 0 {
			_, _ = fmt.Fprintf(&b, "keyward reconcile errors by reason:")
			for _, reason := range m.labelValues("keyward_operator_reconcile_errors_total", "reason") {
				_, _ = fmt.Fprintf(&b, " %s=%.0f", reason, m.sum("keyward_operator_reconcile_errors_total", `reason="`+reason+`"`))
			}
			_, _ = fmt.Fprintln(&b)
		}
		var bundle float64
		for _, v := range m.labelValues("keyward_operator_bundle_bytes", "tokenpolicy") {
			bundle = max(bundle, m.sum("keyward_operator_bundle_bytes", `tokenpolicy="`+v+`"`))
		}
		if bundle > 0 {
			_, _ = fmt.Fprintf(&b, "largest bundle %.0f KiB; bundle generations written %.0f over %d policies\n",
				bundle/1024, m.sum("keyward_operator_bundle_generation"), len(l.policies))
		}
	}
	if a := r.apiserver; a != nil {
		count := a.groupBy("apiserver_request_total", "verb", "resource", "subresource")
		durSum := a.groupBy("apiserver_request_duration_seconds_sum", "verb", "resource", "subresource")
		durCnt := a.groupBy("apiserver_request_duration_seconds_count", "verb", "resource", "subresource")
		respSum := a.groupBy("apiserver_response_sizes_sum", "verb", "resource", "subresource")
		keys := make([]string, 0, len(count))
		for k := range count {
			keys = append(keys, k)
		}
		sort.Slice(keys, func(i, j int) bool { return count[keys[i]] > count[keys[j]] })
		_, _ = fmt.Fprintf(&b, "\nAPI server requests over the whole run (harness and manager), top %d:\n", min(12, len(keys)))
		tw = tabwriter.NewWriter(&b, 0, 0, 2, ' ', tabwriter.AlignRight)
		_, _ = fmt.Fprintln(tw, "verb resource subresource\trequests\tavg latency (ms)\tresponses (MiB)\t")
		for _, k := range keys[:min(12, len(keys))] {
			_, _ = fmt.Fprintf(tw, "%s\t%.0f\t%.1f\t%.1f\t\n", strings.TrimSpace(k), count[k], 1000*durSum[k]/max(durCnt[k], 1), respSum[k]/(1<<20))
		}
		_ = tw.Flush()
		writes := a.groupBy("etcd_requests_total", "operation", "group", "resource")
		var wk []string
		for k := range writes {
			f := strings.Split(k, " ")
			if len(f) == 3 && (f[0] == "create" || f[0] == "update" || f[0] == "delete") &&
				(f[1] == v1alpha1.GroupVersion.Group || f[2] == "configmaps" || f[2] == "secrets") {
				wk = append(wk, k)
			}
		}
		sort.Slice(wk, func(i, j int) bool { return writes[wk[i]] > writes[wk[j]] })
		_, _ = fmt.Fprintf(&b, "etcd writes (an update that changes nothing never reaches etcd):")
		for _, k := range wk {
			f := strings.Split(k, " ")
			_, _ = fmt.Fprintf(&b, " %s %s=%.0f", f[0], f[2], writes[k])
		}
		_, _ = fmt.Fprintln(&b)
		watch := a.groupBy("apiserver_watch_events_sizes_sum", "resource")
		wkeys := make([]string, 0, len(watch))
		for k := range watch {
			wkeys = append(wkeys, k)
		}
		sort.Slice(wkeys, func(i, j int) bool { return watch[wkeys[i]] > watch[wkeys[j]] })
		_, _ = fmt.Fprintf(&b, "watch events sent:")
		for _, k := range wkeys[:min(5, len(wkeys))] {
			_, _ = fmt.Fprintf(&b, " %s %.1f MiB", k, watch[k]/(1<<20))
		}
		_, _ = fmt.Fprintln(&b)
	}
	s := r.log
	_, _ = fmt.Fprintf(&b, "\nmanager log: %d lines, %d \"Rendered verifier bundle\", %d \"Reconciler error\"", s.lines, s.bundleRenders, s.reconcileErrors)
	if s.reconcileErrors > 0 {
		_, _ = fmt.Fprintf(&b, " (%s)", mapString(s.errorsByController))
	}
	_, _ = fmt.Fprintf(&b, ", %d client-side throttling waits logged", s.throttled)
	if s.maxThrottle > 0 {
		_, _ = fmt.Fprintf(&b, " (longest %s)", s.maxThrottle.Round(time.Millisecond))
	}
	_, _ = fmt.Fprintln(&b)
	for _, e := range s.errorSamples {
		_, _ = fmt.Fprintf(&b, "  e.g. %s\n", e)
	}
	return b.String()
}

func mapString(m map[string]int) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, 0, len(keys))
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s %d", k, m[k]))
	}
	return strings.Join(parts, ", ")
}

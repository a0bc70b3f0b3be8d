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

// Command refreshload drives refresh-token rotation against an OAuth 2.0 token endpoint
// (the Keyward token service, Ory Hydra) for hack/bench/refresh.sh. Benchmarking only.
//
//	refreshload env -dir D -issuer-url http://127.0.0.1:P/bench
//	    Starts a control plane (envtest: kube-apiserver and etcd from KUBEBUILDER_ASSETS,
//	    the repository's CRDs), writes D/kubeconfig, creates namespace bench with a
//	    SigningKey, a TokenPolicy with spec.issuance (mint client bench/login) and the
//	    ServiceAccount login, writes a ServiceAccount token of login for the token
//	    service's audience to D/login.token, then D/ready, and runs until SIGTERM. The
//	    Keyward manager and token service run as their own processes against D/kubeconfig.
//
//	refreshload createdb -dsn postgres://… -name N
//	    Creates database N (dropped first if it exists) and prints the DSN of it;
//	    refreshload dropdb -dsn … -name N drops it.
//
//	refreshload run -target keyward|hydra -label L [flags]
//	    Seeds -workers refresh-token chains (keyward: POST <issuer>/mint as the login
//	    service; hydra: an OAuth client and, per chain, the authorization-code flow with
//	    the login and consent challenges accepted through Hydra's admin API, as a login
//	    and consent app does), warms up for -warmup, then for -duration each worker
//	    rotates its own chain as fast as it can: POST the token endpoint with
//	    grant_type=refresh_token and the current refresh token, check the answer (200, an
//	    access token, a new refresh token), continue with the new one. A 5xx answer, or a
//	    4xx other than invalid_grant, is retried at once with the same refresh token (the
//	    server did not rotate); any other failure ends the chain. It then presents a spent refresh token, which the server
//	    must refuse, and prints one line:
//
//	    RESULT label=L workers=8 duration_s=15.000 refreshes=… rps=… p50_ms=… p99_ms=…
//	      retried=… warmup_retried=… broken_chains=0 reuse=400_invalid_grant
//	      target_cpu_us=… db_cpu_us=… client_cpu_us=… loadavg=…
//
//	    Latencies run from a refresh's first attempt to its success (retries included). target_cpu_us is the user+system CPU time of -pid per completed
//	    refresh, db_cpu_us that of -db-pid and its children, live and exited
//	    (PostgreSQL's postmaster and backends: the whole server, so other users of it
//	    count too), client_cpu_us this process's own.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	ctrlclient "sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"github.com/keyward-dev/keyward/api/v1alpha1"
)

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	var err error
	switch os.Args[1] {
	case "env":
		err = envCmd(os.Args[2:])
	case "createdb":
		err = createDBCmd(os.Args[2:], true)
	case "dropdb":
		err = createDBCmd(os.Args[2:], false)
	case "run":
		err = runCmd(os.Args[2:])
	default:
		usage()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "refreshload:", err)
		os.Exit(1)
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: refreshload env|createdb|dropdb|run [flags] (see the package documentation)")
	os.Exit(2)
}

// ---- env ---------------------------------------------------------------------------------

const (
	benchNamespace = "bench"
	benchPolicy    = "api"
	loginSA        = "login"
	issuerAudience = "keyward-issuer" // issuer.DefaultAudience
)

func envCmd(args []string) error {
	fs := flag.NewFlagSet("env", flag.ExitOnError)
	dir := fs.String("dir", "", "Directory for kubeconfig, login.token and ready.")
	issuerURL := fs.String("issuer-url", "", "spec.issuer of the TokenPolicy (the token service's URL and path).")
	crds := fs.String("crds", "config/crd/bases", "The CRD directory.")
	_ = fs.Parse(args)
	if *dir == "" || *issuerURL == "" {
		return errors.New("env needs -dir and -issuer-url")
	}
	if os.Getenv("KUBEBUILDER_ASSETS") == "" {
		return errors.New("KUBEBUILDER_ASSETS must name the directory of kube-apiserver and etcd (bin/k8s)")
	}
	logf.SetLogger(zap.New(zap.WriteTo(io.Discard)))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		return err
	}
	if err := v1alpha1.AddToScheme(scheme); err != nil {
		return err
	}
	env := &envtest.Environment{CRDDirectoryPaths: []string{*crds}, ErrorIfCRDPathMissing: true, Scheme: scheme}
	cfg, err := env.Start()
	if err != nil {
		return fmt.Errorf("starting envtest: %w", err)
	}
	defer func() { _ = env.Stop() }()
	user, err := env.AddUser(envtest.User{Name: "bench", Groups: []string{"system:masters"}}, nil)
	if err != nil {
		return err
	}
	kubeconfig, err := user.KubeConfig()
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(*dir, "kubeconfig"), kubeconfig, 0o600); err != nil {
		return err
	}
	c, err := ctrlclient.New(cfg, ctrlclient.Options{Scheme: scheme})
	if err != nil {
		return err
	}
	for _, obj := range []ctrlclient.Object{
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: benchNamespace}},
		&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: loginSA, Namespace: benchNamespace}},
		&v1alpha1.SigningKey{ObjectMeta: metav1.ObjectMeta{Name: "keys", Namespace: benchNamespace}},
		// Every default (ES256 keys, access tokens at+jwt for 10 min, refresh tokens 720 h
		// with a 24 h idle timeout and a 2 s replay window, no binding, burst detection at
		// 30 refreshes a minute per subject and per family, reporting only).
		&v1alpha1.TokenPolicy{ObjectMeta: metav1.ObjectMeta{Name: benchPolicy, Namespace: benchNamespace}, Spec: v1alpha1.TokenPolicySpec{
			Issuer: *issuerURL, Audiences: []string{"orders"}, SigningKeys: []string{"keys"},
			Issuance: &v1alpha1.IssuanceSpec{Scopes: []string{"read"}, MintClients: []string{benchNamespace + "/" + loginSA}},
		}},
	} {
		if err := c.Create(ctx, obj); err != nil {
			return fmt.Errorf("creating %T %s: %w", obj, obj.GetName(), err)
		}
	}
	kube := kubernetes.NewForConfigOrDie(cfg)
	tr := &authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{
		Audiences: []string{issuerAudience}, ExpirationSeconds: ptr(int64(24 * 3600)),
	}}
	res, err := kube.CoreV1().ServiceAccounts(benchNamespace).CreateToken(ctx, loginSA, tr, metav1.CreateOptions{})
	if err != nil {
		return fmt.Errorf("TokenRequest: %w", err)
	}
	if err := os.WriteFile(filepath.Join(*dir, "login.token"), []byte(res.Status.Token), 0o600); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(*dir, "ready"), nil, 0o600); err != nil {
		return err
	}
	fmt.Fprintln(os.Stderr, "refreshload env: control plane ready; kubeconfig", filepath.Join(*dir, "kubeconfig"))
	<-ctx.Done()
	return nil
}

func ptr[T any](v T) *T { return &v }

// ---- createdb ----------------------------------------------------------------------------

func createDBCmd(args []string, create bool) error {
	fs := flag.NewFlagSet("createdb", flag.ExitOnError)
	dsn := fs.String("dsn", "", "DSN of the PostgreSQL server (an administrator).")
	name := fs.String("name", "", "Database to create (letters, digits and _).")
	_ = fs.Parse(args)
	if *dsn == "" || *name == "" || strings.Trim(*name, "abcdefghijklmnopqrstuvwxyz0123456789_") != "" {
		return errors.New("createdb needs -dsn and a -name of [a-z0-9_]")
	}
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, *dsn)
	if err != nil {
		return errors.New("connecting to the PostgreSQL server failed") // the DSN has a password
	}
	defer func() { _ = conn.Close(ctx) }()
	if _, err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+*name+" WITH (FORCE)"); err != nil || !create {
		return err
	}
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+*name); err != nil {
		return err
	}
	u, err := url.Parse(*dsn)
	if err != nil {
		return errors.New("the DSN is not a URL")
	}
	u.Path = "/" + *name
	fmt.Println(u.String())
	return nil
}

// ---- run ---------------------------------------------------------------------------------

type runOpts struct {
	target, label                    string
	tokenURL                         string
	mintURL, saTokenFile             string
	hydraAdmin, hydraPublic, hydraCB string
	workers                          int
	duration, warmup                 time.Duration
	pid, dbPID                       int
	timeout                          time.Duration
	hydraClientAuth                  string
	subject                          string
}

func runCmd(args []string) error {
	var o runOpts
	fs := flag.NewFlagSet("run", flag.ExitOnError)
	fs.StringVar(&o.target, "target", "", "keyward or hydra.")
	fs.StringVar(&o.label, "label", "", "Name of the target in the RESULT line.")
	fs.StringVar(&o.tokenURL, "token-url", "", "The token endpoint (keyward: <issuer>/token; hydra: <public>/oauth2/token).")
	fs.StringVar(&o.mintURL, "mint-url", "", "keyward: <issuer>/mint.")
	fs.StringVar(&o.saTokenFile, "sa-token-file", "", "keyward: the login ServiceAccount's token (refreshload env writes it).")
	fs.StringVar(&o.hydraAdmin, "hydra-admin", "", "hydra: the admin API (http://127.0.0.1:P).")
	fs.StringVar(&o.hydraPublic, "hydra-public", "", "hydra: the public API (http://127.0.0.1:P).")
	fs.StringVar(&o.hydraCB, "hydra-callback", "http://127.0.0.1:9/callback", "hydra: the client's redirect URI (never requested).")
	fs.StringVar(&o.hydraClientAuth, "hydra-client-auth", "none", "hydra: token_endpoint_auth_method of the client: none (a public client, as the Keyward token service's refresh grant) or client_secret_basic.")
	fs.StringVar(&o.subject, "subject", "bench-user", "Subject of the sessions (suffixed with the worker number).")
	fs.IntVar(&o.workers, "workers", 8, "Workers, each rotating its own refresh-token chain.")
	fs.DurationVar(&o.duration, "duration", 15*time.Second, "Measured duration.")
	fs.DurationVar(&o.warmup, "warmup", 3*time.Second, "Unmeasured rotation before the measurement.")
	fs.IntVar(&o.pid, "pid", 0, "PID of the target, for its CPU time per refresh.")
	fs.IntVar(&o.dbPID, "db-pid", 0, "PID of the PostgreSQL postmaster, for its backends' CPU time per refresh.")
	fs.DurationVar(&o.timeout, "timeout", 10*time.Second, "Timeout of one request.")
	_ = fs.Parse(args)
	if (o.target != "keyward" && o.target != "hydra") || o.label == "" || o.tokenURL == "" || o.workers < 1 {
		return errors.New("run needs -target keyward|hydra, -label, -token-url and -workers >= 1")
	}
	hc := &http.Client{
		Timeout: o.timeout,
		Transport: &http.Transport{
			MaxIdleConns: 2 * o.workers, MaxIdleConnsPerHost: 2 * o.workers, IdleConnTimeout: time.Minute,
			DisableCompression: true,
		},
	}
	ctx := context.Background()
	var chains []*chain
	var err error
	switch o.target {
	case "keyward":
		chains, err = seedKeyward(ctx, hc, o)
	case "hydra":
		chains, err = seedHydra(ctx, hc, o)
	}
	if err != nil {
		return fmt.Errorf("seeding %d chains: %w", o.workers, err)
	}
	var warm rotateResult
	if o.warmup > 0 {
		warm = rotate(hc, o, chains, o.warmup, nil)
	}
	load0 := loadAvg()
	cpu0, db0, self0 := cpuOf(o.pid), childrenCPU(o.dbPID), cpuOf(os.Getpid())
	lat := make([][]time.Duration, len(chains))
	res := rotate(hc, o, chains, o.duration, lat)
	cpu1, db1, self1 := cpuOf(o.pid), childrenCPU(o.dbPID), cpuOf(os.Getpid())
	load1 := loadAvg()
	reuse := "none_rotated"
	for _, c := range chains {
		if c.spent != "" { // present a spent refresh token: rotation requires a refusal
			reuse = reuseRefusal(hc, o, chain{rt: c.spent, clientID: c.clientID, secret: c.secret})
			break
		}
	}

	var all []time.Duration
	for _, l := range lat {
		all = append(all, l...)
	}
	sort.Slice(all, func(i, j int) bool { return all[i] < all[j] })
	n := len(all)
	perRefresh := func(ticks int64) string {
		if ticks < 0 || n == 0 {
			return "na"
		}
		return strconv.FormatFloat(float64(ticks)*1e6/clkTck/float64(n), 'f', 0, 64)
	}
	broken := warm.broken + res.broken
	fmt.Printf("RESULT label=%s workers=%d duration_s=%.3f refreshes=%d rps=%.1f p50_ms=%.2f p99_ms=%.2f retried=%d warmup_retried=%d broken_chains=%d reuse=%s target_cpu_us=%s db_cpu_us=%s client_cpu_us=%s loadavg=%s..%s\n",
		o.label, o.workers, res.elapsed.Seconds(), n, float64(n)/res.elapsed.Seconds(),
		ms(percentile(all, 0.50)), ms(percentile(all, 0.99)), res.serverErrors, warm.serverErrors, broken, reuse,
		perRefresh(diff(cpu0, cpu1)), perRefresh(diff(db0, db1)), perRefresh(diff(self0, self1)), load0, load1)
	for _, r := range []rotateResult{warm, res} {
		if r.firstErr != nil {
			fmt.Fprintf(os.Stderr, "refreshload %s: first error: %v\n", o.label, r.firstErr)
		}
	}
	if broken == len(chains) {
		return errors.New("every chain broke")
	}
	return nil
}

// chain is one worker's refresh-token chain.
type chain struct {
	rt       string
	clientID string
	secret   string
	spent    string // the first refresh token this chain rotated away (the reuse check)
	broken   error  // why the chain ended
}

type rotateResult struct {
	elapsed      time.Duration
	serverErrors int // retryable refusals (see refusal.retryable), retried with the same refresh token
	broken       int // chains that ended in this call
	firstErr     error
}

// rotate runs every unbroken chain for d. With lat, each worker records its latencies:
// from the first attempt of a refresh to its success, retries of 5xx answers included.
//
// A 5xx answer (server_error, temporarily_unavailable), or a 4xx other than
// invalid_grant, is retried at once with the same refresh token, as a client would: the
// server did not rotate (Hydra answers 500 when its transaction lost a serialization
// conflict and rolled back, then 400 invalid_request "Please retry the request" while the
// token is marked in use). Any other failure ends the chain: invalid_grant means the
// token is dead, and after a transport error the rotation may have happened without the
// client seeing the new token.
func rotate(hc *http.Client, o runOpts, chains []*chain, d time.Duration, lat [][]time.Duration) rotateResult {
	var stop atomic.Bool
	var wg sync.WaitGroup
	var mu sync.Mutex
	var res rotateResult
	start := time.Now()
	for i, c := range chains {
		if c.broken != nil {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			var mine []time.Duration
			if lat != nil {
				mine = make([]time.Duration, 0, 1<<14)
			}
			serverErrors := 0
			t0 := time.Now()
			for !stop.Load() {
				next, err := refresh(hc, o, c)
				var r *refusal
				if errors.As(err, &r) && r.retryable() {
					serverErrors++
					mu.Lock()
					if res.firstErr == nil {
						res.firstErr = err
					}
					mu.Unlock()
					continue
				}
				if err != nil {
					c.broken = err
					mu.Lock()
					res.broken++
					if res.firstErr == nil {
						res.firstErr = err
					}
					mu.Unlock()
					break
				}
				if lat != nil && !stop.Load() {
					mine = append(mine, time.Since(t0))
				}
				if c.spent == "" {
					c.spent = c.rt
				}
				c.rt = next
				t0 = time.Now()
			}
			mu.Lock()
			res.serverErrors += serverErrors
			mu.Unlock()
			if lat != nil {
				lat[i] = mine
			}
		}()
	}
	time.Sleep(d)
	stop.Store(true)
	res.elapsed = time.Since(start)
	wg.Wait()
	return res
}

// refresh rotates a chain once and returns the new refresh token.
func refresh(hc *http.Client, o runOpts, c *chain) (string, error) {
	req, err := tokenRequest(context.Background(), o.tokenURL, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {c.rt}}, c)
	if err != nil {
		return "", err
	}
	res, err := hc.Do(req)
	if err != nil {
		return "", err
	}
	defer res.Body.Close()
	b, err := io.ReadAll(io.LimitReader(res.Body, 1<<20))
	if err != nil {
		return "", err
	}
	if res.StatusCode != http.StatusOK {
		var e struct {
			Code string `json:"error"`
		}
		_ = json.Unmarshal(b, &e)
		return "", &refusal{status: res.StatusCode, code: e.Code, body: truncate(b)}
	}
	var t struct {
		AccessToken  string `json:"access_token"`
		RefreshToken string `json:"refresh_token"`
	}
	if err := json.Unmarshal(b, &t); err != nil || t.AccessToken == "" || t.RefreshToken == "" {
		return "", errors.New("refresh: the answer is not a token response with both tokens") // never quote it
	}
	if t.RefreshToken == c.rt {
		return "", errors.New("refresh: the server did not rotate the refresh token")
	}
	return t.RefreshToken, nil
}

// refusal is an error answer of the token endpoint (the body holds no token).
type refusal struct {
	status int
	code   string // the OAuth error code
	body   string
}

func (r *refusal) Error() string { return fmt.Sprintf("refresh: %d %s", r.status, r.body) }

// retryable: a 5xx, or a 4xx other than invalid_grant (Hydra answers 400 invalid_request
// "Failed to refresh token because of multiple concurrent requests using the same token.
// Please retry the request." after a rolled-back rotation). invalid_grant is the
// server's verdict that the token is dead.
func (r *refusal) retryable() bool {
	return r.status >= 500 || (r.status < 500 && r.code != "" && r.code != "invalid_grant" && r.code != "invalid_client")
}

// tokenRequest builds a token endpoint request with the chain's client credentials:
// client_id in the form for a public client, HTTP Basic for a confidential one (hydra);
// none for the Keyward token service.
func tokenRequest(ctx context.Context, tokenURL string, form url.Values, c *chain) (*http.Request, error) {
	if c.clientID != "" && c.secret == "" {
		form.Set("client_id", c.clientID)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, tokenURL, strings.NewReader(form.Encode()))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	if c.secret != "" {
		req.SetBasicAuth(url.QueryEscape(c.clientID), url.QueryEscape(c.secret))
	}
	return req, nil
}

// reuseRefusal presents a spent refresh token and returns the server's answer: rotation
// requires a refusal ("400 invalid_grant", or "none" when it was accepted).
func reuseRefusal(hc *http.Client, o runOpts, c chain) string {
	_, err := refresh(hc, o, &c)
	var r *refusal
	if !errors.As(err, &r) {
		return "none"
	}
	return fmt.Sprintf("%d_%s", r.status, r.code)
}

// ---- seeding -----------------------------------------------------------------------------

// seedKeyward mints one session per worker, as a login service does after authenticating
// a user: POST <issuer>/mint with its ServiceAccount token.
func seedKeyward(ctx context.Context, hc *http.Client, o runOpts) ([]*chain, error) {
	if o.mintURL == "" || o.saTokenFile == "" {
		return nil, errors.New("keyward needs -mint-url and -sa-token-file")
	}
	sa, err := os.ReadFile(o.saTokenFile)
	if err != nil {
		return nil, err
	}
	chains := make([]*chain, o.workers)
	deadline := time.Now().Add(60 * time.Second)
	for i := range chains {
		body, _ := json.Marshal(map[string]string{"sub": fmt.Sprintf("%s-%d", o.subject, i), "client_id": "bench-cli", "scope": "read"})
		for {
			req, _ := http.NewRequestWithContext(ctx, http.MethodPost, o.mintURL, bytes.NewReader(body))
			req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(sa)))
			req.Header.Set("Content-Type", "application/json")
			res, err := hc.Do(req)
			if err != nil {
				return nil, err
			}
			b, _ := io.ReadAll(res.Body)
			_ = res.Body.Close()
			if res.StatusCode == http.StatusOK {
				var t struct {
					RefreshToken string `json:"refresh_token"`
				}
				if json.Unmarshal(b, &t) != nil || t.RefreshToken == "" {
					return nil, errors.New("mint: no refresh token in the answer")
				}
				chains[i] = &chain{rt: t.RefreshToken}
				break
			}
			// 404 until the token service serves the policy, 503 until it can sign.
			if (res.StatusCode != http.StatusNotFound && res.StatusCode != http.StatusServiceUnavailable) || time.Now().After(deadline) {
				return nil, fmt.Errorf("mint: %d %s", res.StatusCode, truncate(b))
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	return chains, nil
}

// seedHydra creates an OAuth client (authorization_code + refresh_token, scope
// offline_access) and runs the authorization-code flow once per worker. The login and
// consent challenges are accepted through Hydra's admin API, exactly as a login and
// consent app does after it has authenticated the user; the login and consent URLs are
// never requested.
func seedHydra(ctx context.Context, hc *http.Client, o runOpts) ([]*chain, error) {
	if o.hydraAdmin == "" || o.hydraPublic == "" {
		return nil, errors.New("hydra needs -hydra-admin and -hydra-public")
	}
	cl := map[string]any{
		"client_name":                "refreshload",
		"grant_types":                []string{"authorization_code", "refresh_token"},
		"response_types":             []string{"code"},
		"scope":                      "offline_access",
		"redirect_uris":              []string{o.hydraCB},
		"token_endpoint_auth_method": o.hydraClientAuth,
	}
	var created struct {
		ClientID     string `json:"client_id"`
		ClientSecret string `json:"client_secret"`
	}
	if err := jsonCall(ctx, hc, http.MethodPost, o.hydraAdmin+"/admin/clients", cl, &created); err != nil {
		return nil, fmt.Errorf("creating the OAuth client: %w", err)
	}
	chains := make([]*chain, o.workers)
	for i := range chains {
		c := &chain{clientID: created.ClientID, secret: created.ClientSecret}
		code, err := hydraAuthorize(ctx, o, created.ClientID, fmt.Sprintf("%s-%d", o.subject, i))
		if err != nil {
			return nil, err
		}
		req, err := tokenRequest(ctx, o.tokenURL, url.Values{"grant_type": {"authorization_code"}, "code": {code}, "redirect_uri": {o.hydraCB}}, c)
		if err != nil {
			return nil, err
		}
		res, err := hc.Do(req)
		if err != nil {
			return nil, err
		}
		b, _ := io.ReadAll(res.Body)
		_ = res.Body.Close()
		var t struct {
			RefreshToken string `json:"refresh_token"`
		}
		if res.StatusCode != http.StatusOK {
			return nil, fmt.Errorf("exchanging the code: %d %s", res.StatusCode, truncate(b))
		}
		if json.Unmarshal(b, &t) != nil || t.RefreshToken == "" {
			return nil, errors.New("exchanging the code: no refresh token in the answer")
		}
		c.rt = t.RefreshToken
		chains[i] = c
	}
	return chains, nil
}

// hydraAuthorize runs /oauth2/auth for subject and returns the authorization code.
func hydraAuthorize(ctx context.Context, o runOpts, clientID, subject string) (string, error) {
	jar, _ := cookiejar.New(nil)
	browser := &http.Client{Jar: jar, Timeout: o.timeout, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	state := fmt.Sprintf("state-%d-%s", time.Now().UnixNano(), subject)
	next := o.hydraPublic + "/oauth2/auth?" + url.Values{
		"client_id": {clientID}, "response_type": {"code"}, "scope": {"offline_access"},
		"redirect_uri": {o.hydraCB}, "state": {state},
	}.Encode()
	for hop := 0; hop < 10; hop++ {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, next, nil)
		res, err := browser.Do(req)
		if err != nil {
			return "", err
		}
		b, _ := io.ReadAll(res.Body)
		_ = res.Body.Close()
		loc, err := res.Location()
		if err != nil {
			return "", fmt.Errorf("authorization flow: %d without a redirect: %s", res.StatusCode, truncate(b))
		}
		q := loc.Query()
		switch {
		case q.Get("login_challenge") != "":
			var r struct {
				RedirectTo string `json:"redirect_to"`
			}
			if err := jsonCall(ctx, browser, http.MethodPut, o.hydraAdmin+"/admin/oauth2/auth/requests/login/accept?login_challenge="+url.QueryEscape(q.Get("login_challenge")),
				map[string]any{"subject": subject, "remember": false}, &r); err != nil {
				return "", fmt.Errorf("accepting the login: %w", err)
			}
			next = r.RedirectTo
		case q.Get("consent_challenge") != "":
			var r struct {
				RedirectTo string `json:"redirect_to"`
			}
			if err := jsonCall(ctx, browser, http.MethodPut, o.hydraAdmin+"/admin/oauth2/auth/requests/consent/accept?consent_challenge="+url.QueryEscape(q.Get("consent_challenge")),
				map[string]any{"grant_scope": []string{"offline_access"}, "remember": false}, &r); err != nil {
				return "", fmt.Errorf("accepting the consent: %w", err)
			}
			next = r.RedirectTo
		case q.Get("code") != "":
			if q.Get("state") != state {
				return "", errors.New("authorization flow: the state does not match")
			}
			return q.Get("code"), nil
		case q.Get("error") != "":
			return "", fmt.Errorf("authorization flow: %s: %s", q.Get("error"), q.Get("error_description"))
		default:
			next = loc.String()
		}
	}
	return "", errors.New("authorization flow: too many redirects")
}

func jsonCall(ctx context.Context, hc *http.Client, method, u string, in, out any) error {
	b, err := json.Marshal(in)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, method, u, bytes.NewReader(b))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	res, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(res.Body, 1<<20))
	if res.StatusCode/100 != 2 {
		return fmt.Errorf("%s %s: %d %s", method, u, res.StatusCode, truncate(body))
	}
	return json.Unmarshal(body, out)
}

// ---- measurement helpers -----------------------------------------------------------------

const clkTck = 100.0 // USER_HZ: the unit of utime and stime in /proc/<pid>/stat

// cpuOf is utime+stime of a process in clock ticks; -1 when unknown.
func cpuOf(pid int) int64 {
	if pid <= 0 {
		return -1
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return -1
	}
	return statCPU(string(b))
}

// statCPU reads fields 14 and 15 (utime, stime) of a /proc/<pid>/stat line.
func statCPU(s string) int64 {
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return -1
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 13 {
		return -1
	}
	u, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return -1
	}
	return u + st
}

// childrenCPU is the CPU of a process and its children (PostgreSQL's postmaster and
// backends) in clock ticks; -1 when unknown. It counts the process's own time, the time
// of its children that have exited (cutime, cstime: a backend's time moves there when it
// exits) and that of its live children.
func childrenCPU(pid int) int64 {
	if pid <= 0 {
		return -1
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return -1
	}
	total := statCPU(string(b)) + statChildrenCPU(string(b))
	if total < 0 {
		return -1
	}
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		child, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", child))
		if err != nil {
			continue
		}
		s := string(b)
		i := strings.LastIndexByte(s, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(s[i+1:])
		if len(f) > 1 && f[1] == strconv.Itoa(pid) {
			if c := statCPU(s); c > 0 {
				total += c
			}
		}
	}
	return total
}

// statChildrenCPU reads fields 16 and 17 (cutime, cstime) of a /proc/<pid>/stat line.
func statChildrenCPU(s string) int64 {
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return -1
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 15 {
		return -1
	}
	u, err1 := strconv.ParseInt(f[13], 10, 64)
	st, err2 := strconv.ParseInt(f[14], 10, 64)
	if err1 != nil || err2 != nil {
		return -1
	}
	return u + st
}

func diff(a, b int64) int64 {
	if a < 0 || b < 0 {
		return -1
	}
	return b - a
}

func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "na"
	}
	return strings.Fields(string(b))[0]
}

func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(p*float64(len(sorted))+0.5) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// truncate bounds a response body quoted in an error (it never holds a token: only error
// responses are quoted).
func truncate(b []byte) string {
	s := strings.TrimSpace(string(b))
	if len(s) > 300 {
		s = s[:300] + "…"
	}
	return s
}

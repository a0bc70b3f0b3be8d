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

// Command profile is a diagnostic of the load benchmark (hack/bench): the verifier's proxy
// handler wired as `verifier serve --bundle-dir` wires it (file-mode store, DPoP checker
// with defaults, audit to a file, no TLS), plus net/http/pprof on -pprof, so a CPU profile
// of the sidecar under wrk load can be taken:
//
//	go run ./hack/bench/profile -listen 127.0.0.1:18190 -pprof 127.0.0.1:18191 \
//	    -upstream http://127.0.0.1:UP -bundle-dir DIR &
//	wrk -t2 -c64 -d20s -s hack/bench/tokens.lua http://127.0.0.1:18190/ -- tokens.txt &
//	go tool pprof -top 'http://127.0.0.1:18191/debug/pprof/profile?seconds=10'
//
// Benchmarking only; cmd/verifier is the product.
package main

import (
	"flag"
	"log"
	"log/slog"
	"net/http"
	_ "net/http/pprof" // the diagnostic's purpose
	"net/url"
	"os"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/utils/clock"

	"github.com/keyward-dev/keyward/internal/binding"
	"github.com/keyward-dev/keyward/internal/sidecar"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:18190", "proxy address")
	pprofAddr := flag.String("pprof", "127.0.0.1:18191", "pprof address")
	upstream := flag.String("upstream", "", "upstream URL")
	dir := flag.String("bundle-dir", "", "bundle directory")
	cacheSize := flag.Int("cache-size", sidecar.DefaultCacheSize, "verified-token cache entries (0 disables)")
	flag.Parse()
	up, err := url.Parse(*upstream)
	if err != nil || up.Host == "" || *dir == "" {
		log.Fatal("profile: -upstream URL and -bundle-dir are required")
	}
	clk := clock.RealClock{}
	lg := logr.FromSlogHandler(slog.NewJSONHandler(os.Stderr, nil))
	metrics := sidecar.NewMetrics()
	store := sidecar.NewStore(clk, *cacheSize, metrics, lg)
	if err := (&sidecar.DirSource{Dir: *dir, Store: store, Clock: clk, Log: lg}).Sync(); err != nil {
		log.Fatal(err)
	}
	audit, err := os.CreateTemp("", "keyward-profile-audit-*.jsonl")
	if err != nil {
		log.Fatal(err)
	}
	_ = os.Remove(audit.Name()) // unlinked at once: the open file stays writable
	h := sidecar.NewHandler(store, sidecar.HandlerConfig{
		Upstream: up,
		Auth: &sidecar.Authenticator{DPoP: binding.NewDPoPChecker(binding.DPoPOptions{
			Algorithms: sidecar.DefaultDPoPAlgorithms, MaxAge: binding.DefaultMaxAge,
			Leeway: binding.DefaultLeeway, ReplayCacheSize: binding.DefaultReplayCacheSize,
		}, clk)},
		Clock: clk, Metrics: metrics, Auditor: sidecar.NewAuditor(audit, false), Log: lg,
	})
	go func() {
		srv := &http.Server{Addr: *pprofAddr, ReadHeaderTimeout: 10 * time.Second} // DefaultServeMux: pprof
		log.Fatal(srv.ListenAndServe())
	}()
	cfg := sidecar.ServerConfig{Listen: *listen, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 120 * time.Second}
	log.Fatal(sidecar.NewProxyServer(cfg, h).ListenAndServe())
}

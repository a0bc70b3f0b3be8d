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

// Command proxyvariants is a diagnostic of the load benchmark (hack/bench): a plain
// httputil.ReverseProxy (no authentication) with the sidecar's upstream transport tuning,
// whose FlushInterval and BufferPool can be switched, to measure what those two settings
// cost per request apart from any token work. See docs/benchmarks.md. Benchmarking only.
//
//	proxyvariants -listen 127.0.0.1:18181 -upstream http://127.0.0.1:UP -flush=-1        # as the sidecar
//	proxyvariants -listen 127.0.0.1:18183 -upstream http://127.0.0.1:UP -buffer-pool     # pooled buffers
package main

import (
	"flag"
	"log"
	"net/http"
	"net/http/httputil"
	"net/url"
	"sync"
	"time"
)

// bufferPool is an httputil.BufferPool of 32 KiB buffers (the size ReverseProxy allocates
// per response without a pool).
type bufferPool struct{ p sync.Pool }

func (b *bufferPool) Get() []byte {
	if v, ok := b.p.Get().(*[]byte); ok {
		return *v
	}
	return make([]byte, 32<<10)
}

func (b *bufferPool) Put(buf []byte) { b.p.Put(&buf) }

func main() {
	listen := flag.String("listen", "", "listen address, 127.0.0.1:PORT (required)")
	upstream := flag.String("upstream", "", "upstream URL (required)")
	flush := flag.Duration("flush", 0, "ReverseProxy.FlushInterval (the sidecar uses -1ns: flush after every write)")
	pool := flag.Bool("buffer-pool", false, "set ReverseProxy.BufferPool")
	flag.Parse()
	up, err := url.Parse(*upstream)
	if err != nil || up.Host == "" || *listen == "" {
		log.Fatal("proxyvariants: -listen and -upstream URL are required")
	}
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConns, t.MaxIdleConnsPerHost = 1024, 1024
	rp := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(up)
			pr.Out.Host = pr.In.Host
			pr.SetXForwarded()
		},
		Transport:     t,
		FlushInterval: *flush,
		ErrorHandler:  func(w http.ResponseWriter, _ *http.Request, _ error) { w.WriteHeader(http.StatusBadGateway) },
	}
	if *pool {
		rp.BufferPool = &bufferPool{}
	}
	srv := &http.Server{Addr: *listen, Handler: rp, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 120 * time.Second}
	log.Fatal(srv.ListenAndServe())
}

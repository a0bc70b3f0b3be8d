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

// Package issuer is Keyward's token service: for every TokenPolicy with spec.issuance it
// issues access tokens signed with the policy's managed keys and rotating refresh
// tokens, at the path of the policy's issuer URL. See docs/issuer.md.
package issuer

import (
	"context"
	"errors"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/client-go/tools/events"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/keyward-dev/keyward/api/v1alpha1"

	"github.com/keyward-dev/keyward/internal/issuer/store"
	"github.com/keyward-dev/keyward/internal/policy"
)

// DefaultAudience is the audience ServiceAccount tokens presented to the token service
// must be issued for (TokenReview), unless configured otherwise.
const DefaultAudience = "keyward-issuer"

// CSRFHeader must be sent, with the value "1", on every request authenticated by the
// refresh-token cookie (browser mode). A cross-site form cannot set a custom header, and
// a cross-origin script cannot without a CORS preflight, which the token service never
// grants.
const CSRFHeader = "X-Keyward-CSRF"

// Config is what the token service needs. Store, Sealer, Reviewer, Client and Clock are
// required.
type Config struct {
	Store store.Store
	// Sealer seals the responses kept for the replay window; every replica needs the same keys.
	Sealer *Sealer
	// Reviewer authenticates ServiceAccount tokens (TokenReview).
	Reviewer Reviewer
	// Client creates RevocationEntries.
	Client client.Client
	// Recorder emits Events on TokenPolicies (reuse, bursts, path conflicts); may be nil.
	Recorder events.EventRecorder
	Clock    clock.PassiveClock
	Metrics  *Metrics // nil: NewMetrics()
	Audit    *Auditor // nil: no audit records
	Log      logr.Logger
	// Audience of the ServiceAccount tokens of mint and introspection callers, and of
	// exchanged tokens when the policy sets none. Default DefaultAudience.
	Audience string
	// DPoPNonce requires DPoP server nonces at the token endpoint (RFC 9449 §8).
	DPoPNonce         bool
	DPoPNonceLifetime time.Duration
	// RevocationWorkers create RevocationEntries (default 2).
	RevocationWorkers int
}

// Server serves every registered policy. It is an http.Handler; Start runs its
// background work (the RevocationEntry queue).
type Server struct {
	cfg      Config
	clk      clock.PassiveClock
	metrics  *Metrics
	log      logr.Logger
	registry *Registry
	dpop     *dpopVerifier
	subjects *detector
	families *detector
	revoker  *revocationQueue
}

// New checks the configuration and returns a server with an empty registry.
func New(cfg Config) (*Server, error) {
	switch {
	case cfg.Store == nil:
		return nil, errors.New("issuer: no store")
	case cfg.Sealer == nil:
		return nil, errors.New("issuer: no replay key")
	case cfg.Reviewer == nil:
		return nil, errors.New("issuer: no TokenReview client")
	case cfg.Client == nil:
		return nil, errors.New("issuer: no Kubernetes client")
	case cfg.Clock == nil:
		return nil, errors.New("issuer: no clock")
	}
	if cfg.Metrics == nil {
		cfg.Metrics = NewMetrics()
	}
	if cfg.Audience == "" {
		cfg.Audience = DefaultAudience
	}
	if cfg.RevocationWorkers <= 0 {
		cfg.RevocationWorkers = 2
	}
	s := &Server{
		cfg:      cfg,
		clk:      cfg.Clock,
		metrics:  cfg.Metrics,
		log:      cfg.Log,
		dpop:     newDPoPVerifier(cfg.Clock, cfg.Sealer.dpopNonceKey(), cfg.DPoPNonce, cfg.DPoPNonceLifetime),
		subjects: newDetector(),
		families: newDetector(),
		revoker:  newRevocationQueue(cfg.Client, cfg.Clock, cfg.Metrics, cfg.Log.WithName("revocations")),
	}
	s.registry = NewRegistry(func(n int) { s.metrics.Policies.Set(float64(n)) })
	return s, nil
}

// Registry is the set of policies served; the PolicyReconciler keeps it current.
func (s *Server) Registry() *Registry { return s.registry }

// Metrics returns the server's metrics.
func (s *Server) Metrics() *Metrics { return s.metrics }

// Start runs the RevocationEntry queue until ctx is done (a controller-runtime Runnable).
func (s *Server) Start(ctx context.Context) error {
	s.revoker.run(ctx, s.cfg.RevocationWorkers)
	return nil
}

// NeedLeaderElection: every replica serves and creates its own RevocationEntries.
func (s *Server) NeedLeaderElection() bool { return false }

// endpoint is one route under an issuer path.
type endpoint struct {
	suffix  string
	name    string // metric label
	methods []string
	handle  func(s *Server, w http.ResponseWriter, r *http.Request, p *policyState) *oauthError
}

var endpoints = []endpoint{
	{pathToken, "token", []string{http.MethodPost}, (*Server).handleToken},
	{pathLogout, "logout", []string{http.MethodPost}, (*Server).handleLogout},
	{pathRevoke, "revoke", []string{http.MethodPost}, (*Server).handleRevoke},
	{pathIntrospect, "introspect", []string{http.MethodPost}, (*Server).handleIntrospect},
	{pathMint, "mint", []string{http.MethodPost}, (*Server).handleMint},
	{pathJWKS, "jwks", []string{http.MethodGet, http.MethodHead}, (*Server).handleJWKS},
	{pathDiscovery, "discovery", []string{http.MethodGet, http.MethodHead}, (*Server).handleDiscovery},
}

var metadataEndpoint = endpoint{pathASMetadata, "discovery", []string{http.MethodGet, http.MethodHead}, (*Server).handleDiscovery}

// route finds the endpoint and policy of a request path.
func (s *Server) route(path string) (*endpoint, *policyState) {
	if path == "" || (path != "/" && !policy.IsCanonical(path)) {
		return nil, nil
	}
	if rest, ok := strings.CutPrefix(path, pathASMetadata); ok && (rest == "" || rest[0] == '/') {
		if p := s.registry.lookup(rest); p != nil {
			return &metadataEndpoint, p
		}
	}
	for i := range endpoints {
		ep := &endpoints[i]
		if prefix, ok := strings.CutSuffix(path, ep.suffix); ok {
			if p := s.registry.lookup(prefix); p != nil {
				return ep, p
			}
		}
	}
	return nil, nil
}

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := s.clk.Now()
	ep, p := s.route(r.URL.Path)
	if ep == nil {
		http.NotFound(w, r)
		return
	}
	defer func() { s.metrics.Duration.WithLabelValues(ep.name).Observe(s.clk.Since(start).Seconds()) }()
	allowed := false
	for _, m := range ep.methods {
		allowed = allowed || r.Method == m
	}
	if !allowed {
		w.Header().Set("Allow", strings.Join(ep.methods, ", "))
		writeError(w, newError(http.StatusMethodNotAllowed, ErrInvalidRequest, "method", "method not allowed"))
		s.metrics.Rejected.WithLabelValues(p.key, ep.name, ErrInvalidRequest, "method").Inc()
		return
	}
	if e := ep.handle(s, w, r, p); e != nil {
		s.reject(w, r, p, ep.name, e, nil)
	}
}

// reject writes an error response, counts it and audits it. rec (may be nil) carries
// what is known of the request (subject, session, token fingerprints).
func (s *Server) reject(w http.ResponseWriter, r *http.Request, p *policyState, endpoint string, e *oauthError, rec *AuditRecord) {
	writeError(w, e)
	s.metrics.Rejected.WithLabelValues(p.key, endpoint, e.Code, e.Reason).Inc()
	if rec == nil {
		rec = &AuditRecord{}
	}
	rec.Event, rec.Policy, rec.Error, rec.Reason = AuditRejected, p.key, e.Code, e.Reason
	if rec.Grant == "" {
		rec.Grant = endpoint
	}
	rec.Source = source(r)
	s.cfg.Audit.Write(s.clk.Now(), rec)
}

// audit writes a record with the request's source address.
func (s *Server) audit(r *http.Request, rec *AuditRecord) {
	rec.Source = source(r)
	s.cfg.Audit.Write(s.clk.Now(), rec)
}

// source is the address the request came from (the peer; a proxy's address behind one).
func source(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// event emits a Kubernetes Event on the policy.
func (s *Server) event(p *policyState, eventType, reason, action, note string, args ...any) {
	if s.cfg.Recorder == nil {
		return
	}
	s.cfg.Recorder.Eventf(p.object, nil, eventType, reason, action, note, args...)
}

// eventObj emits an Event on a TokenPolicy that is not served.
func (s *Server) eventObj(tp *v1alpha1.TokenPolicy, eventType, reason, action, note string, args ...any) {
	if s.cfg.Recorder == nil {
		return
	}
	s.cfg.Recorder.Eventf(objectRef(tp), nil, eventType, reason, action, note, args...)
}

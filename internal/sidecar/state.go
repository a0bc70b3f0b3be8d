package sidecar

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/utils/clock"

	"github.com/keyward-dev/keyward/internal/bundle"
	"github.com/keyward-dev/keyward/internal/policy"
	"github.com/keyward-dev/keyward/internal/revocation"
	"github.com/keyward-dev/keyward/internal/verify"
)

// DefaultCacheSize is the default number of verified-token cache entries per bundle.
const DefaultCacheSize = 10000

// State is everything compiled from one accepted bundle. It is immutable: a new bundle
// gives a new State (and so a new verified-token cache), swapped in atomically; requests
// in flight finish on the State they started with.
type State struct {
	Generation int64
	Hash       string
	Policy     *policy.Policy
	Keys       *verify.KeySet
	Revoked    *revocation.Set
	Verifier   *verify.Verifier
}

// Compile builds the State of a decoded bundle. cacheSize is the verified-token cache
// size (0 disables the cache).
func Compile(b *bundle.Bundle, cacheSize int, clk clock.PassiveClock) (*State, error) {
	return compile(b, cacheSize, clk, nil)
}

// compile is Compile with a cache-hit callback (the Store's metric).
func compile(b *bundle.Bundle, cacheSize int, clk clock.PassiveClock, onCacheHit func()) (*State, error) {
	pol, err := policy.Compile(b.Content.Policy)
	if err != nil {
		return nil, &RefusalError{Reason: "policy", Err: err}
	}
	keys, err := verify.NewKeySet(b.Keys)
	if err != nil {
		return nil, &RefusalError{Reason: "keys", Err: err}
	}
	if keys.Len() == 0 {
		return nil, &RefusalError{Reason: "keys", Err: errors.New("no usable verification key")}
	}
	revoked := revocation.New(b.Content.Revocations)
	p := b.Content.Policy
	opts := verify.Options{
		Issuer:     p.Issuer,
		Audiences:  p.Audiences,
		Algorithms: p.Algorithms,
		Leeway:     time.Duration(p.LeewaySeconds) * time.Second,
		Type:       p.AccessTokenType,
		CacheSize:  cacheSize,
		OnCacheHit: onCacheHit,
	}
	return &State{
		Generation: b.Generation,
		Hash:       b.Hash,
		Policy:     pol,
		Keys:       keys,
		Revoked:    revoked,
		Verifier:   verify.New(keys, opts, revoked, clk),
	}, nil
}

// RefusalError is a refused bundle. Reason is a low-cardinality metric label ("read",
// "missing_key", "decode", "generation", "policy", "keys"); Err never quotes the bundle.
type RefusalError struct {
	Reason string
	Err    error
}

func (e *RefusalError) Error() string { return "bundle refused (" + e.Reason + "): " + e.Err.Error() }
func (e *RefusalError) Unwrap() error { return e.Err }

// Store holds the State in force and decides which offered bundles replace it.
type Store struct {
	cur atomic.Pointer[State]

	clk       clock.PassiveClock
	cacheSize int
	metrics   *Metrics
	log       logr.Logger

	mu sync.Mutex
	// last maps a source to the SHA-256 of the last bytes it offered, so a periodic
	// re-read of unchanged bytes is neither decoded again nor counted again.
	last map[string][sha256.Size]byte
	// unreadable maps a source to the reason of its last read failure, so a failure
	// repeated by periodic re-reads is counted and logged once.
	unreadable map[string]string
}

// NewStore returns an empty (not ready) store.
func NewStore(clk clock.PassiveClock, cacheSize int, m *Metrics, log logr.Logger) *Store {
	return &Store{
		clk: clk, cacheSize: cacheSize, metrics: m, log: log,
		last: map[string][sha256.Size]byte{}, unreadable: map[string]string{},
	}
}

// Current is the State in force, nil before the first valid bundle.
func (s *Store) Current() *State { return s.cur.Load() }

// Ready reports whether a valid bundle is in force.
func (s *Store) Ready() bool { return s.cur.Load() != nil }

// Offer proposes the raw bundle document data read from source ("dir", "configmap").
// It returns nil when the bundle is in force afterwards (accepted, or the one already in
// force), and a *RefusalError when it was refused; then the State in force is unchanged.
// Identical bytes offered again by the same source are skipped (the previous outcome
// stands).
func (s *Store) Offer(source string, data []byte) error {
	sum := sha256.Sum256(data)
	s.mu.Lock()
	defer s.mu.Unlock()
	if prev, ok := s.last[source]; ok && prev == sum {
		return nil
	}
	s.last[source] = sum
	delete(s.unreadable, source)
	st, err := s.offer(data)
	if err != nil {
		var re *RefusalError
		if !errors.As(err, &re) {
			re = &RefusalError{Reason: "decode", Err: err}
		}
		s.metrics.BundleRefusals.WithLabelValues(source, re.Reason).Inc()
		s.log.Error(re.Err, "Refused bundle; the last good bundle stays in force",
			"source", source, "reason", re.Reason, "generationInForce", s.generation())
		return re
	}
	if st == nil { // the bundle in force
		return nil
	}
	prev := s.cur.Swap(st)
	s.metrics.BundleReloads.WithLabelValues(source).Inc()
	s.metrics.BundleGeneration.Set(float64(st.Generation))
	if prev != nil {
		s.metrics.BundleInfo.DeleteLabelValues(prev.Hash)
	}
	s.metrics.BundleInfo.WithLabelValues(st.Hash).Set(1)
	s.metrics.BundleLastReload.Set(float64(s.clk.Now().UnixNano()) / 1e9)
	s.metrics.Ready.Set(1)
	s.log.Info("Put bundle in force", "source", source, "generation", st.Generation, "hash", st.Hash,
		"policy", st.Policy.Source.Namespace+"/"+st.Policy.Source.Name, "keys", st.Keys.Len(), "revocations", st.Revoked.Len())
	return nil
}

// offer returns the new State, nil when data is the bundle already in force (same hash, not
// a higher generation), or an error.
func (s *Store) offer(data []byte) (*State, error) {
	b, err := bundle.Decode(data)
	if err != nil {
		return nil, &RefusalError{Reason: "decode", Err: err}
	}
	cur := s.cur.Load()
	if cur != nil {
		if b.Hash == cur.Hash {
			if b.Generation <= cur.Generation {
				return nil, nil
			}
			// Same content under a higher generation: keep the compiled state (and its
			// cache), advance the generation reported.
			next := *cur
			next.Generation = b.Generation
			return &next, nil
		}
		if b.Generation < cur.Generation {
			return nil, &RefusalError{Reason: "generation", Err: fmt.Errorf(
				"generation %d is lower than the generation %d in force", b.Generation, cur.Generation)}
		}
	}
	var onHit func()
	if s.metrics != nil {
		onHit = s.metrics.CacheHits.Inc
	}
	return compile(b, s.cacheSize, s.clk, onHit)
}

func (s *Store) generation() int64 {
	if st := s.cur.Load(); st != nil {
		return st.Generation
	}
	return 0
}

// Refuse records a bundle that could not even be read (reason "read", "missing_key").
// Like Offer, it never changes the State in force. The same reason reported again by a
// source is counted and logged once.
func (s *Store) Refuse(source, reason string, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.last, source) // the next successful read is evaluated again
	if s.unreadable[source] == reason {
		return
	}
	s.unreadable[source] = reason
	s.metrics.BundleRefusals.WithLabelValues(source, reason).Inc()
	s.log.Error(err, "Could not read bundle; the last good bundle stays in force",
		"source", source, "reason", reason, "generationInForce", s.generation())
}

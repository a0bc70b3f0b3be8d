package sidecar

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/keyward-dev/keyward/internal/bundle"
)

func generation(s *Store) int64 {
	if st := s.Current(); st != nil {
		return st.Generation
	}
	return 0
}

func TestStoreFailStatic(t *testing.T) {
	e := newEnv(t, envOpts{})
	k2 := newSigningKey(t)
	gen5 := bundleDoc(t, 5, testPolicy(), bundle.Revocations{}, e.key)
	if err := e.store.Offer(SourceDir, gen5); err != nil {
		t.Fatal(err)
	}
	first := e.store.Current()
	valid := e.key.token(t, claims())

	noKeyPolicy := testPolicy()
	noKeyPolicy.ForwardClaims = []bundle.ClaimHeader{{Claim: "sub", Header: "Authorization"}}
	tests := []struct {
		name   string
		doc    []byte
		reason string
	}{
		{"truncated", gen5[:len(gen5)/2], "decode"},
		{"empty", []byte{}, "decode"},
		{"hash mismatch", []byte(string(gen5[:len(gen5)-3]) + `x"}}`), "decode"},
		{"lower generation", bundleDoc(t, 4, testPolicy(), bundle.Revocations{}, k2), "generation"},
		{"policy the sidecar refuses", bundleDoc(t, 6, noKeyPolicy, bundle.Revocations{}, e.key), "policy"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := testutil.ToFloat64(e.metrics.BundleRefusals.WithLabelValues(SourceDir, tt.reason))
			err := e.store.Offer(SourceDir, tt.doc)
			var re *RefusalError
			if !errors.As(err, &re) || re.Reason != tt.reason {
				t.Fatalf("Offer = %v, want a refusal with reason %s", err, tt.reason)
			}
			if e.store.Current() != first {
				t.Fatal("a refused bundle replaced the one in force")
			}
			if got := testutil.ToFloat64(e.metrics.BundleRefusals.WithLabelValues(SourceDir, tt.reason)); got != before+1 {
				t.Errorf("refusals{%s} = %v, want %v", tt.reason, got, before+1)
			}
			seen(t, e.do("GET", "http://api.example.com/x", bearer(valid)))
		})
	}
	// The same bad bytes read again (periodic re-read) are neither decoded nor counted again.
	before := testutil.ToFloat64(e.metrics.BundleRefusals.WithLabelValues(SourceDir, "decode"))
	_ = e.store.Offer(SourceDir, []byte("{"))
	_ = e.store.Offer(SourceDir, []byte("{"))
	if got := testutil.ToFloat64(e.metrics.BundleRefusals.WithLabelValues(SourceDir, "decode")); got != before+1 {
		t.Errorf("repeated bad bytes counted %v times", got-before)
	}
	// A lower generation with the hash in force is the bundle in force: no refusal.
	raw, hash, _ := bundle.EncodeContent(bundle.Content{Policy: testPolicy(), JWKS: mustJWKS(t, e.key), Revocations: bundle.Revocations{}})
	same, _ := bundle.Encode(2, raw, hash)
	if hash != first.Hash {
		t.Fatal("fixture: hash differs")
	}
	if err := e.store.Offer(SourceConfigMap, same); err != nil || e.store.Current() != first {
		t.Errorf("lower generation with the hash in force: %v", err)
	}
	// The same content under a higher generation advances the generation and keeps the
	// compiled state.
	same6, _ := bundle.Encode(6, raw, hash)
	if err := e.store.Offer(SourceDir, same6); err != nil {
		t.Fatal(err)
	}
	if st := e.store.Current(); st.Generation != 6 || st.Verifier != first.Verifier {
		t.Errorf("same content at generation 6: generation %d, new verifier %v", st.Generation, st.Verifier != first.Verifier)
	}
	// A higher generation replaces it, and gets a new verifier (and cache).
	if err := e.store.Offer(SourceDir, bundleDoc(t, 7, testPolicy(), bundle.Revocations{}, e.key, k2)); err != nil {
		t.Fatal(err)
	}
	if st := e.store.Current(); st.Generation != 7 || st.Verifier == first.Verifier {
		t.Errorf("generation %d after gen 7", st.Generation)
	}
	if got := testutil.ToFloat64(e.metrics.BundleGeneration); got != 7 {
		t.Errorf("generation gauge = %v", got)
	}
	if got := testutil.ToFloat64(e.metrics.BundleInfo.WithLabelValues(e.store.Current().Hash)); got != 1 {
		t.Errorf("bundle info = %v", got)
	}
	if n := testutil.CollectAndCount(e.metrics.BundleInfo); n != 1 {
		t.Errorf("%d bundle info series, want only the one in force", n)
	}
}

func mustJWKS(t testing.TB, keys ...*signingKey) []byte {
	t.Helper()
	doc := bundleDoc(t, 1, testPolicy(), bundle.Revocations{}, keys...)
	b, err := bundle.Decode(doc)
	if err != nil {
		t.Fatal(err)
	}
	return b.Content.JWKS
}

// kubeletDir mimics the kubelet's atomic writer for a ConfigMap volume:
//
//	DIR/..2026_05_28_20_26_40.000000001/bundle.json
//	DIR/..data -> ..2026_05_28_20_26_40.000000001
//	DIR/bundle.json -> ..data/bundle.json
type kubeletDir struct {
	t   testing.TB
	dir string
	n   atomic.Int64
}

func newKubeletDir(t testing.TB) *kubeletDir {
	return &kubeletDir{t: t, dir: t.TempDir()}
}

// write publishes data the way the kubelet does: a new timestamped directory, a
// ..data_tmp symlink to it, renamed over ..data (atomic), then the old directory removed.
func (k *kubeletDir) write(data []byte) {
	k.t.Helper()
	ts := "..2026_05_28_20_26_40." + strconv.FormatInt(k.n.Add(1), 10)
	if err := os.Mkdir(filepath.Join(k.dir, ts), 0o755); err != nil {
		k.t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(k.dir, ts, bundle.DataKey), data, 0o644); err != nil {
		k.t.Fatal(err)
	}
	old, _ := os.Readlink(filepath.Join(k.dir, "..data"))
	tmp := filepath.Join(k.dir, "..data_tmp")
	if err := os.Symlink(ts, tmp); err != nil {
		k.t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(k.dir, "..data")); err != nil {
		k.t.Fatal(err)
	}
	link := filepath.Join(k.dir, bundle.DataKey)
	if _, err := os.Lstat(link); errors.Is(err, os.ErrNotExist) {
		if err := os.Symlink(filepath.Join("..data", bundle.DataKey), link); err != nil {
			k.t.Fatal(err)
		}
	}
	if old != "" {
		if err := os.RemoveAll(filepath.Join(k.dir, old)); err != nil {
			k.t.Fatal(err)
		}
	}
}

func TestDirSourceKubeletAtomicSwap(t *testing.T) {
	e := newEnv(t, envOpts{})
	kd := newKubeletDir(t)
	src := &DirSource{Dir: kd.dir, Store: e.store, Clock: e.clk, Log: logr.Discard()}

	// Nothing mounted yet: not ready, and the read failure is counted once.
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- src.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	eventually(t, 10*time.Second, "read refusal", func() bool {
		return testutil.ToFloat64(e.metrics.BundleRefusals.WithLabelValues(SourceDir, "read")) == 1
	})
	if e.store.Ready() {
		t.Fatal("ready without a bundle")
	}

	kd.write(bundleDoc(t, 1, testPolicy(), bundle.Revocations{}, e.key))
	eventually(t, 10*time.Second, "generation 1 from the file watcher", func() bool { return generation(e.store) == 1 })
	kd.write(bundleDoc(t, 2, testPolicy(), bundle.Revocations{}, e.key))
	eventually(t, 10*time.Second, "generation 2 from the file watcher", func() bool { return generation(e.store) == 2 })

	// A malformed bundle is refused; generation 2 stays.
	kd.write([]byte(`{"format":"keyward.dev/bundle/v1","generation":3,`))
	eventually(t, 10*time.Second, "decode refusal", func() bool {
		return testutil.ToFloat64(e.metrics.BundleRefusals.WithLabelValues(SourceDir, "decode")) == 1
	})
	if generation(e.store) != 2 {
		t.Fatalf("generation %d after a malformed bundle", generation(e.store))
	}
	// A lower generation is refused.
	kd.write(bundleDoc(t, 1, testPolicy(), bundle.Revocations{JTI: []bundle.Revoked{{Value: "x", Expires: testNow.Unix() + 60}}}, e.key))
	eventually(t, 10*time.Second, "generation refusal", func() bool {
		return testutil.ToFloat64(e.metrics.BundleRefusals.WithLabelValues(SourceDir, "generation")) == 1
	})
	if generation(e.store) != 2 {
		t.Fatalf("generation %d after a lower generation", generation(e.store))
	}
	seen(t, e.do("GET", "http://api.example.com/x", bearer(e.key.token(t, claims()))))
	kd.write(bundleDoc(t, 3, testPolicy(), bundle.Revocations{}, e.key))
	eventually(t, 10*time.Second, "generation 3", func() bool { return generation(e.store) == 3 })
}

func TestDirSourcePeriodicReread(t *testing.T) {
	e := newEnv(t, envOpts{})
	// bundle.json links to a file outside the watched directory, so rewriting that file
	// makes no event the watcher sees: only the periodic re-read (driven by the fake
	// clock) can pick the change up.
	dir, elsewhere := t.TempDir(), t.TempDir()
	target := writeFile(t, elsewhere, "real.json", bundleDoc(t, 1, testPolicy(), bundle.Revocations{}, e.key))
	if err := os.Symlink(target, filepath.Join(dir, bundle.DataKey)); err != nil {
		t.Fatal(err)
	}
	src := &DirSource{Dir: dir, Interval: 10 * time.Second, Store: e.store, Clock: e.clk, Log: logr.Discard()}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- src.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	eventually(t, 10*time.Second, "generation 1", func() bool { return generation(e.store) == 1 })
	// Wait for Run to have created its ticker before rewriting.
	eventually(t, 10*time.Second, "the ticker", func() bool { return e.clk.HasWaiters() })
	if err := os.WriteFile(target, bundleDoc(t, 2, testPolicy(), bundle.Revocations{}, e.key), 0o600); err != nil {
		t.Fatal(err)
	}
	e.clk.Step(10 * time.Second)
	eventually(t, 10*time.Second, "generation 2 after one tick", func() bool { return generation(e.store) == 2 })
}

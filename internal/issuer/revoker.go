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

package issuer

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"sync"
	"time"

	"github.com/go-logr/logr"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/keyward-dev/keyward/api/v1alpha1"
)

// Labels of the RevocationEntries the token service creates.
const (
	LabelCreatedBy = "app.kubernetes.io/created-by"
	CreatedByValue = "keyward-issuer"
)

// Revocation reasons the token service writes.
const (
	ReasonReuse  = "refresh token reuse"
	ReasonClient = "revoked by the client (RFC 7009)"
	ReasonLogout = "logout"
	ReasonBurst  = "refresh burst (anomaly.autoRevoke)"
	// reasonEntryPrefix starts the reason of a family revoked because a RevocationEntry in
	// the bundle matched it: that entry is the revocation, so none is created for it.
	reasonEntryPrefix = "revoked by a RevocationEntry"
)

// sessionEntry is the RevocationEntry that revokes a session in one policy. Its name is
// a function of the policy and the session, so a retry or another replica creating it
// again gets AlreadyExists, which is success.
func sessionEntry(p *policyState, sid, reason string) *v1alpha1.RevocationEntry {
	return policySessionEntry(p.namespace, p.name, sid, reason)
}

// policySessionEntry is sessionEntry for the policy namespace/name.
func policySessionEntry(namespace, name, sid, reason string) *v1alpha1.RevocationEntry {
	return revocationEntry(namespace, name, "sid", sid, v1alpha1.RevocationEntrySpec{SessionID: sid, Reason: reason, Policies: []string{name}})
}

// jtiEntry revokes one access token.
func jtiEntry(p *policyState, jti, reason string) *v1alpha1.RevocationEntry {
	return revocationEntry(p.namespace, p.name, "jti", jti, v1alpha1.RevocationEntrySpec{JTI: jti, Reason: reason, Policies: []string{p.name}})
}

func revocationEntry(namespace, policy, kind, value string, spec v1alpha1.RevocationEntrySpec) *v1alpha1.RevocationEntry {
	sum := sha256.Sum256([]byte(policy + "\x00" + kind + "\x00" + value))
	return &v1alpha1.RevocationEntry{
		ObjectMeta: metav1.ObjectMeta{
			Name:      "issuer-" + kind + "-" + hex.EncodeToString(sum[:16]),
			Namespace: namespace,
			Labels: map[string]string{
				LabelCreatedBy:            CreatedByValue,
				v1alpha1.LabelTokenPolicy: policy,
			},
		},
		Spec: spec,
	}
}

// revocationQueue creates RevocationEntries, retrying with backoff until the API server
// takes them: a revocation the store has already applied must reach the verifiers too.
// The queue lives in memory; the revocation sweep (sweep.go) rebuilds what a crash loses
// from the store.
type revocationQueue struct {
	c       client.Client
	clk     clock.PassiveClock
	log     logr.Logger
	metrics *Metrics
	q       workqueue.TypedRateLimitingInterface[string]

	mu      sync.Mutex
	pending map[string]*v1alpha1.RevocationEntry
	// created holds, by key, when the API server took a session entry (created, or it
	// existed): the sweep does not ask again for those, so it costs API calls only after a
	// restart or for another replica's revocations. The sweep forgets them once its window
	// has passed; past createdLimit, the queue forgets those older than any window.
	created      map[string]time.Time
	createdLimit int
}

// minCreatedLimit is the smallest size at which the queue itself forgets created entries.
const minCreatedLimit = 1 << 12

func newRevocationQueue(c client.Client, clk clock.PassiveClock, m *Metrics, log logr.Logger) *revocationQueue {
	return &revocationQueue{
		c: c, clk: clk, log: log, metrics: m,
		q: workqueue.NewTypedRateLimitingQueueWithConfig(
			workqueue.NewTypedItemExponentialFailureRateLimiter[string](100*time.Millisecond, 30*time.Second),
			workqueue.TypedRateLimitingQueueConfig[string]{Name: "keyward_issuer_revocations"}),
		pending:      map[string]*v1alpha1.RevocationEntry{},
		created:      map[string]time.Time{},
		createdLimit: minCreatedLimit,
	}
}

func entryKey(e *v1alpha1.RevocationEntry) string { return e.Namespace + "/" + e.Name }

// add queues an entry (idempotent by name).
func (r *revocationQueue) add(e *v1alpha1.RevocationEntry) {
	key := entryKey(e)
	r.mu.Lock()
	if _, ok := r.pending[key]; !ok {
		r.pending[key] = e
		r.metrics.RevocationQueue.Set(float64(len(r.pending)))
	}
	r.mu.Unlock()
	r.q.Add(key)
}

// restore queues an entry unless it is pending or this process has seen the API server
// take it, and reports whether it queued it.
func (r *revocationQueue) restore(e *v1alpha1.RevocationEntry) bool {
	key := entryKey(e)
	r.mu.Lock()
	_, pending := r.pending[key]
	_, created := r.created[key]
	r.mu.Unlock()
	if pending || created {
		return false
	}
	r.add(e)
	return true
}

// forgetCreated drops the record of entries the API server took before t.
func (r *revocationQueue) forgetCreated(t time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.forgetCreatedLocked(t)
}

func (r *revocationQueue) forgetCreatedLocked(t time.Time) {
	for key, at := range r.created {
		if at.Before(t) {
			delete(r.created, key)
		}
	}
}

// run creates queued entries until ctx is done.
func (r *revocationQueue) run(ctx context.Context, workers int) {
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for r.next(ctx) {
			}
		})
	}
	<-ctx.Done()
	r.q.ShutDown()
	wg.Wait()
	r.flush()
}

// flush makes one last attempt, for a few seconds, to create the entries still pending at
// shutdown (the sessions are revoked in the store already; the entries reach the sidecars).
func (r *revocationQueue) flush() {
	r.mu.Lock()
	pending := make([]*v1alpha1.RevocationEntry, 0, len(r.pending))
	for _, e := range r.pending {
		pending = append(pending, e)
	}
	r.mu.Unlock()
	if len(pending) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), flushTimeout)
	defer cancel()
	sessions, tokens := 0, 0
	for _, e := range pending {
		if err := r.c.Create(ctx, e.DeepCopy()); err != nil && !apierrors.IsAlreadyExists(err) {
			if e.Spec.SessionID != "" {
				sessions++
			} else {
				tokens++
			}
			r.log.Error(err, "Failed to create a RevocationEntry at shutdown", "revocationEntry", entryKey(e), "sessionID", e.Spec.SessionID, "jti", e.Spec.JTI)
		}
	}
	if sessions > 0 {
		r.log.Info("Stopped with session RevocationEntries not created; the sessions are revoked in the store, "+
			"and the revocation sweep at the next start (or another replica's) creates their entries", "count", sessions)
	}
	if tokens > 0 {
		r.log.Info("Stopped with access-token RevocationEntries not created; those tokens stay valid until they expire", "count", tokens)
	}
}

// flushTimeout bounds the last attempt at shutdown.
const flushTimeout = 5 * time.Second

func (r *revocationQueue) next(ctx context.Context) bool {
	key, shutdown := r.q.Get()
	if shutdown {
		return false
	}
	defer r.q.Done(key)
	r.mu.Lock()
	e := r.pending[key]
	r.mu.Unlock()
	if e == nil {
		r.q.Forget(key)
		return true
	}
	err := r.c.Create(ctx, e.DeepCopy())
	if err != nil && !apierrors.IsAlreadyExists(err) {
		r.metrics.RevocationFails.Inc()
		r.log.Error(err, "Failed to create a RevocationEntry; retrying", "revocationEntry", key)
		r.q.AddRateLimited(key)
		return true
	}
	if err == nil {
		r.log.Info("Created RevocationEntry", "revocationEntry", key, "reason", e.Spec.Reason)
	}
	r.q.Forget(key)
	r.mu.Lock()
	delete(r.pending, key)
	if e.Spec.SessionID != "" {
		now := r.clk.Now()
		r.created[key] = now
		if len(r.created) > r.createdLimit { // amortized: the limit doubles with what stays
			r.forgetCreatedLocked(now.Add(-MaxRevocationWindow))
			r.createdLimit = max(minCreatedLimit, 2*len(r.created))
		}
	}
	r.metrics.RevocationQueue.Set(float64(len(r.pending)))
	r.mu.Unlock()
	return true
}

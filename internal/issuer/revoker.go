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
)

// sessionEntry is the RevocationEntry that revokes a session in one policy. Its name is
// a function of the policy and the session, so a retry or another replica creating it
// again gets AlreadyExists, which is success.
func sessionEntry(p *policyState, sid, reason string) *v1alpha1.RevocationEntry {
	return revocationEntry(p, "sid", sid, v1alpha1.RevocationEntrySpec{SessionID: sid, Reason: reason, Policies: []string{p.name}})
}

// jtiEntry revokes one access token.
func jtiEntry(p *policyState, jti, reason string) *v1alpha1.RevocationEntry {
	return revocationEntry(p, "jti", jti, v1alpha1.RevocationEntrySpec{JTI: jti, Reason: reason, Policies: []string{p.name}})
}

func revocationEntry(p *policyState, kind, value string, spec v1alpha1.RevocationEntrySpec) *v1alpha1.RevocationEntry {
	sum := sha256.Sum256([]byte(p.name + "\x00" + kind + "\x00" + value))
	return &v1alpha1.RevocationEntry{
		ObjectMeta: metav1.ObjectMeta{
			Name:      "issuer-" + kind + "-" + hex.EncodeToString(sum[:16]),
			Namespace: p.namespace,
			Labels: map[string]string{
				LabelCreatedBy:            CreatedByValue,
				v1alpha1.LabelTokenPolicy: p.name,
			},
		},
		Spec: spec,
	}
}

// revocationQueue creates RevocationEntries, retrying with backoff until the API server
// takes them: a revocation the store has already applied must reach the verifiers too.
type revocationQueue struct {
	c       client.Client
	log     logr.Logger
	metrics *Metrics
	q       workqueue.TypedRateLimitingInterface[string]

	mu      sync.Mutex
	pending map[string]*v1alpha1.RevocationEntry
}

func newRevocationQueue(c client.Client, m *Metrics, log logr.Logger) *revocationQueue {
	return &revocationQueue{
		c: c, log: log, metrics: m,
		q: workqueue.NewTypedRateLimitingQueueWithConfig(
			workqueue.NewTypedItemExponentialFailureRateLimiter[string](100*time.Millisecond, 30*time.Second),
			workqueue.TypedRateLimitingQueueConfig[string]{Name: "keyward_issuer_revocations"}),
		pending: map[string]*v1alpha1.RevocationEntry{},
	}
}

// add queues an entry (idempotent by name).
func (r *revocationQueue) add(e *v1alpha1.RevocationEntry) {
	key := e.Namespace + "/" + e.Name
	r.mu.Lock()
	if _, ok := r.pending[key]; !ok {
		r.pending[key] = e
		r.metrics.RevocationQueue.Set(float64(len(r.pending)))
	}
	r.mu.Unlock()
	r.q.Add(key)
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
	lost := 0
	for _, e := range pending {
		if err := r.c.Create(ctx, e.DeepCopy()); err != nil && !apierrors.IsAlreadyExists(err) {
			lost++
			r.log.Error(err, "Failed to create a RevocationEntry at shutdown", "revocationEntry", e.Namespace+"/"+e.Name, "sessionID", e.Spec.SessionID)
		}
	}
	if lost > 0 {
		r.log.Info("Stopped with RevocationEntries not created; their sessions are revoked in the store", "count", lost)
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
	r.metrics.RevocationQueue.Set(float64(len(r.pending)))
	r.mu.Unlock()
	return true
}

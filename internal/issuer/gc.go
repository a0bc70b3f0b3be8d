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
	"time"

	"github.com/go-logr/logr"
	"k8s.io/utils/clock"

	"github.com/keyward-dev/keyward/internal/issuer/store"
)

// MaxReplayWindow is the longest refreshToken.reuseInterval the API allows; GC drops
// replay records older than it.
const MaxReplayWindow = time.Minute

// GC deletes, every interval, the replay records past the longest replay window and the
// families that ended more than retain ago (so a reuse of their tokens is still
// recognised for retain; later it is an unknown token).
type GC struct {
	Store    store.Store
	Clock    clock.WithTicker
	Interval time.Duration
	Retain   time.Duration
	Metrics  *Metrics
	Log      logr.Logger
}

// Start runs until ctx is done (a controller-runtime Runnable).
func (g *GC) Start(ctx context.Context) error {
	t := g.Clock.NewTicker(g.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C():
			n, err := g.Store.GC(ctx, g.Clock.Now(), MaxReplayWindow, g.Retain)
			if err != nil {
				g.Log.Error(err, "Store garbage collection failed")
				continue
			}
			if g.Metrics != nil {
				g.Metrics.GCDeleted.Add(float64(n))
			}
			if n > 0 {
				g.Log.Info("Deleted ended sessions from the store", "families", n)
			}
		}
	}
}

// NeedLeaderElection: with PostgreSQL every replica may collect; deletes are idempotent.
func (g *GC) NeedLeaderElection() bool { return false }

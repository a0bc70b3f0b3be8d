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
// families that ended more than Retain ago (so a reuse of their tokens is still
// recognised for Retain; later it is an unknown token). Retain is at least
// MaxRevocationWindow, so the revocation sweep still finds every family it may need.
//
// With a Sweeper it also runs the revocation sweep: once at start, then after every
// collection. A RevocationEntry a crash lost is therefore created at most one Interval
// after the restart (at once, when the sweep at start can reach the store and the API).
type GC struct {
	Store    store.Store
	Clock    clock.WithTicker
	Interval time.Duration
	Retain   time.Duration
	// Sweeper re-queues lost RevocationEntries (the Server); may be nil.
	Sweeper Sweeper
	Metrics *Metrics
	Log     logr.Logger
}

// Sweeper is the revocation sweep (Server.SweepRevocations): it returns how many entries
// it queued again.
type Sweeper interface {
	SweepRevocations(ctx context.Context) (int, error)
}

// Start runs until ctx is done (a controller-runtime Runnable).
func (g *GC) Start(ctx context.Context) error {
	retain := max(g.Retain, MaxRevocationWindow)
	if retain != g.Retain {
		g.Log.Info("Raised the retention of ended sessions to the longest revocation window", "retain", retain)
	}
	g.sweep(ctx)
	t := g.Clock.NewTicker(g.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C():
			g.collect(ctx, retain)
			g.sweep(ctx)
		}
	}
}

func (g *GC) collect(ctx context.Context, retain time.Duration) {
	n, err := g.Store.GC(ctx, g.Clock.Now(), MaxReplayWindow, retain)
	if err != nil {
		g.Log.Error(err, "Store garbage collection failed")
		return
	}
	if g.Metrics != nil {
		g.Metrics.GCDeleted.Add(float64(n))
	}
	if n > 0 {
		g.Log.Info("Deleted ended sessions from the store", "families", n)
	}
}

func (g *GC) sweep(ctx context.Context) {
	if g.Sweeper == nil {
		return
	}
	if _, err := g.Sweeper.SweepRevocations(ctx); err != nil {
		if ctx.Err() == nil {
			g.Log.Error(err, "Revocation sweep failed; retrying after the next collection")
			if g.Metrics != nil {
				g.Metrics.SweepFailures.Inc()
			}
		}
	}
}

// NeedLeaderElection: with PostgreSQL every replica may collect; deletes are idempotent.
func (g *GC) NeedLeaderElection() bool { return false }

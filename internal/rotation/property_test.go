package rotation

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	clocktesting "k8s.io/utils/clock/testing"
)

var profiles = []string{"ES256", "RS256/3072", "EdDSA"}

// randomPolicy returns a valid policy with Retain >= minRetain.
func randomPolicy(r *rand.Rand, minRetain time.Duration, profile string) Policy {
	p := Policy{
		Period:  time.Duration(1+r.IntN(72)) * time.Hour,
		Retain:  minRetain + time.Duration(r.Int64N(int64(2*minRetain)+1)),
		Profile: profile,
	}
	switch r.IntN(3) {
	case 0: // the shortest the CRD allows
		p.PrePublish = time.Second
	case 1:
		p.PrePublish = p.Period - time.Second
	default:
		p.PrePublish = time.Second + time.Duration(r.Int64N(int64(p.Period-2*time.Second)))
	}
	return p
}

// timelineStep is one controller reconcile of a random timeline.
type timelineStep struct {
	now     time.Time
	policy  Policy
	manual  bool
	actions []Action
	keys    []Key
	nextDue time.Time
	overdue bool
}

func formatTimeline(steps []timelineStep) string {
	var b strings.Builder
	var prev Policy
	for i, s := range steps {
		fmt.Fprintf(&b, "  #%-2d t0%+v", i, s.now.Sub(t0))
		if i == 0 || s.policy != prev {
			fmt.Fprintf(&b, " policy{period %v prePublish %v retain %v profile %s}", s.policy.Period, s.policy.PrePublish, s.policy.Retain, s.policy.Profile)
			prev = s.policy
		}
		if s.manual {
			b.WriteString(" +manual request")
		}
		fmt.Fprintf(&b, "\n      actions: %s\n      keys:", acts(s.actions))
		for _, k := range s.keys {
			fmt.Fprintf(&b, " %s:%s(pub t0%+v", k.KID, k.State, k.PublishedAt.Sub(t0))
			if !k.ActivatedAt.IsZero() {
				fmt.Fprintf(&b, " act t0%+v", k.ActivatedAt.Sub(t0))
			}
			if !k.RetiredAt.IsZero() {
				fmt.Fprintf(&b, " ret t0%+v", k.RetiredAt.Sub(t0))
			}
			if k.Manual {
				b.WriteString(" manual")
			}
			b.WriteString(")")
		}
		fmt.Fprintf(&b, "\n      nextDue t0%+v overdue %v\n", s.nextDue.Sub(t0), s.overdue)
	}
	return b.String()
}

// TestPlanRandomTimelines simulates the controller over random timelines (random
// gaps from seconds to several periods, manual requests, spec changes; no emergency
// or revocation) and checks the product guarantees at every step.
func TestPlanRandomTimelines(t *testing.T) {
	timelines, steps := 2000, 40
	if testing.Short() {
		timelines = 200
	}
	for seed := range uint64(timelines) {
		if !runTimeline(t, seed, steps) {
			return
		}
	}
}

func runTimeline(t *testing.T, seed uint64, steps int) bool {
	t.Helper()
	r := rand.New(rand.NewPCG(seed, 0x6b657977617264))
	// Tokens live for ttl; spec changes keep Retain >= ttl.
	ttl := time.Duration(1+r.IntN(48)) * time.Hour
	policy := randomPolicy(r, ttl, profiles[0])
	clk := clocktesting.NewFakeClock(t0)
	next := counter("k")

	var (
		keys       []Key
		nextDue    time.Time
		lastActive string
		lastSigned = map[string]time.Time{} // kid -> last time it signed a token
		removed    = map[string]bool{}
		timeline   []timelineStep
	)
	fail := func(format string, args ...any) bool {
		t.Helper()
		t.Errorf("seed %d, step %d (t0%+v), token TTL %v: %s\ntimeline:\n%s",
			seed, len(timeline)-1, clk.Now().Sub(t0), ttl, fmt.Sprintf(format, args...), formatTimeline(timeline))
		return false
	}

	for step := range steps {
		if step > 0 {
			var gap time.Duration
			switch n := r.IntN(20); {
			case n < 6: // the controller requeued at NextDue, give or take
				gap = nextDue.Sub(clk.Now()) + time.Duration(r.IntN(3)-1)
			case n < 12: // seconds to a few pre-publications
				gap = time.Duration(r.Int64N(int64(3*policy.PrePublish))) + time.Second
			case n < 17: // up to a period
				gap = time.Duration(r.Int64N(int64(policy.Period))) + time.Second
			default: // an outage of several periods
				gap = time.Duration(r.Int64N(int64(6*policy.Period))) + time.Second
			}
			clk.Step(max(gap, time.Second))
		}
		now := clk.Now()
		// The Active key of the previous step signed until just before now.
		if lastActive != "" {
			lastSigned[lastActive] = now.Add(-time.Nanosecond)
		}
		if step > 0 && r.IntN(10) == 0 {
			profile := policy.Profile
			if r.IntN(3) == 0 {
				profile = profiles[r.IntN(len(profiles))]
			}
			policy = randomPolicy(r, ttl, profile)
		}
		in := Input{Now: now, Policy: policy, Keys: keys, RotationRequested: r.IntN(8) == 0}
		before := slices.Clone(keys)
		res := Plan(in)
		minted := mint(res.Keys, next)
		timeline = append(timeline, timelineStep{now: now, policy: policy, manual: in.RotationRequested,
			actions: res.Actions, keys: minted, nextDue: res.NextDue, overdue: res.Overdue})

		if !slices.Equal(keys, before) {
			return fail("Plan mutated its input")
		}

		// Exactly one Active key, at most one Pending key, at most one key to mint.
		var active Key
		nActive, nPending, nMint := 0, 0, 0
		published := map[string]bool{}
		for _, k := range res.Keys {
			switch k.State {
			case StateActive:
				nActive++
				active = k
			case StatePending:
				nPending++
			}
			if k.KID == "" {
				nMint++
			} else {
				published[k.KID] = true
			}
			if k.PublishedAt.After(now) {
				return fail("key %s published in the future", k.KID)
			}
		}
		if nActive != 1 || nPending > 1 || nMint > 1 {
			return fail("%d active, %d pending, %d to mint", nActive, nPending, nMint)
		}
		if !slices.IsSortedFunc(res.Keys, func(a, b Key) int {
			if c := a.PublishedAt.Compare(b.PublishedAt); c != 0 {
				return c
			}
			return strings.Compare(a.KID, b.KID)
		}) {
			return fail("keys not sorted")
		}
		for _, a := range res.Actions {
			if a.Reason == ReasonInitial && step != 0 || a.Reason == ReasonBootstrap || a.Reason == ReasonEmergency || a.Reason == ReasonRevoked || a.Kind == ActionWithdraw {
				return fail("unexpected action %s", a)
			}
		}
		for _, k := range minted {
			if removed[k.KID] {
				return fail("removed key %s is back", k.KID)
			}
		}
		activeKID := minted[slices.IndexFunc(minted, func(k Key) bool { return k.State == StateActive })].KID

		// Every Active key was published PrePublish before it signed (the Initial one
		// excepted).
		if activeKID != lastActive {
			if step > 0 {
				if !active.ActivatedAt.Equal(now) {
					return fail("new active key %s activated at t0%+v", activeKID, active.ActivatedAt.Sub(t0))
				}
				if pub := now.Sub(active.PublishedAt); pub < policy.PrePublish {
					return fail("active key %s signs after %v of pre-publication, want >= %v", activeKID, pub, policy.PrePublish)
				}
			}
			lastActive = activeKID
		}
		lastSigned[activeKID] = now

		// A token signed at t with TTL <= Retain still verifies until t+TTL.
		for kid, signed := range lastSigned {
			if !now.Before(signed.Add(ttl)) {
				delete(lastSigned, kid)
				continue
			}
			if kid != activeKID && !published[kid] {
				return fail("key %s signed a token at t0%+v valid until t0%+v but is no longer published", kid, signed.Sub(t0), signed.Add(ttl).Sub(t0))
			}
		}

		// Overdue: the active key's period is over and its successor is pre-published.
		periodOver := !now.Before(active.ActivatedAt.Add(policy.Period))
		if res.Overdue != (periodOver && nPending == 1) || (periodOver && nPending == 0) {
			return fail("overdue %v, period over %v, %d pending", res.Overdue, periodOver, nPending)
		}

		// Fixpoint: replanning at the same time changes nothing.
		again := Plan(Input{Now: now, Policy: policy, Keys: minted})
		if again.Changed() || !slices.Equal(again.Keys, minted) || !again.NextDue.Equal(res.NextDue) {
			return fail("not a fixpoint: replanning yields %s", acts(again.Actions))
		}
		// NextDue: nothing is due before it, something is at it.
		if !res.NextDue.After(now) {
			return fail("NextDue t0%+v not after now", res.NextDue.Sub(t0))
		}
		quiet := now.Add(time.Duration(r.Int64N(int64(res.NextDue.Sub(now)))))
		if q := Plan(Input{Now: quiet, Policy: policy, Keys: minted}); q.Changed() {
			return fail("before NextDue, at t0%+v: %s", quiet.Sub(t0), acts(q.Actions))
		}
		if d := Plan(Input{Now: res.NextDue, Policy: policy, Keys: minted}); !d.Changed() {
			return fail("nothing due at NextDue")
		}

		for _, k := range keys {
			if !published[k.KID] {
				removed[k.KID] = true
			}
		}
		keys = minted
		nextDue = res.NextDue
	}
	return true
}

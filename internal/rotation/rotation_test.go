package rotation

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	clocktesting "k8s.io/utils/clock/testing"
)

var t0 = time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)

const (
	period     = 24 * time.Hour
	prePublish = 4 * time.Hour
	retain     = 8 * time.Hour
	profile    = "ES256"
)

var pol = Policy{Period: period, PrePublish: prePublish, Retain: retain, Profile: profile}

// at returns t0+d.
func at(d time.Duration) time.Time { return t0.Add(d) }

func activeKey(kid string, published, activated time.Duration) Key {
	return Key{KID: kid, Profile: profile, State: StateActive, PublishedAt: at(published), ActivatedAt: at(activated)}
}

func pendingKey(kid string, published time.Duration, manual bool) Key {
	return Key{KID: kid, Profile: profile, State: StatePending, PublishedAt: at(published), Manual: manual}
}

func retiredKey(kid string, published, activated, retired time.Duration) Key {
	return Key{KID: kid, Profile: profile, State: StateRetired, PublishedAt: at(published), ActivatedAt: at(activated), RetiredAt: at(retired)}
}

func withProfile(k Key, p string) Key { k.Profile = p; return k }

// acts formats actions as "Kind(KID,Reason) ...".
func acts(as []Action) string {
	s := make([]string, len(as))
	for i, a := range as {
		s[i] = a.String()
	}
	return strings.Join(s, " ")
}

// summary formats keys as "kid:State[:manual] ..." (kid "" shown as "+").
func summary(keys []Key) string {
	s := make([]string, len(keys))
	for i, k := range keys {
		kid := k.KID
		if kid == "" {
			kid = "+"
		}
		s[i] = kid + ":" + string(k.State)
		if k.Manual {
			s[i] += ":manual"
		}
	}
	return strings.Join(s, " ")
}

// mint returns a copy of keys with the key to mint named by next.
func mint(keys []Key, next func() string) []Key {
	out := slices.Clone(keys)
	for i := range out {
		if out[i].KID == "" {
			out[i].KID = next()
		}
	}
	return out
}

func counter(prefix string) func() string {
	n := 0
	return func() string { n++; return fmt.Sprintf("%s%d", prefix, n) }
}

// find returns the key kid of keys ("" finds the key to mint).
func find(t *testing.T, keys []Key, kid string) Key {
	t.Helper()
	for _, k := range keys {
		if k.KID == kid {
			return k
		}
	}
	t.Fatalf("key %q not in %s", kid, summary(keys))
	return Key{}
}

// assertFixpoint checks that planning again at the same time, with the minted
// result and the requests cleared, changes nothing.
func assertFixpoint(t *testing.T, in Input, res Result) {
	t.Helper()
	keys := mint(res.Keys, counter("fix"))
	again := Plan(Input{Now: in.Now, Policy: in.Policy, Keys: keys, Revoked: in.Revoked})
	if again.Changed() {
		t.Errorf("not a fixpoint: replanning %s yields %s", summary(keys), acts(again.Actions))
	}
	if !slices.Equal(again.Keys, keys) {
		t.Errorf("not a fixpoint: keys %s became %s", summary(keys), summary(again.Keys))
	}
	if !again.NextDue.Equal(res.NextDue) || again.Overdue != res.Overdue {
		t.Errorf("replanning changed NextDue/Overdue from %v/%v to %v/%v", res.NextDue, res.Overdue, again.NextDue, again.Overdue)
	}
}

type planCase struct {
	name      string
	in        Input
	actions   string
	keys      string
	nextDue   time.Time
	overdue   bool
	checkKeys func(t *testing.T, keys []Key)
}

func runPlanCases(t *testing.T, cases []planCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			in := tc.in
			if in.Policy == (Policy{}) {
				in.Policy = pol
			}
			res := Plan(in)
			if got := acts(res.Actions); got != tc.actions {
				t.Errorf("actions = %q, want %q", got, tc.actions)
			}
			if got := summary(res.Keys); got != tc.keys {
				t.Errorf("keys = %q, want %q", got, tc.keys)
			}
			if !tc.nextDue.IsZero() && !res.NextDue.Equal(tc.nextDue) {
				t.Errorf("NextDue = t0%+v, want t0%+v", res.NextDue.Sub(t0), tc.nextDue.Sub(t0))
			}
			if res.Overdue != tc.overdue {
				t.Errorf("Overdue = %v, want %v", res.Overdue, tc.overdue)
			}
			if res.Changed() != (tc.actions != "") {
				t.Errorf("Changed() = %v", res.Changed())
			}
			if tc.checkKeys != nil {
				tc.checkKeys(t, res.Keys)
			}
			assertFixpoint(t, in, res)
		})
	}
}

func TestPlanFirstKey(t *testing.T) {
	check := func(t *testing.T, keys []Key) {
		k := keys[0]
		want := Key{Profile: profile, State: StateActive, PublishedAt: t0, ActivatedAt: t0}
		if k != want {
			t.Errorf("first key = %+v, want %+v", k, want)
		}
	}
	runPlanCases(t, []planCase{
		{name: "no keys", in: Input{Now: t0},
			actions: "Create(,Initial)", keys: "+:Active", nextDue: at(period - prePublish), checkKeys: check},
		{name: "manual request is satisfied by the first key", in: Input{Now: t0, RotationRequested: true},
			actions: "Create(,Initial)", keys: "+:Active", nextDue: at(period - prePublish), checkKeys: check},
		{name: "never minted entries are dropped", in: Input{Now: t0, Keys: []Key{{State: StateActive, PublishedAt: at(-time.Hour)}}},
			actions: "Create(,Initial)", keys: "+:Active", nextDue: at(period - prePublish), checkKeys: check},
		{name: "revoked kids of an empty set", in: Input{Now: t0, Revoked: []string{"k1"}},
			actions: "Create(,Initial)", keys: "+:Active", nextDue: at(period - prePublish), checkKeys: check},
	})
}

func TestPlanPrePublication(t *testing.T) {
	keys := []Key{activeKey("k1", 0, 0)}
	runPlanCases(t, []planCase{
		{name: "a nanosecond before", in: Input{Now: at(period - prePublish - 1), Keys: keys},
			actions: "", keys: "k1:Active", nextDue: at(period - prePublish)},
		{name: "exactly due", in: Input{Now: at(period - prePublish), Keys: keys},
			actions: "Create(,Scheduled)", keys: "k1:Active +:Pending", nextDue: at(period),
			checkKeys: func(t *testing.T, keys []Key) {
				if p := find(t, keys, ""); !p.PublishedAt.Equal(at(period-prePublish)) || !p.ActivatedAt.IsZero() || p.Profile != profile {
					t.Errorf("pending key = %+v", p)
				}
			}},
		{name: "late by two hours", in: Input{Now: at(period - prePublish + 2*time.Hour), Keys: keys},
			actions: "Create(,Scheduled)", keys: "k1:Active +:Pending", nextDue: at(period + 2*time.Hour)},
		{name: "pending already there", in: Input{Now: at(period - 1), Keys: []Key{activeKey("k1", 0, 0), pendingKey("k2", period-prePublish, false)}},
			actions: "", keys: "k1:Active k2:Pending", nextDue: at(period)},
	})
}

func TestPlanActivation(t *testing.T) {
	onTime := []Key{activeKey("k1", 0, 0), pendingKey("k2", period-prePublish, false)}
	late := []Key{activeKey("k1", 0, 0), pendingKey("k2", period-prePublish+2*time.Hour, false)}
	runPlanCases(t, []planCase{
		{name: "a nanosecond before the period ends", in: Input{Now: at(period - 1), Keys: onTime},
			actions: "", keys: "k1:Active k2:Pending", nextDue: at(period)},
		{name: "period ends", in: Input{Now: at(period), Keys: onTime},
			actions: "Activate(k2,Scheduled) Retire(k1,Scheduled)", keys: "k1:Retired k2:Active",
			nextDue: at(period + retain),
			checkKeys: func(t *testing.T, keys []Key) {
				if k := find(t, keys, "k1"); !k.RetiredAt.Equal(at(period)) || !k.ActivatedAt.Equal(t0) {
					t.Errorf("retired key = %+v", k)
				}
				if k := find(t, keys, "k2"); !k.ActivatedAt.Equal(at(period)) || !k.PublishedAt.Equal(at(period-prePublish)) {
					t.Errorf("activated key = %+v", k)
				}
			}},
		{name: "late pending waits for its pre-publication", in: Input{Now: at(period), Keys: late},
			actions: "", keys: "k1:Active k2:Pending", nextDue: at(period + 2*time.Hour), overdue: true},
		{name: "late pending a nanosecond early", in: Input{Now: at(period + 2*time.Hour - 1), Keys: late},
			actions: "", keys: "k1:Active k2:Pending", nextDue: at(period + 2*time.Hour), overdue: true},
		{name: "late pending pre-published", in: Input{Now: at(period + 2*time.Hour), Keys: late},
			actions: "Activate(k2,Scheduled) Retire(k1,Scheduled)", keys: "k1:Retired k2:Active",
			nextDue: at(period + 2*time.Hour + retain)},
		{name: "manual pending activates once pre-published", in: Input{Now: at(7 * time.Hour), Keys: []Key{activeKey("k1", 0, 0), pendingKey("k2", 3*time.Hour, true)}},
			actions: "Activate(k2,Manual) Retire(k1,Manual)", keys: "k1:Retired k2:Active",
			nextDue: at(7*time.Hour + retain),
			checkKeys: func(t *testing.T, keys []Key) {
				if k := find(t, keys, "k2"); k.Manual {
					t.Errorf("active key still marked manual: %+v", k)
				}
			}},
		{name: "manual pending not yet pre-published", in: Input{Now: at(7*time.Hour - 1), Keys: []Key{activeKey("k1", 0, 0), pendingKey("k2", 3*time.Hour, true)}},
			actions: "", keys: "k1:Active k2:Pending:manual", nextDue: at(7 * time.Hour)},
	})
}

func TestPlanRetirementAndRemoval(t *testing.T) {
	keys := []Key{
		retiredKey("k1", -2*period, -period-prePublish, -period+time.Hour),
		retiredKey("k2", -period-prePublish, -period+time.Hour, 0),
		activeKey("k3", -prePublish, 0),
	}
	runPlanCases(t, []planCase{
		{name: "before retain", in: Input{Now: at(-period + time.Hour + retain - 1), Keys: keys},
			actions: "", keys: "k1:Retired k2:Retired k3:Active", nextDue: at(-period + time.Hour + retain)},
		{name: "retain elapsed for the older", in: Input{Now: at(-period + time.Hour + retain), Keys: keys},
			actions: "Remove(k1,RetainElapsed)", keys: "k2:Retired k3:Active", nextDue: at(retain)},
		{name: "a nanosecond before the younger", in: Input{Now: at(retain - 1), Keys: keys},
			actions: "Remove(k1,RetainElapsed)", keys: "k2:Retired k3:Active", nextDue: at(retain)},
		{name: "retain elapsed for both", in: Input{Now: at(retain), Keys: keys},
			actions: "Remove(k1,RetainElapsed) Remove(k2,RetainElapsed)", keys: "k3:Active", nextDue: at(period - prePublish)},
		{name: "retired keys do not block the schedule", in: Input{Now: at(period - prePublish), Keys: keys},
			actions: "Create(,Scheduled) Remove(k1,RetainElapsed) Remove(k2,RetainElapsed)", keys: "k3:Active +:Pending", nextDue: at(period)},
		{name: "zero retain removes on retirement", in: Input{Now: at(period), Policy: Policy{Period: period, PrePublish: prePublish, Profile: profile},
			Keys: []Key{activeKey("k3", -prePublish, 0), pendingKey("k4", period-prePublish, false)}},
			actions: "Activate(k4,Scheduled) Retire(k3,Scheduled) Remove(k3,RetainElapsed)", keys: "k4:Active", nextDue: at(2*period - prePublish)},
	})
}

func TestPlanManualRotation(t *testing.T) {
	runPlanCases(t, []planCase{
		{name: "without pending key", in: Input{Now: at(time.Hour), Keys: []Key{activeKey("k1", 0, 0)}, RotationRequested: true},
			actions: "Create(,Manual)", keys: "k1:Active +:Pending:manual", nextDue: at(time.Hour + prePublish),
			checkKeys: func(t *testing.T, keys []Key) {
				if p := find(t, keys, ""); !p.PublishedAt.Equal(at(time.Hour)) || !p.Manual {
					t.Errorf("pending key = %+v", p)
				}
			}},
		{name: "with pending key", in: Input{Now: at(period - prePublish + time.Hour), Keys: []Key{activeKey("k1", 0, 0), pendingKey("k2", period-prePublish, false)}, RotationRequested: true},
			actions: "Schedule(k2,Manual)", keys: "k1:Active k2:Pending:manual", nextDue: at(period)},
		{name: "with pending key already manual", in: Input{Now: at(2 * time.Hour), Keys: []Key{activeKey("k1", 0, 0), pendingKey("k2", time.Hour, true)}, RotationRequested: true},
			actions: "", keys: "k1:Active k2:Pending:manual", nextDue: at(time.Hour + prePublish)},
		{name: "with pre-published pending key", in: Input{Now: at(period - time.Hour), Keys: []Key{activeKey("k1", 0, 0), pendingKey("k2", period-prePublish-2*time.Hour, false)}, RotationRequested: true},
			actions: "Schedule(k2,Manual) Activate(k2,Manual) Retire(k1,Manual)", keys: "k1:Retired k2:Active", nextDue: at(period - time.Hour + retain)},
	})

	t.Run("timeline", func(t *testing.T) {
		clk := clocktesting.NewFakeClock(t0)
		next := counter("k")
		res := Plan(Input{Now: clk.Now(), Policy: pol})
		keys := mint(res.Keys, next)
		clk.Step(time.Hour)
		res = Plan(Input{Now: clk.Now(), Policy: pol, Keys: keys, RotationRequested: true})
		if got := acts(res.Actions); got != "Create(,Manual)" {
			t.Fatalf("manual request: %s", got)
		}
		keys = mint(res.Keys, next)
		clk.Step(prePublish - 1)
		if res = Plan(Input{Now: clk.Now(), Policy: pol, Keys: keys}); res.Changed() {
			t.Fatalf("manual key activated before pre-publication: %s", acts(res.Actions))
		}
		clk.Step(1)
		res = Plan(Input{Now: clk.Now(), Policy: pol, Keys: keys})
		if got := acts(res.Actions); got != "Activate(k2,Manual) Retire(k1,Manual)" {
			t.Fatalf("after pre-publication: %s", got)
		}
		if a, _ := res.Active(); !a.ActivatedAt.Equal(at(time.Hour+prePublish)) || !res.NextDue.Equal(at(time.Hour+prePublish+retain)) {
			t.Fatalf("active %+v, NextDue %v", a, res.NextDue)
		}
	})
}

func TestPlanEmergencyRotation(t *testing.T) {
	keys := []Key{
		retiredKey("k1", -period, -prePublish-period, -prePublish),
		activeKey("k2", -prePublish-time.Hour, -prePublish),
		pendingKey("k3", time.Hour, true),
	}
	runPlanCases(t, []planCase{
		{name: "withdraws every key", in: Input{Now: at(2 * time.Hour), Keys: keys, EmergencyRequested: true},
			actions: "Withdraw(k1,Emergency) Withdraw(k2,Emergency) Withdraw(k3,Emergency) Create(,Emergency)", keys: "+:Active",
			nextDue: at(2*time.Hour + period - prePublish),
			checkKeys: func(t *testing.T, keys []Key) {
				want := Key{Profile: profile, State: StateActive, PublishedAt: at(2 * time.Hour), ActivatedAt: at(2 * time.Hour)}
				if keys[0] != want {
					t.Errorf("fresh key = %+v, want %+v", keys[0], want)
				}
			}},
		{name: "other requests are moot", in: Input{Now: at(2 * time.Hour), Keys: keys, EmergencyRequested: true, RotationRequested: true, Revoked: []string{"k2"}},
			actions: "Withdraw(k1,Emergency) Withdraw(k2,Emergency) Withdraw(k3,Emergency) Create(,Emergency)", keys: "+:Active"},
		{name: "new profile", in: Input{Now: at(2 * time.Hour), Policy: Policy{Period: period, PrePublish: prePublish, Retain: retain, Profile: "RS256/3072"}, Keys: keys, EmergencyRequested: true},
			actions: "Withdraw(k1,Emergency) Withdraw(k2,Emergency) Withdraw(k3,Emergency) Create(,Emergency)", keys: "+:Active",
			checkKeys: func(t *testing.T, keys []Key) {
				if keys[0].Profile != "RS256/3072" {
					t.Errorf("fresh key profile %q", keys[0].Profile)
				}
			}},
		{name: "empty set", in: Input{Now: t0, EmergencyRequested: true},
			actions: "Create(,Emergency)", keys: "+:Active"},
	})
}

func TestPlanRevoked(t *testing.T) {
	revPol := pol
	revPol.Retain = 2 * period                 // keep k1 around
	due := at(period - prePublish + time.Hour) // k3 pending
	keys := []Key{
		retiredKey("k1", -period, -period+prePublish, 0),
		activeKey("k2", -prePublish, 0),
		pendingKey("k3", period-prePublish, false),
	}
	noPending := keys[:2]
	manualPending := []Key{keys[0], keys[1], pendingKey("k3", 2*time.Hour, true)}
	runPlanCases(t, []planCase{
		{name: "active", in: Input{Now: at(time.Hour), Policy: revPol, Keys: noPending, Revoked: []string{"k2"}},
			actions: "Withdraw(k2,Revoked) Create(,Revoked)", keys: "k1:Retired +:Active", nextDue: at(time.Hour + period - prePublish),
			checkKeys: func(t *testing.T, keys []Key) {
				if k := find(t, keys, ""); !k.ActivatedAt.Equal(at(time.Hour)) || !k.PublishedAt.Equal(at(time.Hour)) {
					t.Errorf("fresh key = %+v", k)
				}
				if k := find(t, keys, "k1"); k.State != StateRetired || !k.RetiredAt.Equal(t0) {
					t.Errorf("retired key = %+v", k)
				}
			}},
		{name: "active with pending key: the pending key is not activated early", in: Input{Now: due, Policy: revPol, Keys: keys, Revoked: []string{"k2"}},
			actions: "Withdraw(k2,Revoked) Create(,Revoked)", keys: "k1:Retired k3:Pending +:Active",
			nextDue: due.Add(period),
			checkKeys: func(t *testing.T, keys []Key) {
				if k := find(t, keys, "k3"); k.State != StatePending || !k.ActivatedAt.IsZero() {
					t.Errorf("pending key = %+v", k)
				}
			}},
		{name: "active with pre-published pending key", in: Input{Now: at(period - 1), Policy: revPol, Keys: keys, Revoked: []string{"k2"}},
			actions: "Withdraw(k2,Revoked) Create(,Revoked)", keys: "k1:Retired k3:Pending +:Active", nextDue: at(2*period - 1)},
		{name: "active and manual request", in: Input{Now: at(time.Hour), Policy: revPol, Keys: noPending, Revoked: []string{"k2"}, RotationRequested: true},
			actions: "Withdraw(k2,Revoked) Create(,Revoked)", keys: "k1:Retired +:Active"},
		{name: "pending: a successor is due at once", in: Input{Now: due, Policy: revPol, Keys: keys, Revoked: []string{"k3"}},
			actions: "Withdraw(k3,Revoked) Create(,Scheduled)", keys: "k1:Retired k2:Active +:Pending", nextDue: due.Add(prePublish)},
		{name: "manual pending is replaced", in: Input{Now: at(3 * time.Hour), Policy: revPol, Keys: manualPending, Revoked: []string{"k3"}},
			actions: "Withdraw(k3,Revoked) Create(,Manual)", keys: "k1:Retired k2:Active +:Pending:manual", nextDue: at(3*time.Hour + prePublish)},
		{name: "retired", in: Input{Now: at(time.Hour), Policy: revPol, Keys: noPending, Revoked: []string{"k1"}},
			actions: "Withdraw(k1,Revoked)", keys: "k2:Active", nextDue: at(period - prePublish)},
		{name: "unknown kid", in: Input{Now: at(time.Hour), Policy: revPol, Keys: noPending, Revoked: []string{"nope", ""}},
			actions: "", keys: "k1:Retired k2:Active", nextDue: at(period - prePublish)},
		{name: "every key", in: Input{Now: due, Policy: revPol, Keys: keys, Revoked: []string{"k3", "k1", "k2"}},
			actions: "Withdraw(k1,Revoked) Withdraw(k2,Revoked) Withdraw(k3,Revoked) Create(,Revoked)", keys: "+:Active",
			nextDue: due.Add(period - prePublish)},
	})
}

func TestPlanPendingNowDueAfterRevocation(t *testing.T) {
	// Revoking the pending key when the active key is due: a new successor at once.
	in := Input{Now: at(period), Policy: pol, Keys: []Key{activeKey("k2", -prePublish, 0), pendingKey("k3", period-prePublish, false)}, Revoked: []string{"k3"}}
	res := Plan(in)
	if got := acts(res.Actions); got != "Withdraw(k3,Revoked) Create(,Scheduled)" {
		t.Fatalf("actions %s", got)
	}
	if !res.Overdue || !res.NextDue.Equal(at(period+prePublish)) {
		t.Fatalf("Overdue %v NextDue %v", res.Overdue, res.NextDue)
	}
	assertFixpoint(t, in, res)
}

func TestPlanBootstrap(t *testing.T) {
	now := at(time.Hour)
	runPlanCases(t, []planCase{
		{name: "newest pending key activated at once", in: Input{Now: now, Keys: []Key{
			retiredKey("k1", -period, -period+prePublish, 0), pendingKey("k2", 0, false), pendingKey("k3", 30*time.Minute, true)}},
			actions: "Activate(k3,Bootstrap)", keys: "k1:Retired k2:Pending k3:Active", nextDue: at(retain),
			checkKeys: func(t *testing.T, keys []Key) {
				if k := find(t, keys, "k3"); !k.ActivatedAt.Equal(now) || k.Manual {
					t.Errorf("bootstrapped key = %+v", k)
				}
			}},
		{name: "no pending key: create one active", in: Input{Now: now, Keys: []Key{retiredKey("k1", -period, -period+prePublish, 0)}},
			actions: "Create(,Bootstrap)", keys: "k1:Retired +:Active"},
		{name: "manual request is satisfied", in: Input{Now: now, Keys: []Key{retiredKey("k1", -period, -period+prePublish, 0)}, RotationRequested: true},
			actions: "Create(,Bootstrap)", keys: "k1:Retired +:Active"},
		{name: "several active keys: newest kept", in: Input{Now: now, Keys: []Key{activeKey("k1", -period, -period), activeKey("k2", -prePublish, 0)}},
			actions: "Retire(k1,Bootstrap)", keys: "k1:Retired k2:Active", nextDue: now.Add(retain)},
		{name: "several pending keys: earliest kept", in: Input{Now: now, Keys: []Key{activeKey("k1", -prePublish, 0), pendingKey("k2", 0, false), pendingKey("k3", 30*time.Minute, false)}},
			actions: "Remove(k3,Bootstrap)", keys: "k1:Active k2:Pending", nextDue: at(period)},
		{name: "several pending keys: current profile kept", in: Input{Now: now, Keys: []Key{activeKey("k1", -prePublish, 0), withProfile(pendingKey("k2", 0, false), "RS256/2048"), pendingKey("k3", 30*time.Minute, false)}},
			actions: "Remove(k2,Bootstrap)", keys: "k1:Active k3:Pending", nextDue: at(period)},
		{name: "unknown state retired", in: Input{Now: now, Keys: []Key{activeKey("k1", -prePublish, 0), {KID: "k0", Profile: profile, State: "Weird", PublishedAt: at(-period)}}},
			actions: "Retire(k0,Bootstrap)", keys: "k0:Retired k1:Active", nextDue: now.Add(retain)},
	})
}

func TestPlanProfileChange(t *testing.T) {
	newPol := Policy{Period: period, PrePublish: prePublish, Retain: retain, Profile: "RS256/3072"}
	now := at(time.Hour)
	runPlanCases(t, []planCase{
		{name: "active of old profile rotated out", in: Input{Now: now, Policy: newPol, Keys: []Key{retiredKey("k0", -period, -period+prePublish, 0), activeKey("k1", -prePublish, 0)}},
			actions: "Create(,ProfileChanged)", keys: "k0:Retired k1:Active +:Pending:manual", nextDue: now.Add(prePublish),
			checkKeys: func(t *testing.T, keys []Key) {
				if k := find(t, keys, ""); k.Profile != "RS256/3072" {
					t.Errorf("new key profile %q", k.Profile)
				}
			}},
		{name: "pending of old profile replaced", in: Input{Now: at(period - 1), Policy: newPol, Keys: []Key{activeKey("k1", -prePublish, 0), pendingKey("k2", period-prePublish, false)}},
			actions: "Remove(k2,ProfileChanged) Create(,ProfileChanged)", keys: "k1:Active +:Pending:manual", nextDue: at(period - 1 + prePublish),
			checkKeys: func(t *testing.T, keys []Key) {
				if k := find(t, keys, ""); k.Profile != "RS256/3072" || !k.PublishedAt.Equal(at(period-1)) {
					t.Errorf("new key = %+v", k)
				}
			}},
		{name: "pending of new profile marked manual", in: Input{Now: now, Policy: newPol, Keys: []Key{activeKey("k1", -prePublish, 0), withProfile(pendingKey("k2", 0, false), "RS256/3072")}},
			actions: "Schedule(k2,ProfileChanged)", keys: "k1:Active k2:Pending:manual", nextDue: at(prePublish)},
		{name: "pending of new profile activated after pre-publication", in: Input{Now: at(prePublish), Policy: newPol, Keys: []Key{activeKey("k1", -prePublish, 0), withProfile(pendingKey("k2", 0, true), "RS256/3072")}},
			actions: "Activate(k2,ProfileChanged) Retire(k1,ProfileChanged)", keys: "k1:Retired k2:Active", nextDue: at(prePublish + retain)},
		{name: "retired of old profile kept until retain", in: Input{Now: at(retain - 1), Policy: newPol, Keys: []Key{retiredKey("k0", -period, -period+prePublish, 0), withProfile(activeKey("k1", -prePublish, 0), "RS256/3072")}},
			actions: "", keys: "k0:Retired k1:Active", nextDue: at(retain)},
		{name: "retired of old profile removed after retain", in: Input{Now: at(retain), Policy: newPol, Keys: []Key{retiredKey("k0", -period, -period+prePublish, 0), withProfile(activeKey("k1", -prePublish, 0), "RS256/3072")}},
			actions: "Remove(k0,RetainElapsed)", keys: "k1:Active", nextDue: at(period - prePublish)},
		{name: "revoked active and old pending: the fresh key replaces both", in: Input{Now: now, Policy: newPol, Keys: []Key{activeKey("k1", -prePublish, 0), pendingKey("k2", 0, false)}, Revoked: []string{"k1"}},
			actions: "Withdraw(k1,Revoked) Create(,Revoked) Remove(k2,ProfileChanged)", keys: "+:Active"},
	})

	t.Run("timeline", func(t *testing.T) {
		clk := clocktesting.NewFakeClock(at(time.Hour))
		keys := []Key{activeKey("k1", -prePublish, 0)}
		res := Plan(Input{Now: clk.Now(), Policy: newPol, Keys: keys})
		keys = mint(res.Keys, counter("n"))
		clk.Step(prePublish - time.Second)
		if res = Plan(Input{Now: clk.Now(), Policy: newPol, Keys: keys}); res.Changed() {
			t.Fatalf("activated before pre-publication: %s", acts(res.Actions))
		}
		clk.Step(time.Second)
		res = Plan(Input{Now: clk.Now(), Policy: newPol, Keys: keys})
		if got := acts(res.Actions); got != "Activate(n1,ProfileChanged) Retire(k1,ProfileChanged)" {
			t.Fatalf("actions %s", got)
		}
		if a, _ := res.Active(); a.Profile != "RS256/3072" {
			t.Fatalf("active %+v", a)
		}
	})
}

func TestPlanSpecChangeMidCycle(t *testing.T) {
	with := func(f func(*Policy)) Policy { p := pol; f(&p); return p }
	shorter := with(func(p *Policy) { p.Period = 12 * time.Hour })
	longerPre := with(func(p *Policy) { p.PrePublish = 6 * time.Hour })
	longer := with(func(p *Policy) { p.Period = 48 * time.Hour })
	shorterRetain := with(func(p *Policy) { p.Retain = 2 * time.Hour })
	runPlanCases(t, []planCase{
		{name: "shorter period: successor due now", in: Input{Now: at(10 * time.Hour), Policy: shorter, Keys: []Key{activeKey("k1", -prePublish, 0)}},
			actions: "Create(,Scheduled)", keys: "k1:Active +:Pending", nextDue: at(14 * time.Hour)},
		{name: "shorter period: not yet due", in: Input{Now: at(8*time.Hour - 1), Policy: shorter, Keys: []Key{activeKey("k1", -prePublish, 0)}},
			actions: "", keys: "k1:Active", nextDue: at(8 * time.Hour)},
		{name: "shorter period: pre-published successor activated", in: Input{Now: at(13 * time.Hour), Policy: shorter, Keys: []Key{activeKey("k1", -prePublish, 0), pendingKey("k2", 6*time.Hour, false)}},
			actions: "Activate(k2,Scheduled) Retire(k1,Scheduled)", keys: "k1:Retired k2:Active"},
		{name: "shorter period: successor still pre-published", in: Input{Now: at(13 * time.Hour), Policy: shorter, Keys: []Key{activeKey("k1", -prePublish, 0), pendingKey("k2", 11*time.Hour, false)}},
			actions: "", keys: "k1:Active k2:Pending", nextDue: at(15 * time.Hour), overdue: true},
		{name: "longer prePublish delays activation", in: Input{Now: at(period), Policy: longerPre, Keys: []Key{activeKey("k1", -prePublish, 0), pendingKey("k2", period-prePublish, false)}},
			actions: "", keys: "k1:Active k2:Pending", nextDue: at(period + 2*time.Hour), overdue: true},
		{name: "longer prePublish moves the successor earlier", in: Input{Now: at(18 * time.Hour), Policy: longerPre, Keys: []Key{activeKey("k1", -prePublish, 0)}},
			actions: "Create(,Scheduled)", keys: "k1:Active +:Pending", nextDue: at(period)},
		{name: "longer period keeps the successor pending", in: Input{Now: at(period), Policy: longer, Keys: []Key{activeKey("k1", -prePublish, 0), pendingKey("k2", period-prePublish, false)}},
			actions: "", keys: "k1:Active k2:Pending", nextDue: at(2 * period)},
		{name: "shorter retain", in: Input{Now: at(2 * time.Hour), Policy: shorterRetain, Keys: []Key{retiredKey("k0", -period, -period+prePublish, 0), activeKey("k1", -prePublish, 0)}},
			actions: "Remove(k0,RetainElapsed)", keys: "k1:Active", nextDue: at(period - prePublish)},
	})
}

func TestPlanClockJumpForward(t *testing.T) {
	clk := clocktesting.NewFakeClock(t0)
	next := counter("k")
	var keys []Key
	step := func(d time.Duration, wantActs string, wantOverdue bool) Result {
		t.Helper()
		clk.Step(d)
		in := Input{Now: clk.Now(), Policy: pol, Keys: keys}
		res := Plan(in)
		if got := acts(res.Actions); got != wantActs {
			t.Fatalf("t0%+v: actions %q, want %q", clk.Now().Sub(t0), got, wantActs)
		}
		if res.Overdue != wantOverdue {
			t.Fatalf("t0%+v: Overdue %v", clk.Now().Sub(t0), res.Overdue)
		}
		assertFixpoint(t, in, res)
		keys = mint(res.Keys, next)
		return res
	}
	step(0, "Create(,Initial)", false)
	step(period-prePublish, "Create(,Scheduled)", false)
	// Jump over five periods: the successor was pre-published, so it takes over.
	res := step(5*period, "Activate(k2,Scheduled) Retire(k1,Scheduled)", false)
	if a, _ := res.Active(); !a.ActivatedAt.Equal(clk.Now()) {
		t.Fatalf("activated at %v", a.ActivatedAt)
	}
	// Jump over three periods: the retired key goes, the successor is published but
	// does not sign before its pre-publication.
	res = step(3*period, "Create(,Scheduled) Remove(k1,RetainElapsed)", true)
	if a, _ := res.Active(); a.KID != "k2" || !res.NextDue.Equal(clk.Now().Add(prePublish)) {
		t.Fatalf("active %s, NextDue %v", a.KID, res.NextDue)
	}
	step(prePublish-1, "", true)
	step(1, "Activate(k3,Scheduled) Retire(k2,Scheduled)", false)
	step(retain-1, "", false)
	step(1, "Remove(k2,RetainElapsed)", false)
}

func TestPlanClockJumpBackward(t *testing.T) {
	// Recorded at t0+period: k2 just took over from k1, k3 published manually.
	keys := []Key{
		retiredKey("k1", -prePublish, 0, period),
		activeKey("k2", period-prePublish, period),
		pendingKey("k3", period, true),
	}
	cases := []struct {
		name string
		now  time.Time
	}{
		{"an hour back", at(period - time.Hour)},
		{"a period back", t0},
		{"a year back", t0.AddDate(-1, 0, 0)},
		{"just before the records", at(period - 1)},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			in := Input{Now: tc.now, Policy: pol, Keys: keys}
			res := Plan(in)
			if res.Changed() {
				t.Fatalf("clock jump backwards changed the set: %s", acts(res.Actions))
			}
			if res.Overdue {
				t.Fatal("overdue after a clock jump backwards")
			}
			// Due times are recorded time + duration, whatever Now says.
			if want := at(period + prePublish); !res.NextDue.Equal(want) {
				t.Fatalf("NextDue %v, want %v", res.NextDue, want)
			}
			assertFixpoint(t, in, res)
		})
	}

	t.Run("timeline", func(t *testing.T) {
		// The clock goes back after k2 took over: k1 stays until its own RetiredAt+Retain.
		clk := clocktesting.NewFakeClock(at(period - 2*time.Hour))
		keys := []Key{retiredKey("k1", -prePublish, 0, period), activeKey("k2", period-prePublish, period)}
		for clk.Now().Before(at(period + retain)) {
			res := Plan(Input{Now: clk.Now(), Policy: pol, Keys: keys})
			if res.Changed() {
				t.Fatalf("t0%+v: %s", clk.Now().Sub(t0), acts(res.Actions))
			}
			clk.Step(time.Hour)
		}
		res := Plan(Input{Now: clk.Now(), Policy: pol, Keys: keys})
		if got := acts(res.Actions); got != "Remove(k1,RetainElapsed)" {
			t.Fatalf("at RetiredAt+Retain: %q", got)
		}
	})
}

func TestPlanOperatorDownSeveralPeriods(t *testing.T) {
	clk := clocktesting.NewFakeClock(t0)
	keys := []Key{retiredKey("k0", -period-prePublish, -period, 0), activeKey("k1", -prePublish, 0)}
	clk.Step(5*period + 3*time.Hour)
	res := Plan(Input{Now: clk.Now(), Policy: pol, Keys: keys})
	if got := acts(res.Actions); got != "Create(,Scheduled) Remove(k0,RetainElapsed)" {
		t.Fatalf("after outage: %s", got)
	}
	if a, _ := res.Active(); a.KID != "k1" {
		t.Fatalf("the overdue key must keep signing, active %q", a.KID)
	}
	if !res.Overdue || !res.NextDue.Equal(clk.Now().Add(prePublish)) {
		t.Fatalf("Overdue %v NextDue %v", res.Overdue, res.NextDue)
	}
	keys = mint(res.Keys, counter("n"))
	// Polling every minute: nothing signs with k1's successor before it was published
	// for PrePublish.
	for range int(prePublish/time.Minute) - 1 {
		clk.Step(time.Minute)
		if res = Plan(Input{Now: clk.Now(), Policy: pol, Keys: keys}); res.Changed() || !res.Overdue {
			t.Fatalf("t0%+v: %s overdue=%v", clk.Now().Sub(t0), acts(res.Actions), res.Overdue)
		}
	}
	clk.Step(time.Minute)
	res = Plan(Input{Now: clk.Now(), Policy: pol, Keys: keys})
	if got := acts(res.Actions); got != "Activate(n1,Scheduled) Retire(k1,Scheduled)" {
		t.Fatalf("after pre-publication: %s", got)
	}
	a, _ := res.Active()
	if res.Overdue || !a.ActivatedAt.Equal(clk.Now()) || a.ActivatedAt.Sub(a.PublishedAt) != prePublish {
		t.Fatalf("after pre-publication: overdue %v, active %+v", res.Overdue, a)
	}
}

func TestPlanNextDue(t *testing.T) {
	cases := []struct {
		name    string
		now     time.Time
		keys    []Key
		want    time.Time
		overdue bool
	}{
		{"active only", at(time.Hour), []Key{activeKey("k1", 0, 0)}, at(period - prePublish), false},
		{"pending on time", at(period - time.Hour), []Key{activeKey("k1", 0, 0), pendingKey("k2", period-prePublish, false)}, at(period), false},
		{"pending late", at(period + time.Hour), []Key{activeKey("k1", 0, 0), pendingKey("k2", period-time.Hour, false)}, at(period + 3*time.Hour), true},
		{"manual pending", at(time.Hour), []Key{activeKey("k1", 0, 0), pendingKey("k2", time.Hour, true)}, at(time.Hour + prePublish), false},
		{"retired first", at(time.Hour), []Key{retiredKey("k0", -period, -period, 0), activeKey("k1", -prePublish, 0)}, at(retain), false},
		{"two retired", at(time.Hour), []Key{retiredKey("k-1", -2*period, -2*period, -time.Hour), retiredKey("k0", -period, -period, 0), activeKey("k1", -prePublish, 0)}, at(retain - time.Hour), false},
		{"pending before retired", at(period - time.Hour), []Key{retiredKey("k0", -period, -period, period-2*time.Hour), activeKey("k1", 0, 0), pendingKey("k2", period-prePublish, false)}, at(period), false},
		{"longer prePublish than the period rest", at(period - time.Hour), []Key{activeKey("k1", 0, 0), pendingKey("k2", period-time.Hour, false)}, at(period + 3*time.Hour), false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			res := Plan(Input{Now: tc.now, Policy: pol, Keys: tc.keys})
			if res.Changed() {
				t.Fatalf("unexpected actions %s", acts(res.Actions))
			}
			if !res.NextDue.Equal(tc.want) || res.Overdue != tc.overdue {
				t.Fatalf("NextDue t0%+v overdue %v, want t0%+v overdue %v", res.NextDue.Sub(t0), res.Overdue, tc.want.Sub(t0), tc.overdue)
			}
			// Nothing happens before NextDue; something does at NextDue.
			if r := Plan(Input{Now: tc.want.Add(-1), Policy: pol, Keys: tc.keys}); r.Changed() {
				t.Fatalf("a nanosecond before NextDue: %s", acts(r.Actions))
			}
			if r := Plan(Input{Now: tc.want, Policy: pol, Keys: tc.keys}); !r.Changed() {
				t.Fatal("nothing happened at NextDue")
			}
		})
	}
}

func TestPlanFixpoint(t *testing.T) {
	newProfile := Policy{Period: period, PrePublish: prePublish, Retain: retain, Profile: "EdDSA"}
	sets := map[string][]Key{
		"empty":          nil,
		"active":         {activeKey("k1", 0, 0)},
		"active+pending": {activeKey("k1", 0, 0), pendingKey("k2", period-prePublish, false)},
		"full":           {retiredKey("k0", -period, -period, 0), activeKey("k1", -prePublish, 0), pendingKey("k2", period-prePublish, true)},
		"no active":      {retiredKey("k0", -period, -period, 0), pendingKey("k2", time.Hour, false)},
		"two active":     {activeKey("k0", -period, -period), activeKey("k1", -prePublish, 0), pendingKey("k2", period-prePublish, false), pendingKey("k3", period, false)},
	}
	policies := map[string]Policy{
		"policy":        pol,
		"new profile":   newProfile,
		"zero prePub":   {Period: period, Retain: retain, Profile: profile},
		"zero everyth.": {Profile: profile},
		"pre > period":  {Period: time.Hour, PrePublish: 2 * time.Hour, Retain: retain, Profile: profile},
	}
	nows := []time.Duration{-period, 0, time.Hour, period - prePublish, period, period + prePublish, 10 * period}
	for sn, keys := range sets {
		for pn, p := range policies {
			for _, now := range nows {
				for req := range 8 {
					in := Input{Now: at(now), Policy: p, Keys: keys,
						RotationRequested: req&1 != 0, EmergencyRequested: req&2 != 0}
					if req&4 != 0 {
						in.Revoked = []string{"k1", "k2"}
					}
					name := fmt.Sprintf("%s/%s/t0%+v/req%d", sn, pn, now, req)
					res := Plan(in)
					if n := strings.Count(summary(res.Keys), "+:"); n > 1 {
						t.Errorf("%s: %d keys to mint", name, n)
					}
					if _, ok := res.Active(); !ok {
						t.Errorf("%s: no active key in %s", name, summary(res.Keys))
					}
					t.Run(name, func(t *testing.T) { assertFixpoint(t, in, res) })
				}
			}
		}
	}
}

func TestPlanDoesNotMutateInput(t *testing.T) {
	keys := []Key{retiredKey("k0", -period, -period, 0), activeKey("k1", -prePublish, 0), pendingKey("k2", period-prePublish, false)}
	orig := slices.Clone(keys)
	for _, in := range []Input{
		{Now: at(period), Policy: pol, Keys: keys},
		{Now: at(period), Policy: pol, Keys: keys, EmergencyRequested: true},
		{Now: at(period), Policy: pol, Keys: keys, Revoked: []string{"k1"}},
		{Now: at(time.Hour), Policy: pol, Keys: keys, RotationRequested: true},
		{Now: at(time.Hour), Policy: Policy{Period: period, PrePublish: prePublish, Retain: retain, Profile: "EdDSA"}, Keys: keys},
	} {
		res := Plan(in)
		if !slices.Equal(keys, orig) {
			t.Fatalf("Plan mutated its input: %s", summary(keys))
		}
		if len(res.Keys) > 0 && len(keys) > 0 && &res.Keys[0] == &keys[0] {
			t.Fatal("result aliases the input")
		}
	}
}

func TestPlanDeterministicOrder(t *testing.T) {
	keys := []Key{pendingKey("k2", period-prePublish, false), activeKey("kb", 0, 0), retiredKey("ka", 0, -period, 0)}
	res := Plan(Input{Now: at(time.Hour), Policy: pol, Keys: keys})
	if got := summary(res.Keys); got != "ka:Retired kb:Active k2:Pending" {
		t.Fatalf("order %s", got)
	}
}

func TestResultChangedAndActive(t *testing.T) {
	var r Result
	if r.Changed() {
		t.Error("empty result changed")
	}
	if _, ok := r.Active(); ok {
		t.Error("empty result has an active key")
	}
	r = Result{Keys: []Key{retiredKey("k0", 0, 0, 0), activeKey("k1", 0, 0)}, Actions: []Action{{Kind: ActionRetire, KID: "k0", Reason: ReasonScheduled}}}
	if !r.Changed() {
		t.Error("not changed")
	}
	if a, ok := r.Active(); !ok || a.KID != "k1" {
		t.Errorf("Active() = %v, %v", a, ok)
	}
}

func TestKeyJSON(t *testing.T) {
	cases := []struct {
		key  Key
		want string
	}{
		{pendingKey("k1", 0, false), `{"kid":"k1","profile":"ES256","state":"Pending","publishedAt":"2030-01-01T00:00:00Z"}`},
		{pendingKey("k1", 0, true), `{"kid":"k1","profile":"ES256","state":"Pending","publishedAt":"2030-01-01T00:00:00Z","manual":true}`},
		{retiredKey("k1", 0, time.Hour, 2*time.Hour), `{"kid":"k1","profile":"ES256","state":"Retired","publishedAt":"2030-01-01T00:00:00Z","activatedAt":"2030-01-01T01:00:00Z","retiredAt":"2030-01-01T02:00:00Z"}`},
	}
	for _, tc := range cases {
		b, err := json.Marshal(tc.key)
		if err != nil {
			t.Fatal(err)
		}
		if string(b) != tc.want {
			t.Errorf("json %s, want %s", b, tc.want)
		}
		var back Key
		if err := json.Unmarshal(b, &back); err != nil || back != tc.key {
			t.Errorf("round trip %+v, %v", back, err)
		}
	}
}

func TestPolicyValidate(t *testing.T) {
	cases := []struct {
		p  Policy
		ok bool
	}{
		{pol, true},
		{Policy{Period: period, PrePublish: prePublish, Profile: profile}, true},
		{Policy{Period: period, PrePublish: period, Retain: retain, Profile: profile}, false},
		{Policy{Period: period, Retain: retain, Profile: profile}, false},
		{Policy{PrePublish: prePublish, Retain: retain, Profile: profile}, false},
		{Policy{Period: period, PrePublish: prePublish, Retain: -1, Profile: profile}, false},
		{Policy{Period: period, PrePublish: prePublish, Retain: retain}, false},
	}
	for _, tc := range cases {
		if err := tc.p.Validate(); (err == nil) != tc.ok {
			t.Errorf("Validate(%+v) = %v", tc.p, err)
		}
	}
}

// Package rotation plans the lifecycle of the JWT signing keys of one key set.
//
// It is pure: no Kubernetes client, no clock (the current time comes in as
// [Input.Now]), no I/O. The controller feeds [Plan] the recorded keys, the rotation
// policy and any pending requests; it mints key material for the one entry of
// [Result.Keys] with an empty KID (if any), persists the keys and requeues at
// [Result.NextDue].
//
// # Lifecycle
//
// Every key is published in the JWKS from PublishedAt until it is removed or
// withdrawn, and goes through three states:
//
//	Pending --(pre-published for PrePublish, and the Active key's Period is over
//	           or the rotation is manual)--> Active --(successor activated)--> Retired
//	Retired --(Retain elapsed since RetiredAt)--> removed from the key set
//
// In detail:
//
//   - Exactly one key is Active: it signs new tokens. The first key (no keys at
//     all) and the replacement after an emergency rotation, a revocation of the
//     Active key or a key set without an Active key are Active at once.
//   - Period - PrePublish after the Active key was activated, a Pending successor is
//     created, so that every verifier sees it PrePublish before it signs. At most one
//     key is Pending.
//   - The Pending key is activated once it has been published for PrePublish and
//     the Active key's Period is over (a manual or profile-change rotation does not
//     wait for the Period). The previous Active key becomes Retired.
//   - A Retired key only verifies; it stays published for Retain after RetiredAt so
//     that tokens it signed (with a TTL up to Retain) keep verifying, then is removed.
//
// Requests override the schedule:
//
//   - A manual rotation creates a Pending key marked Manual (or marks the existing
//     one); it still waits PrePublish before it signs.
//   - An emergency rotation withdraws every key (the whole set is presumed leaked)
//     and creates a fresh Active key at once.
//   - A revoked kid is withdrawn at once whatever its state; if it was the Active
//     key, a fresh key becomes Active at once.
//   - A key profile change (the algorithm and size new keys get) replaces a Pending
//     key of the old profile and rotates an Active key of the old profile out as a
//     manual rotation would; Retired keys of the old profile stay until Retain.
//
// Due times are always recomputed from the recorded timestamps and the current
// policy, so spec changes take effect mid-cycle. A time that lies after Now (the
// clock jumped backwards) counts as not yet elapsed: a clock jump never activates a
// key early nor removes one early. After a long outage the planner catches up one
// safe step at a time: an overdue Active key keeps signing while its successor is
// pre-published ([Result.Overdue]).
//
// Plan is a fixpoint: planning again at the same Now with the resulting keys (minted
// KID filled in) and the requests cleared yields no actions.
package rotation

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

// State is where a key is in its lifecycle.
type State string

// The key states.
const (
	StatePending State = "Pending" // published in the JWKS, not signing yet
	StateActive  State = "Active"  // signs new tokens (exactly one, normally)
	StateRetired State = "Retired" // published, verify only
)

// Key is one key's lifecycle record (persisted as JSON by the controller).
type Key struct {
	KID         string    `json:"kid"`
	Profile     string    `json:"profile"` // key profile it was created with, e.g. "ES256" or "RS256/3072"
	State       State     `json:"state"`
	PublishedAt time.Time `json:"publishedAt"` // when it entered the JWKS
	ActivatedAt time.Time `json:"activatedAt,omitzero"`
	RetiredAt   time.Time `json:"retiredAt,omitzero"`
	Manual      bool      `json:"manual,omitempty"` // pending key from a manual rotation: activate as soon as pre-published
}

// Policy is the rotation schedule and the profile of new keys.
type Policy struct {
	Period     time.Duration // how long a key signs
	PrePublish time.Duration // a new key is in the JWKS this long before it signs (0 < PrePublish < Period)
	Retain     time.Duration // a retired key stays published this long
	Profile    string        // the profile new keys get; keys of another profile are rotated out
}

// Validate reports whether p is a consistent policy: 0 < PrePublish < Period,
// Retain >= 0 and a non-empty Profile. Plan does not reject an invalid policy: it
// clamps negative durations to 0 and Period to at least PrePublish+1ns, so that it
// still keeps its guarantees and stays a fixpoint. Callers should validate first.
func (p Policy) Validate() error {
	var errs []error
	if p.Period <= 0 {
		errs = append(errs, fmt.Errorf("period %v must be positive", p.Period))
	}
	if p.PrePublish <= 0 {
		errs = append(errs, fmt.Errorf("prePublish %v must be positive", p.PrePublish))
	}
	if p.Period > 0 && p.PrePublish >= p.Period {
		errs = append(errs, fmt.Errorf("prePublish %v must be shorter than period %v", p.PrePublish, p.Period))
	}
	if p.Retain < 0 {
		errs = append(errs, fmt.Errorf("retain %v must not be negative", p.Retain))
	}
	if p.Profile == "" {
		errs = append(errs, errors.New("profile must not be empty"))
	}
	return errors.Join(errs...)
}

// Input is everything Plan decides from.
type Input struct {
	Now                time.Time
	Policy             Policy
	Keys               []Key
	RotationRequested  bool     // a manual rotation request not yet handled
	EmergencyRequested bool     // an emergency rotation request not yet handled
	Revoked            []string // kids revoked (compromised): they must leave the key set at once
}

// ActionKind is what an Action does to a key.
type ActionKind string

// The action kinds.
const (
	ActionCreate   ActionKind = "Create"   // a key is to be minted (KID "")
	ActionActivate ActionKind = "Activate" // a Pending key starts signing
	ActionRetire   ActionKind = "Retire"   // an Active key stops signing, still published
	ActionRemove   ActionKind = "Remove"   // a key leaves the key set in the normal course
	ActionWithdraw ActionKind = "Withdraw" // a key leaves the key set at once (compromise)
	ActionSchedule ActionKind = "Schedule" // a Pending key is marked Manual: it activates as soon as pre-published
)

// Reason is why an Action happens.
type Reason string

// The reasons.
const (
	ReasonInitial        Reason = "Initial"        // the first key of an empty key set
	ReasonScheduled      Reason = "Scheduled"      // the Active key's period is (nearly) over
	ReasonManual         Reason = "Manual"         // a manual rotation request
	ReasonEmergency      Reason = "Emergency"      // an emergency rotation request
	ReasonRevoked        Reason = "Revoked"        // a kid was revoked
	ReasonProfileChanged Reason = "ProfileChanged" // the policy's key profile changed
	ReasonRetainElapsed  Reason = "RetainElapsed"  // a Retired key was kept for Retain
	ReasonBootstrap      Reason = "Bootstrap"      // repair of an inconsistent key set (no or several Active keys, several Pending keys, unknown state)
)

// Action is one change Plan made, for events, metrics and logs.
type Action struct {
	Kind   ActionKind
	KID    string // "" for the key to be created
	Reason Reason
}

// String formats the action as Kind(KID,Reason).
func (a Action) String() string {
	return fmt.Sprintf("%s(%s,%s)", a.Kind, a.KID, a.Reason)
}

// Result is the planned key set.
type Result struct {
	Keys    []Key     // the key set after the plan, deterministic order (PublishedAt, then KID); a key to mint has KID "" (at most one such key)
	Actions []Action  // what changed, in order, for events/metrics/logs
	NextDue time.Time // earliest time something is due for the resulting Keys; zero if nothing is ever due
	Overdue bool      // the active key is past its period but its successor is still being pre-published
}

// Changed reports whether the plan changed anything.
func (r Result) Changed() bool { return len(r.Actions) > 0 }

// Active returns the Active key of r.Keys.
func (r Result) Active() (Key, bool) {
	for _, k := range r.Keys {
		if k.State == StateActive {
			return k, true
		}
	}
	return Key{}, false
}

// Plan computes the key set for in.Now. It never mutates in.Keys.
//
// Entries of in.Keys with an empty KID were never minted (never published, never
// signed) and are dropped. The steps, in order:
//
//  1. an emergency request withdraws every key and creates a fresh Active key; the
//     other requests are moot then;
//  2. revoked kids are withdrawn; a fresh Active key replaces a revoked Active key;
//  3. the set is repaired: keys of an unknown state are retired, a single Active key
//     is kept (others retired), a missing Active key is bootstrapped (the newest
//     Pending key is activated, else a key is created), a single Pending key is kept;
//  4. a Pending key of another profile is replaced by a Manual one;
//  5. a manual request (or a revoked Manual Pending key) creates or marks a Manual
//     Pending key, unless the signing key already changed in steps 1-3;
//  6. an Active key of another profile gets a Manual successor; otherwise a
//     successor is created when the Active key's period is nearly over;
//  7. a Pending key is activated when the rules allow it (step 6 runs again after);
//  8. Retired keys past Retain are removed.
//
// At most one key is created per plan.
func Plan(in Input) Result {
	p := &planner{now: in.Now, pol: sanitize(in.Policy)}
	p.keys = make([]Key, 0, len(in.Keys)+1)
	for _, k := range in.Keys {
		if k.KID != "" {
			p.keys = append(p.keys, k)
		}
	}
	SortKeys(p.keys)
	hadKeys := len(p.keys) > 0

	if in.EmergencyRequested {
		p.emergency()
	} else {
		manual := p.revoke(in.Revoked) || in.RotationRequested
		p.repair(hadKeys)
		p.replaceForeignPending()
		if manual && !p.signerChanged {
			p.manual()
		}
		p.schedule()
		if p.activate() {
			p.schedule()
		}
		p.removeExpired()
	}

	SortKeys(p.keys)
	r := Result{Keys: p.keys, Actions: p.actions}
	r.NextDue, r.Overdue = p.due()
	return r
}

type planner struct {
	now     time.Time
	pol     Policy
	keys    []Key
	actions []Action
	// created: a key to mint (KID "") is in keys; at most one per plan.
	created bool
	// signerChanged: the Active key was replaced before the schedule steps
	// (emergency, revocation, bootstrap); a manual request is satisfied by that.
	signerChanged bool
}

func sanitize(p Policy) Policy {
	p.PrePublish = max(p.PrePublish, 0)
	p.Retain = max(p.Retain, 0)
	// A fresh Active key must not be due for a successor at once.
	p.Period = max(p.Period, p.PrePublish+time.Nanosecond)
	return p
}

// elapsed reports whether d has passed since since: now >= since+d. A since after
// now (the clock went backwards) has not elapsed for any d >= 0.
func elapsed(now, since time.Time, d time.Duration) bool {
	return !now.Before(since.Add(d))
}

// SortKeys puts keys in the deterministic order of Result.Keys: by PublishedAt, then KID.
func SortKeys(keys []Key) {
	slices.SortStableFunc(keys, func(a, b Key) int {
		if c := a.PublishedAt.Compare(b.PublishedAt); c != 0 {
			return c
		}
		return strings.Compare(a.KID, b.KID)
	})
}

func (p *planner) act(kind ActionKind, kid string, reason Reason) {
	p.actions = append(p.actions, Action{Kind: kind, KID: kid, Reason: reason})
}

// index returns the index of the first key in state s, or -1.
func (p *planner) index(s State) int {
	return slices.IndexFunc(p.keys, func(k Key) bool { return k.State == s })
}

func (p *planner) count(s State) int {
	n := 0
	for _, k := range p.keys {
		if k.State == s {
			n++
		}
	}
	return n
}

// create adds the key to mint, unless one was already created in this plan (at most
// one key is minted per pass).
func (p *planner) create(s State, manual bool, reason Reason) {
	if p.created {
		return
	}
	k := Key{Profile: p.pol.Profile, State: s, PublishedAt: p.now, Manual: manual}
	if s == StateActive {
		k.ActivatedAt = p.now
		k.Manual = false
		p.signerChanged = true
	}
	p.keys = append(p.keys, k)
	p.created = true
	p.act(ActionCreate, "", reason)
}

// drop deletes keys[i] from the set, reporting kind for it.
func (p *planner) drop(i int, kind ActionKind, reason Reason) {
	p.act(kind, p.keys[i].KID, reason)
	p.keys = slices.Delete(p.keys, i, i+1)
}

func (p *planner) retire(i int, reason Reason) {
	p.keys[i].State = StateRetired
	p.keys[i].RetiredAt = p.now
	p.keys[i].Manual = false
	p.act(ActionRetire, p.keys[i].KID, reason)
}

func (p *planner) activateKey(i int, reason Reason) {
	p.keys[i].State = StateActive
	p.keys[i].ActivatedAt = p.now
	p.keys[i].Manual = false
	p.act(ActionActivate, p.keys[i].KID, reason)
}

// emergency withdraws every key and creates a fresh Active one.
func (p *planner) emergency() {
	for _, k := range p.keys {
		p.act(ActionWithdraw, k.KID, ReasonEmergency)
	}
	p.keys = p.keys[:0]
	p.create(StateActive, false, ReasonEmergency)
}

// revoke withdraws the revoked keys. A revoked Active key is replaced by a fresh
// Active key. It reports whether a Manual Pending key was withdrawn, so that the
// manual rotation it stood for is not lost.
func (p *planner) revoke(revoked []string) (manualLost bool) {
	if len(revoked) == 0 {
		return false
	}
	activeLost := false
	for i := 0; i < len(p.keys); {
		k := p.keys[i]
		if !slices.Contains(revoked, k.KID) {
			i++
			continue
		}
		activeLost = activeLost || k.State == StateActive
		manualLost = manualLost || (k.State == StatePending && k.Manual)
		p.drop(i, ActionWithdraw, ReasonRevoked)
	}
	if activeLost && p.index(StateActive) < 0 {
		p.create(StateActive, false, ReasonRevoked)
	}
	return manualLost
}

// repair makes the set consistent: known states only, exactly one Active key, at
// most one Pending key.
func (p *planner) repair(hadKeys bool) {
	for i, k := range p.keys {
		switch k.State {
		case StatePending, StateActive, StateRetired:
		default:
			p.retire(i, ReasonBootstrap)
		}
	}

	if p.count(StateActive) > 1 {
		// Keep the most recently activated key signing; the others only verify.
		keep := -1
		for i, k := range p.keys {
			if k.State != StateActive {
				continue
			}
			if keep < 0 || newerActive(k, p.keys[keep]) {
				keep = i
			}
		}
		for i, k := range p.keys {
			if k.State == StateActive && i != keep {
				p.retire(i, ReasonBootstrap)
			}
		}
	}

	if p.index(StateActive) < 0 {
		// keys are sorted by (PublishedAt, KID): the last Pending key is the newest.
		newest := -1
		for i, k := range p.keys {
			if k.State == StatePending {
				newest = i
			}
		}
		switch {
		case newest >= 0:
			p.activateKey(newest, ReasonBootstrap)
			p.signerChanged = true
		case hadKeys:
			p.create(StateActive, false, ReasonBootstrap)
		default:
			p.create(StateActive, false, ReasonInitial)
		}
	}

	if p.count(StatePending) > 1 {
		// Keep the Pending key closest to signing: of the current profile if any,
		// then the earliest published. The others never signed.
		keep := -1
		for i, k := range p.keys {
			if k.State != StatePending {
				continue
			}
			if keep < 0 || (k.Profile == p.pol.Profile && p.keys[keep].Profile != p.pol.Profile) {
				keep = i
			}
		}
		kid := p.keys[keep].KID
		for i := 0; i < len(p.keys); {
			if k := p.keys[i]; k.State == StatePending && k.KID != kid {
				p.drop(i, ActionRemove, ReasonBootstrap)
				continue
			}
			i++
		}
	}
}

func newerActive(a, b Key) bool {
	if c := a.ActivatedAt.Compare(b.ActivatedAt); c != 0 {
		return c > 0
	}
	if c := a.PublishedAt.Compare(b.PublishedAt); c != 0 {
		return c > 0
	}
	return a.KID > b.KID
}

// replaceForeignPending removes a Pending key of another profile (it never signed)
// and publishes a Manual successor of the current profile instead. No successor is
// needed if a fresh Active key (of the current profile) was just created.
func (p *planner) replaceForeignPending() {
	i := p.index(StatePending)
	if i < 0 || p.keys[i].Profile == p.pol.Profile {
		return
	}
	p.drop(i, ActionRemove, ReasonProfileChanged)
	p.create(StatePending, true, ReasonProfileChanged)
}

// manual handles a manual rotation request: the Pending key is marked Manual, or a
// Manual Pending key is created.
func (p *planner) manual() {
	if i := p.index(StatePending); i >= 0 {
		if !p.keys[i].Manual {
			p.keys[i].Manual = true
			p.act(ActionSchedule, p.keys[i].KID, ReasonManual)
		}
		return
	}
	p.create(StatePending, true, ReasonManual)
}

// schedule gives the Active key a successor when one is due.
func (p *planner) schedule() {
	a := p.index(StateActive)
	if a < 0 {
		return
	}
	active := p.keys[a]
	pi := p.index(StatePending)
	if active.Profile != p.pol.Profile {
		switch {
		case pi < 0:
			p.create(StatePending, true, ReasonProfileChanged)
		case !p.keys[pi].Manual:
			p.keys[pi].Manual = true
			p.act(ActionSchedule, p.keys[pi].KID, ReasonProfileChanged)
		}
		return
	}
	if pi < 0 && elapsed(p.now, active.ActivatedAt, p.pol.Period-p.pol.PrePublish) {
		p.create(StatePending, false, ReasonScheduled)
	}
}

// activate hands signing over to the Pending key when it has been published for
// PrePublish and the Active key's period is over (or the rotation is manual).
func (p *planner) activate() bool {
	a, pi := p.index(StateActive), p.index(StatePending)
	if a < 0 || pi < 0 {
		return false
	}
	active, pending := p.keys[a], p.keys[pi]
	if !elapsed(p.now, pending.PublishedAt, p.pol.PrePublish) {
		return false
	}
	if !pending.Manual && !elapsed(p.now, active.ActivatedAt, p.pol.Period) {
		return false
	}
	reason := ReasonScheduled
	if pending.Manual {
		reason = ReasonManual
	}
	if active.Profile != p.pol.Profile {
		reason = ReasonProfileChanged
	}
	p.activateKey(pi, reason)
	p.retire(a, reason)
	return true
}

// removeExpired removes the Retired keys kept for Retain.
func (p *planner) removeExpired() {
	for i := 0; i < len(p.keys); {
		if k := p.keys[i]; k.State == StateRetired && elapsed(p.now, k.RetiredAt, p.pol.Retain) {
			p.drop(i, ActionRemove, ReasonRetainElapsed)
			continue
		}
		i++
	}
}

// due computes when something is next due for p.keys, and whether the Active key
// is overdue.
func (p *planner) due() (next time.Time, overdue bool) {
	consider := func(t time.Time) {
		if next.IsZero() || t.Before(next) {
			next = t
		}
	}
	a, pi := p.index(StateActive), p.index(StatePending)
	if a >= 0 {
		active := p.keys[a]
		periodEnd := active.ActivatedAt.Add(p.pol.Period)
		switch {
		case pi < 0:
			consider(active.ActivatedAt.Add(p.pol.Period - p.pol.PrePublish))
		case p.keys[pi].Manual:
			consider(p.keys[pi].PublishedAt.Add(p.pol.PrePublish))
		default:
			consider(later(p.keys[pi].PublishedAt.Add(p.pol.PrePublish), periodEnd))
		}
		overdue = pi >= 0 && !p.now.Before(periodEnd)
	}
	for _, k := range p.keys {
		if k.State == StateRetired {
			consider(k.RetiredAt.Add(p.pol.Retain))
		}
	}
	return next, overdue
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

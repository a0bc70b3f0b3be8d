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
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/keyward-dev/keyward/internal/binding"
	"github.com/keyward-dev/keyward/internal/issuer/store"
	"github.com/keyward-dev/keyward/internal/policy"
	"github.com/keyward-dev/keyward/internal/revocation"
)

// refreshRun is one refresh in flight.
type refreshRun struct {
	presented store.Hash
	resp      tokenResponse // the new pair; empty when a spent token was presented
	expires   time.Time     // the family's absolute end
	proof     *binding.Proof
	accessJKT string
	now       time.Time
}

// refreshGrant answers grant_type=refresh_token: rotation on every use, the replay
// window, reuse detection, binding, revocation and anomaly checks.
func (s *Server) refreshGrant(w http.ResponseWriter, r *http.Request, p *policyState, f form) {
	ctx := r.Context()
	rot := refreshRun{now: s.clk.Now()}
	rec := &AuditRecord{Grant: GrantRefreshToken}
	fail := func(e *oauthError) { s.reject(w, r, p, "token", e, rec) }
	if e := p.ready(); e != nil {
		fail(e)
		return
	}
	rt, e := presentedRefreshToken(r, p, f)
	if e != nil {
		fail(e)
		return
	}
	rec.Refresh = fingerprint(rt)
	if !isRefreshToken(rt) {
		fail(invalidGrant("malformed", "the refresh token is invalid"))
		return
	}
	rot.presented = store.HashToken(rt)
	fam, current, err := s.cfg.Store.Lookup(ctx, rot.presented)
	switch {
	case errors.Is(err, store.ErrNotFound):
		fail(invalidGrant("unknown", "the refresh token is invalid"))
		return
	case err != nil:
		s.log.Error(err, "Failed to look up a refresh token", "policy", p.key)
		fail(serverError("store"))
		return
	case fam.Policy != p.key:
		fail(invalidGrant("unknown", "the refresh token is invalid"))
		return
	}
	rec.Subject, rec.Session, rec.Client = fam.Subject, fam.ID, fam.ClientID
	if !fam.Live(rot.now) {
		fail(invalidGrant("expired", "the session has ended (expired, idle or revoked)"))
		return
	}
	if cid, ok := f["client_id"]; ok && cid != fam.ClientID {
		fail(invalidGrant("client_mismatch", "the refresh token was not issued to this client"))
		return
	}
	if rot.proof, rot.accessJKT, e = s.refreshBinding(r, p, fam); e != nil {
		rec.JKT = fam.JKT
		fail(e)
		return
	}
	if why := p.bundle.Revoked.Check(revocation.Token{Subject: fam.Subject, SessionID: fam.ID, ClientID: fam.ClientID, IssuedAt: fam.CreatedAt.Unix()}); why != "" {
		// A RevocationEntry (kubectl keyward revoke) reached the bundle: the family ends
		// here too, so no new access token escapes it.
		s.revokeFamily(ctx, p, fam, reasonEntryPrefix+" ("+why+")", "revocation_entry", false)
		fail(invalidGrant("revoked", "the session is revoked"))
		return
	}
	scope := fam.Scope
	if req, ok := f["scope"]; ok {
		if scope, e = checkScope(req, strings.Fields(fam.Scope)); e != nil {
			fail(e)
			return
		}
	}
	if !current {
		// A spent token: the store decides, atomically, between a replay and a reuse. It
		// can never rotate again, so nothing is signed.
		res, err := s.cfg.Store.Rotate(ctx, store.RotateRequest{
			Presented: rot.presented, Next: store.HashToken(newRefreshToken()), Now: rot.now, ReplayWindow: p.reuseInterval,
		})
		s.rotated(w, r, p, rec, res, err, &rot)
		return
	}
	rot.resp, err = s.signAccess(p, accessRequest{subject: fam.Subject, clientID: fam.ClientID, scope: scope, sid: fam.ID, jkt: rot.accessJKT}, rot.now)
	if err != nil {
		s.log.Error(err, "Failed to sign an access token", "policy", p.key)
		fail(errorAs(err))
		return
	}
	next := newRefreshToken()
	rot.resp.RefreshToken = next
	rot.expires = fam.ExpiresAt
	sealed, err := json.Marshal(sealedPair{Response: rot.resp, JKT: rot.accessJKT, Expires: fam.ExpiresAt.Unix()})
	if err != nil {
		fail(serverError("seal"))
		return
	}
	res, err := s.cfg.Store.Rotate(ctx, store.RotateRequest{
		Presented: rot.presented, Next: store.HashToken(next), Now: rot.now, ReplayWindow: p.reuseInterval,
		Replay: s.cfg.Sealer.Seal(sealed, rot.presented[:]),
	})
	s.rotated(w, r, p, rec, res, err, &rot)
}

// refreshBinding checks the DPoP proof of a refresh: a bound family needs a proof by its
// key; an unbound one may bind its access tokens when the policy uses DPoP. It returns
// the key the new access token is bound to ("" for a bearer token).
func (s *Server) refreshBinding(r *http.Request, p *policyState, fam store.Family) (*binding.Proof, string, *oauthError) {
	dpopPolicy := p.bindingMode == policy.BindingDPoP
	if fam.JKT == "" && !dpopPolicy {
		return nil, "", nil // the policy does not use DPoP: the header is ignored (RFC 9449 §5)
	}
	proof, e := s.dpop.check(r, p.endpoint(pathToken), fam.JKT)
	if e != nil {
		return nil, "", e
	}
	switch {
	case proof == nil && fam.JKT != "":
		return nil, "", invalidDPoP("missing", "this refresh token is DPoP-bound: send a DPoP proof signed by its key")
	case proof == nil && p.bindingRequired:
		return nil, "", invalidDPoP("missing", "this issuer requires DPoP-bound tokens: send a DPoP proof")
	case proof == nil || !dpopPolicy:
		return proof, "", nil
	}
	return proof, proof.JKT, nil
}

// rotated answers from the outcome of store.Rotate.
func (s *Server) rotated(w http.ResponseWriter, r *http.Request, p *policyState, rec *AuditRecord, res store.RotateResult, err error, rot *refreshRun) {
	fail := func(e *oauthError) { s.reject(w, r, p, "token", e, rec) }
	if err != nil {
		s.log.Error(err, "Failed to rotate a refresh token", "policy", p.key)
		fail(serverError("store"))
		return
	}
	switch res.Outcome {
	case store.Rotated:
		if rot.resp.AccessToken == "" { // a spent token never rotates; fail closed if it did
			fail(invalidGrant("unknown", "the refresh token is invalid"))
			return
		}
		if s.burst(r.Context(), p, res.Family, rec, rot.now) {
			fail(invalidGrant("burst", "the session was revoked: too many refreshes"))
			return
		}
		s.writeTokens(w, p, rot.resp, rot.expires, rot.proof, rot.now)
		s.metrics.Refreshed.WithLabelValues(p.key, "rotated").Inc()
		s.metrics.Issued.WithLabelValues(p.key, GrantRefreshToken).Inc()
		rec.Event, rec.Policy, rec.Access, rec.JKT = AuditRefreshed, p.key, fingerprint(rot.resp.AccessToken), rot.accessJKT
		rec.Refresh += ">" + fingerprint(rot.resp.RefreshToken)
		s.audit(r, rec)
	case store.Replayed:
		s.replayed(w, r, p, rec, res, rot)
	case store.Reused:
		s.onReuse(r, p, res.Family, rec)
		fail(invalidGrant("reuse", "the refresh token was already used; the session is revoked"))
	case store.Dead:
		fail(invalidGrant("expired", "the session has ended (expired, idle or revoked)"))
	default:
		fail(invalidGrant("unknown", "the refresh token is invalid"))
	}
}

// replayed answers a double-submit within the replay window with the pair the winning
// request got, provided it was bound to the same key.
func (s *Server) replayed(w http.ResponseWriter, r *http.Request, p *policyState, rec *AuditRecord, res store.RotateResult, rot *refreshRun) {
	fail := func(e *oauthError) { s.reject(w, r, p, "token", e, rec) }
	plain, err := s.cfg.Sealer.Open(res.Replay, rot.presented[:])
	var sp sealedPair
	if err == nil {
		err = json.Unmarshal(plain, &sp)
	}
	if err != nil || sp.Response.AccessToken == "" {
		// Every replica must share the replay keys; a record that does not open is a
		// configuration error, never a reason to hand out anything.
		s.log.Error(err, "Failed to open a replay record; check that every replica has the same --replay-key-file", "policy", p.key)
		fail(serverError("replay_unreadable"))
		return
	}
	if sp.JKT != rot.accessJKT {
		fail(invalidGrant("replay_key_mismatch", "the refresh token was just used with another DPoP key"))
		return
	}
	s.writeTokens(w, p, sp.Response, time.Unix(sp.Expires, 0), rot.proof, rot.now)
	s.metrics.Refreshed.WithLabelValues(p.key, "replayed").Inc()
	rec.Event, rec.Policy, rec.Access, rec.JKT = AuditReplayed, p.key, fingerprint(sp.Response.AccessToken), sp.JKT
	s.audit(r, rec)
}

// onReuse handles a spent refresh token presented after the replay window: the store has
// revoked the family; a RevocationEntry for its session makes every verifier drop the
// family's outstanding access tokens.
func (s *Server) onReuse(r *http.Request, p *policyState, fam store.Family, rec *AuditRecord) {
	s.metrics.Reuse.WithLabelValues(p.key).Inc()
	s.metrics.Revocations.WithLabelValues(p.key, "reuse").Inc()
	s.revoker.add(sessionEntry(p, fam.ID, ReasonReuse))
	s.event(p, corev1.EventTypeWarning, "RefreshTokenReuse", "RevokeSession",
		"A spent refresh token of session %s (client %s) was presented again; the session is revoked", fam.ID, fam.ClientID)
	s.log.Info("Revoked a session after refresh-token reuse", "policy", p.key, "sid", fam.ID, "clientID", fam.ClientID)
	reuse := *rec
	reuse.Event, reuse.Policy, reuse.Reason = AuditReuse, p.key, ReasonReuse
	s.audit(r, &reuse)
}

// burst counts a rotation per subject and per family, reports a crossing of the
// policy's limit (metric, Event, audit record) and, with autoRevoke, revokes the family
// of a rotation above the limit and returns true.
func (s *Server) burst(ctx context.Context, p *policyState, fam store.Family, rec *AuditRecord, now time.Time) bool {
	subjectCount, subjectCrossed := s.subjects.hit(p.key+"\x00"+fam.Subject, now, p.burstLimit)
	familyCount, familyCrossed := s.families.hit(fam.ID, now, p.burstLimit)
	for _, c := range []struct {
		scope   string
		crossed bool
	}{{"subject", subjectCrossed}, {"family", familyCrossed}} {
		if !c.crossed {
			continue
		}
		s.metrics.Bursts.WithLabelValues(p.key, c.scope).Inc()
		b := *rec
		b.Event, b.Policy, b.Reason = AuditBurst, p.key, "more than "+strconv.Itoa(p.burstLimit)+" refreshes a minute per "+c.scope
		s.cfg.Audit.Write(now, &b)
		s.event(p, corev1.EventTypeWarning, "RefreshBurst", "Detect",
			"More than %d refreshes in a minute for the %s of session %s", p.burstLimit, c.scope, fam.ID)
		s.log.Info("Detected a refresh burst", "policy", p.key, "scope", c.scope, "sid", fam.ID, "limit", p.burstLimit)
	}
	if !p.autoRevoke || (subjectCount <= p.burstLimit && familyCount <= p.burstLimit) {
		return false
	}
	s.revokeFamily(ctx, p, fam, ReasonBurst, "burst", true)
	return true
}

// revokeFamily revokes a family in the store and, when entry is set, creates the
// RevocationEntry for its session.
func (s *Server) revokeFamily(ctx context.Context, p *policyState, fam store.Family, reason, cause string, entry bool) {
	if _, err := s.cfg.Store.RevokeFamily(ctx, fam.ID, reason, s.clk.Now()); err != nil && !errors.Is(err, store.ErrNotFound) {
		s.log.Error(err, "Failed to revoke a session in the store", "policy", p.key, "sid", fam.ID)
	}
	s.metrics.Revocations.WithLabelValues(p.key, cause).Inc()
	if entry {
		s.revoker.add(sessionEntry(p, fam.ID, reason))
	}
	s.cfg.Audit.Write(s.clk.Now(), &AuditRecord{Event: AuditRevoked, Policy: p.key, Subject: fam.Subject, Session: fam.ID, Client: fam.ClientID, Reason: reason})
}

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

package cli

import (
	"crypto/sha256"
	"encoding/hex"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/keyward-dev/keyward/api/v1alpha1"
	"github.com/keyward-dev/keyward/internal/bundle"
)

// Revocation kinds, named after the claim they match (and the bundle's lists).
const (
	kindJTI      = "jti"
	kindSubject  = "sub"
	kindSession  = "sid"
	kindKeyID    = "kid"
	kindClientID = "client_id"
)

// kinds in display order.
var kinds = []string{kindJTI, kindSubject, kindSession, kindKeyID, kindClientID}

// target is what a RevocationEntry revokes, in the bundle's terms.
type target struct {
	Kind  string
	Value string
	// IssuedBefore is the cut-off of subject and client revocations (unix seconds):
	// spec.issuedBefore, or the entry's creation time.
	IssuedBefore int64
}

func (t target) String() string { return t.Kind + "=" + t.Value }

// targetOf is the target of an entry.
func targetOf(re *v1alpha1.RevocationEntry) target {
	s := &re.Spec
	t := target{}
	switch {
	case s.JTI != "":
		t.Kind, t.Value = kindJTI, s.JTI
	case s.Subject != "":
		t.Kind, t.Value = kindSubject, s.Subject
	case s.SessionID != "":
		t.Kind, t.Value = kindSession, s.SessionID
	case s.KeyID != "":
		t.Kind, t.Value = kindKeyID, s.KeyID
	default:
		t.Kind, t.Value = kindClientID, s.ClientID
	}
	if t.Kind == kindSubject || t.Kind == kindClientID {
		if s.IssuedBefore != nil {
			t.IssuedBefore = s.IssuedBefore.Unix()
		} else {
			t.IssuedBefore = re.CreationTimestamp.Unix()
		}
	}
	return t
}

// list is the bundle list of the target's kind.
func (t target) list(r *bundle.Revocations) []bundle.Revoked {
	switch t.Kind {
	case kindJTI:
		return r.JTI
	case kindSubject:
		return r.Subject
	case kindSession:
		return r.Session
	case kindKeyID:
		return r.KeyID
	default:
		return r.ClientID
	}
}

// heldBy reports whether a bundle enforces the target: its value is in the list of its
// kind with a cut-off at least as wide (the operator merges duplicates to the widest), and
// for a key, the key is no longer in the bundle's JWKS.
func (t target) heldBy(b *bundle.Bundle) bool {
	found := false
	for _, e := range t.list(&b.Content.Revocations) {
		if e.Value != t.Value {
			continue
		}
		if t.IssuedBefore == 0 || e.IssuedBefore == 0 || e.IssuedBefore >= t.IssuedBefore {
			found = true
			break
		}
	}
	if !found {
		return false
	}
	return t.Kind != kindKeyID || !slices.Contains(bundleKIDs(b), t.Value)
}

// inScope reports whether an entry applies to the named policy (as the operator decides).
func inScope(re *v1alpha1.RevocationEntry, policy string) bool {
	return len(re.Spec.Policies) == 0 || slices.Contains(re.Spec.Policies, policy)
}

// entryName is the deterministic name of an entry for a target whose identity is fixed:
// the kind, a hash of the value, the cut-off and the scope. The same command run twice
// (a retry after a timeout) names the same entry instead of creating a duplicate.
func entryName(t target, policies []string) string {
	h := sha256.New()
	h.Write([]byte(t.Kind + "\x00" + t.Value + "\x00" + strconv.FormatInt(t.IssuedBefore, 10)))
	p := slices.Clone(policies)
	slices.Sort(p)
	h.Write([]byte("\x00" + strings.Join(p, ",")))
	return namePrefix(t.Kind) + "-" + hex.EncodeToString(h.Sum(nil))[:16]
}

// namePrefix is the readable prefix of entry names: jti, sub, sid, kid, client.
func namePrefix(kind string) string {
	if kind == kindClientID {
		return "client"
	}
	return kind
}

// expiresOf is when the entry stops applying (status.expiresAt), zero when unknown.
func expiresOf(re *v1alpha1.RevocationEntry) time.Time {
	if re.Status.ExpiresAt == nil {
		return time.Time{}
	}
	return re.Status.ExpiresAt.Time
}

// processed reports whether the RevocationEntry controller has handled the entry.
func processed(re *v1alpha1.RevocationEntry) bool {
	return re.Status.ExpiresAt != nil && re.Status.ObservedGeneration == re.Generation
}

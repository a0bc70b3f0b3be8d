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

package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// RevocationEntrySpec names the tokens that must stop working. Exactly one target is set.
// The spec is immutable: a revocation is a record; delete it and create another to change it.
// +kubebuilder:validation:XValidation:rule="[has(self.jti), has(self.subject), has(self.sessionID), has(self.keyID), has(self.clientID)].filter(x, x).size() == 1",message="exactly one of jti, subject, sessionID, keyID or clientID must be set"
// +kubebuilder:validation:XValidation:rule="!has(self.issuedBefore) || has(self.subject) || has(self.clientID)",message="issuedBefore applies only to subject and clientID revocations"
type RevocationEntrySpec struct {
	// JTI revokes the one token with this `jti`.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=256
	// +optional
	JTI string `json:"jti,omitempty"`

	// Subject revokes every token of this `sub` issued before issuedBefore.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=256
	// +optional
	Subject string `json:"subject,omitempty"`

	// SessionID revokes a session (`sid`): every access token of the refresh-token family,
	// and the family itself at the token service.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=256
	// +optional
	SessionID string `json:"sessionID,omitempty"`

	// KeyID revokes a signing key (`kid`): tokens it signed stop verifying, and the
	// SigningKey that owns it withdraws it at once (an emergency rotation when it was active).
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=128
	// +optional
	KeyID string `json:"keyID,omitempty"`

	// ClientID revokes every token of this OAuth client (`client_id`) issued before issuedBefore.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=256
	// +optional
	ClientID string `json:"clientID,omitempty"`

	// IssuedBefore bounds subject and clientID revocations: tokens whose `iat` is before it
	// are revoked, later logins work. Default: the entry's creation time.
	// +optional
	IssuedBefore *metav1.Time `json:"issuedBefore,omitempty"`

	// Reason is recorded in the audit trail and shown by kubectl.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=256
	// +required
	Reason string `json:"reason"`

	// Policies limits the revocation to these TokenPolicies of the namespace. Empty: every
	// TokenPolicy in the namespace.
	// +kubebuilder:validation:MaxItems=16
	// +kubebuilder:validation:items:MinLength=1
	// +kubebuilder:validation:items:MaxLength=253
	// +listType=set
	// +optional
	Policies []string `json:"policies,omitempty"`
}

// RevocationEntryStatus is the observed state of a RevocationEntry.
type RevocationEntryStatus struct {
	// ObservedGeneration is the generation the status describes.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// Conditions: Ready.
	// +listType=map
	// +listMapKey=type
	// +optional
	Conditions []metav1.Condition `json:"conditions,omitempty"`

	// Target is a one-line summary, e.g. "sub=alice".
	// +optional
	Target string `json:"target,omitempty"`

	// ExpiresAt is when every token the entry could match has expired; the entry is
	// deleted then. Computed from the longest token lifetime of the policies in scope.
	// +optional
	ExpiresAt *metav1.Time `json:"expiresAt,omitempty"`

	// Policies in scope when the entry was last reconciled.
	// +listType=set
	// +optional
	Policies []string `json:"policies,omitempty"`
}

// RevocationEntry makes tokens stop working before they expire. It removes itself once
// every token it could match has expired, so the revocation list stays bounded by token
// lifetimes, not by history.
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=rev;revs,categories=keyward
// +kubebuilder:selectablefield:JSONPath=`.spec.keyID`
// +kubebuilder:printcolumn:name="Target",type=string,JSONPath=`.status.target`
// +kubebuilder:printcolumn:name="Reason",type=string,JSONPath=`.spec.reason`,priority=1
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Expires",type=string,JSONPath=`.status.expiresAt`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type RevocationEntry struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// +required
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="a RevocationEntry's spec is immutable; create a new entry instead"
	Spec RevocationEntrySpec `json:"spec"`
	// +optional
	Status RevocationEntryStatus `json:"status,omitempty"`
}

// RevocationEntryList is a list of RevocationEntries.
// +kubebuilder:object:root=true
type RevocationEntryList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []RevocationEntry `json:"items"`
}

func init() {
	SchemeBuilder.Register(&RevocationEntry{}, &RevocationEntryList{})
}

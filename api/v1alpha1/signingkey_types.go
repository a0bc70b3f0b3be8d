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

// SigningKeySpec declares a rotating set of signing keys.
// +kubebuilder:validation:XValidation:rule="self.algorithm in ['RS256', 'PS256'] || !has(self.rsaBits)",message="rsaBits applies to RS256 and PS256 only"
type SigningKeySpec struct {
	// Algorithm every key of this set signs with. Changing it rotates to a key of the new
	// algorithm with the usual pre-publication.
	// +kubebuilder:default=ES256
	// +optional
	Algorithm Algorithm `json:"algorithm,omitempty"`

	// RSABits is the modulus size for RS256 and PS256 (default 2048).
	// +kubebuilder:validation:Enum=2048;3072;4096
	// +optional
	RSABits int32 `json:"rsaBits,omitempty"`

	// Rotation sets how long a key signs, how early its successor is published and how
	// long it stays published after it stops signing.
	// +kubebuilder:default={period: "720h", prePublish: "15m", retain: "24h"}
	// +optional
	Rotation RotationSpec `json:"rotation,omitzero"`

	// RotationRequest starts a manual rotation whenever it changes to a new non-empty value
	// (`kubectl keyward rotate` writes a timestamp): a new key is published at once and
	// signs after rotation.prePublish, so no verifier is surprised by it.
	// +kubebuilder:validation:MaxLength=64
	// +optional
	RotationRequest string `json:"rotationRequest,omitempty"`

	// EmergencyRotationRequest starts an emergency rotation whenever it changes to a new
	// non-empty value: every current key is presumed leaked and withdrawn from the JWKS at
	// once, and a fresh key signs immediately. Tokens signed by the old keys stop verifying.
	// To withdraw a single key, create a RevocationEntry with its keyID instead.
	// +kubebuilder:validation:MaxLength=64
	// +optional
	EmergencyRotationRequest string `json:"emergencyRotationRequest,omitempty"`
}

// RotationSpec is the rotation schedule of a SigningKey.
// +kubebuilder:validation:XValidation:rule="duration(self.prePublish) < duration(self.period)",message="rotation.prePublish must be shorter than rotation.period: a key is published, then signs, then its successor is published"
// +kubebuilder:validation:XValidation:rule="duration(self.period) >= duration('1m')",message="rotation.period must be at least 1m"
// +kubebuilder:validation:XValidation:rule="duration(self.prePublish) >= duration('1s')",message="rotation.prePublish must be at least 1s: verifiers need time to fetch a new key before it signs"
// +kubebuilder:validation:XValidation:rule="duration(self.retain) >= duration('1m')",message="rotation.retain must be at least 1m: tokens signed by a retired key must keep verifying until they expire"
type RotationSpec struct {
	// Period is how long a key signs before its successor takes over.
	// +kubebuilder:default="720h"
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:MaxLength=32
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ns|us|ms|s|m|h))+$`
	// +optional
	Period metav1.Duration `json:"period,omitzero"`

	// PrePublish is how long a new key is in the JWKS before it signs, so every verifier
	// already holds it. Keep it above the slowest verifier refresh (about 90s for mounted
	// ConfigMaps).
	// +kubebuilder:default="15m"
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:MaxLength=32
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ns|us|ms|s|m|h))+$`
	// +optional
	PrePublish metav1.Duration `json:"prePublish,omitzero"`

	// Retain is how long a retired key stays in the JWKS so tokens it signed still verify.
	// It must exceed the longest access-token TTL of the policies that trust this key; the
	// TokenPolicy reports a condition when it does not.
	// +kubebuilder:default="24h"
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:MaxLength=32
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ns|us|ms|s|m|h))+$`
	// +optional
	Retain metav1.Duration `json:"retain,omitzero"`
}

// KeyState is where a key is in its lifecycle.
// +kubebuilder:validation:Enum=Pending;Active;Retired
type KeyState string

// The key states.
const (
	KeyPending KeyState = "Pending"
	KeyActive  KeyState = "Active"
	KeyRetired KeyState = "Retired"
)

// KeyStatus is one published key.
type KeyStatus struct {
	// KeyID is the RFC 7638 JWK thumbprint (SHA-256) of the public key.
	// +required
	KeyID string `json:"kid"`
	// Algorithm the key signs with.
	// +required
	Algorithm Algorithm `json:"algorithm"`
	// State of the key.
	// +required
	State KeyState `json:"state"`
	// PublishedAt is when the key entered the JWKS.
	// +required
	PublishedAt metav1.Time `json:"publishedAt"`
	// ActivatedAt is when the key started signing.
	// +optional
	ActivatedAt *metav1.Time `json:"activatedAt,omitempty"`
	// RetiredAt is when the key stopped signing.
	// +optional
	RetiredAt *metav1.Time `json:"retiredAt,omitempty"`
}

// SigningKeyStatus is the observed state of a SigningKey.
type SigningKeyStatus struct {
	// ObservedGeneration is the generation the status describes.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// Conditions: Ready.
	// +listType=map
	// +listMapKey=type
	// +optional
	Conditions []metav1.Condition `json:"conditions,omitempty"`

	// ActiveKeyID is the kid of the key that signs now.
	// +optional
	ActiveKeyID string `json:"activeKeyID,omitempty"`

	// Keys lists every published key with its state and times.
	// +listType=atomic
	// +optional
	Keys []KeyStatus `json:"keys,omitempty"`

	// NextRotationTime is when the active key is due to hand over to its successor.
	// +optional
	NextRotationTime *metav1.Time `json:"nextRotationTime,omitempty"`

	// NextActionTime is the next moment the controller will act (publish, activate, remove).
	// +optional
	NextActionTime *metav1.Time `json:"nextActionTime,omitempty"`

	// LastRotationTime is when a key last became active.
	// +optional
	LastRotationTime *metav1.Time `json:"lastRotationTime,omitempty"`

	// SecretName is the Secret holding the private JWK set.
	// +optional
	SecretName string `json:"secretName,omitempty"`

	// JWKSConfigMapName is the ConfigMap holding the public JWKS.
	// +optional
	JWKSConfigMapName string `json:"jwksConfigMapName,omitempty"`

	// RotationRequest is the last spec.rotationRequest handled.
	// +optional
	RotationRequest string `json:"rotationRequest,omitempty"`

	// EmergencyRotationRequest is the last spec.emergencyRotationRequest handled.
	// +optional
	EmergencyRotationRequest string `json:"emergencyRotationRequest,omitempty"`
}

// SigningKey is a rotating set of JWT signing keys. Private keys live only in the Secret
// named in status.secretName; the public JWKS is in the ConfigMap status.jwksConfigMapName.
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=sk;sks,categories=keyward
// +kubebuilder:validation:XValidation:rule="size(self.metadata.name) <= 248",message="a SigningKey name must be at most 248 characters, so that <name>-keys and <name>-jwks are valid names"
// +kubebuilder:printcolumn:name="Algorithm",type=string,JSONPath=`.spec.algorithm`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Active KID",type=string,JSONPath=`.status.activeKeyID`
// +kubebuilder:printcolumn:name="Next Rotation",type=string,JSONPath=`.status.nextRotationTime`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type SigningKey struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// +kubebuilder:default={algorithm: ES256}
	// +optional
	Spec SigningKeySpec `json:"spec,omitzero"`
	// +optional
	Status SigningKeyStatus `json:"status,omitempty"`
}

// SigningKeyList is a list of SigningKeys.
// +kubebuilder:object:root=true
type SigningKeyList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []SigningKey `json:"items"`
}

func init() {
	SchemeBuilder.Register(&SigningKey{}, &SigningKeyList{})
}

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

// Algorithm is a JWS signature algorithm Keyward can manage keys for.
// +kubebuilder:validation:Enum=ES256;ES384;EdDSA;RS256;PS256
type Algorithm string

// The supported algorithms. HMAC (HS*) and "none" are deliberately absent: a verifier
// that holds a shared secret can mint tokens.
const (
	ES256 Algorithm = "ES256"
	ES384 Algorithm = "ES384"
	EdDSA Algorithm = "EdDSA"
	RS256 Algorithm = "RS256"
	PS256 Algorithm = "PS256"
)

// IsRSA reports whether the algorithm uses an RSA key.
func (a Algorithm) IsRSA() bool { return a == RS256 || a == PS256 }

// Condition types and reasons shared by the Keyward resources.
const (
	// ConditionReady is True when the resource's outputs are complete and current.
	ConditionReady = "Ready"

	ReasonReconciled      = "Reconciled"
	ReasonReconcileFailed = "ReconcileFailed"
	ReasonInvalidSpec     = "InvalidSpec"
)

// Labels and annotations Keyward puts on what it generates.
const (
	// LabelManagedBy marks every object Keyward generates; the manager caches only these.
	LabelManagedBy = "app.kubernetes.io/managed-by"
	// ManagedByValue is the value of LabelManagedBy.
	ManagedByValue = "keyward"
	// LabelSigningKey names the SigningKey a Secret or JWKS ConfigMap belongs to.
	LabelSigningKey = "auth.keyward.dev/signing-key"
	// LabelTokenPolicy names the TokenPolicy a bundle ConfigMap belongs to.
	LabelTokenPolicy = "auth.keyward.dev/token-policy"
	// LabelComponent tells what a generated object holds: keys, jwks or bundle.
	LabelComponent = "app.kubernetes.io/component"
)

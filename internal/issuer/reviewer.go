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
	"errors"
	"fmt"
	"slices"
	"strings"

	authenticationv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/kubernetes"
)

// ServiceAccount is an authenticated Kubernetes ServiceAccount.
type ServiceAccount struct {
	Namespace, Name string
}

// Username is the Kubernetes user name: system:serviceaccount:<ns>:<name>.
func (sa ServiceAccount) Username() string { return saPrefix + sa.Namespace + ":" + sa.Name }

// String is "<ns>/<name>", the form TokenPolicies list.
func (sa ServiceAccount) String() string { return sa.Namespace + "/" + sa.Name }

const saPrefix = "system:serviceaccount:"

// Reviewer authenticates a ServiceAccount token for an audience.
type Reviewer interface {
	Review(ctx context.Context, token, audience string) (ServiceAccount, error)
}

// errNotAuthenticated is a token the API server did not accept (never a transport error).
var errNotAuthenticated = errors.New("the token was not authenticated")

// TokenReviewer checks tokens with the TokenReview API of the real API server.
type TokenReviewer struct {
	Client kubernetes.Interface
}

// Review returns the ServiceAccount of a token the API server authenticated for
// audience. A token of any other kind of user is refused.
func (r *TokenReviewer) Review(ctx context.Context, token, audience string) (ServiceAccount, error) {
	if token == "" || len(token) > maxTokenLen {
		return ServiceAccount{}, errNotAuthenticated
	}
	tr := &authenticationv1.TokenReview{Spec: authenticationv1.TokenReviewSpec{Token: token}}
	if audience != "" {
		tr.Spec.Audiences = []string{audience}
	}
	res, err := r.Client.AuthenticationV1().TokenReviews().Create(ctx, tr, metav1.CreateOptions{})
	if err != nil {
		return ServiceAccount{}, fmt.Errorf("TokenReview: %w", err)
	}
	st := res.Status
	if !st.Authenticated {
		return ServiceAccount{}, errNotAuthenticated
	}
	if audience != "" && !slices.Contains(st.Audiences, audience) {
		return ServiceAccount{}, errNotAuthenticated
	}
	sa, ok := parseServiceAccount(st.User.Username)
	if !ok {
		return ServiceAccount{}, errNotAuthenticated
	}
	return sa, nil
}

// parseServiceAccount parses system:serviceaccount:<ns>:<name>, both parts valid names.
func parseServiceAccount(username string) (ServiceAccount, bool) {
	rest, ok := strings.CutPrefix(username, saPrefix)
	if !ok {
		return ServiceAccount{}, false
	}
	ns, name, ok := strings.Cut(rest, ":")
	if !ok || len(validation.IsDNS1123Label(ns)) > 0 || len(validation.IsDNS1123Subdomain(name)) > 0 {
		return ServiceAccount{}, false
	}
	return ServiceAccount{Namespace: ns, Name: name}, true
}

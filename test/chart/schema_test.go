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

package chart_test

import (
	"strings"
	"testing"
)

// TestValuesRejected renders invalid values and checks that helm refuses them, naming the
// offending value: the schema (values.schema.json) for types, enums, patterns and unknown
// keys, the templates for rules across values.
func TestValuesRejected(t *testing.T) {
	helmBin(t)
	for _, c := range []struct {
		name   string
		set    []string
		values string
		want   []string // substrings of helm's error output
	}{
		{
			name: "unknown top-level key",
			set:  []string{"webhooks.enabled=false"},
			want: []string{"at ''", "additional properties 'webhooks' not allowed"},
		},
		{
			name: "unknown nested key",
			set:  []string{"manager.replica=3"},
			want: []string{"at '/manager'", "additional properties 'replica' not allowed"},
		},
		{
			name: "failure policy enum",
			set:  []string{"webhook.failurePolicy=Maybe"},
			want: []string{"at '/webhook/failurePolicy'", "value must be one of 'Fail', 'Ignore'"},
		},
		{
			name: "pull policy enum",
			set:  []string{"image.pullPolicy=Sometimes"},
			want: []string{"at '/image/pullPolicy'", "value must be one of"},
		},
		{
			name: "no replicas",
			set:  []string{"manager.replicas=0"},
			want: []string{"at '/manager/replicas'", "minimum: got 0, want 1"},
		},
		{
			name: "replicas type",
			set:  []string{"manager.replicas=two"},
			want: []string{"at '/manager/replicas'", "got string, want integer"},
		},
		{
			name: "webhook timeout above the API maximum",
			set:  []string{"webhook.timeoutSeconds=60"},
			want: []string{"at '/webhook/timeoutSeconds'", "maximum: got 60, want 30"},
		},
		{
			name: "privileged webhook port",
			set:  []string{"webhook.port=443"},
			want: []string{"at '/webhook/port'", "minimum"},
		},
		{
			name: "memory quantity",
			set:  []string{"manager.resources.limits.memory=lots"},
			want: []string{"at '/manager/resources/limits/memory'", "'lots' does not match pattern"},
		},
		{
			name:   "memory as a number",
			values: "manager:\n  resources:\n    limits:\n      memory: 268435456\n",
			want:   []string{"at '/manager/resources/limits/memory'", "want string"},
		},
		{
			name: "sidecar CPU limit",
			set:  []string{"verifier.resources.limits.cpu=1"},
			want: []string{"at '/verifier/resources/limits'", "additional properties 'cpu' not allowed"},
		},
		{
			name: "sidecar without a memory limit",
			set:  []string{"verifier.resources.limits.memory=null"},
			want: []string{"at '/verifier/resources/limits'", "missing property 'memory'"},
		},
		{
			name: "GOMEMLIMIT override",
			set:  []string{"manager.goMemLimit=90%"},
			want: []string{"at '/manager/goMemLimit'", "does not match pattern"},
		},
		{
			name: "image digest",
			set:  []string{"image.digest=sha256:abc"},
			want: []string{"at '/image/digest'", "does not match pattern"},
		},
		{
			name: "extra args are flags",
			set:  []string{"manager.extraArgs={leader-elect}"},
			want: []string{"at '/manager/extraArgs/0'", "does not match pattern '^--[a-z]'"},
		},
		{
			name: "log level",
			set:  []string{"manager.logLevel=verbose"},
			want: []string{"at '/manager/logLevel'", "value must be one of 'debug', 'info', 'error', 'panic'"},
		},
		{
			name:   "selector operator",
			values: "webhook:\n  objectSelector:\n    matchExpressions:\n    - key: app\n      operator: Equals\n",
			want:   []string{"at '/webhook/objectSelector/matchExpressions/0/operator'", "value must be one of 'In', 'NotIn', 'Exists', 'DoesNotExist'"},
		},
		{
			name: "issuer kind without a name",
			set:  []string{"webhook.certManager.enabled=true", "webhook.certManager.issuerRef.kind=ClusterIssuer"},
			want: []string{"at '/webhook/certManager/issuerRef'", "properties 'name' required, if 'kind' exists"},
		},
		{
			name: "certificate duration",
			set:  []string{"webhook.certManager.duration=90d"},
			want: []string{"at '/webhook/certManager/duration'", "does not match pattern"},
		},
		{
			name: "scrape interval is a duration",
			set:  []string{"monitoring.serviceMonitor.interval=30"},
			want: []string{"at '/monitoring/serviceMonitor/interval'", "got number, want string"},
		},
		{
			name: "alert severity",
			set:  []string{"monitoring.prometheusRule.rotationOverdue.severity=page"},
			want: []string{"at '/monitoring/prometheusRule/rotationOverdue/severity'", "value must be one of 'critical', 'warning', 'info'"},
		},
		{
			name: "security context typo",
			set:  []string{"manager.securityContext.readOnlyRootFileSystem=true"},
			want: []string{"at '/manager/securityContext'", "additional properties 'readOnlyRootFileSystem' not allowed"},
		},
		// Rules across values, checked by the templates.
		{
			name: "replicas without leader election",
			set:  []string{"manager.leaderElection.enabled=false"},
			want: []string{"manager.replicas > 1 needs manager.leaderElection.enabled"},
		},
		{
			name: "existing service account without a name",
			set:  []string{"serviceAccount.create=false"},
			want: []string{"serviceAccount.name is required when serviceAccount.create is false"},
		},
		{
			name: "stale window within the grace period",
			set: []string{"monitoring.prometheusRule.enabled=true",
				"monitoring.prometheusRule.rotationOverdue.staleSeconds=600"},
			want: []string{"staleSeconds must be greater than graceSeconds"},
		},
		{
			name: "webhook port taken by metrics",
			set:  []string{"webhook.port=8080"},
			want: []string{"webhook.port 8080 is taken"},
		},
	} {
		t.Run(c.name, func(t *testing.T) {
			stderr := renderError(t, renderArgs{set: c.set, values: c.values})
			for _, w := range c.want {
				if !strings.Contains(stderr, w) {
					t.Errorf("helm's error does not say %q:\n%s", w, stderr)
				}
			}
		})
	}
}

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

package main

import (
	"testing"
	"time"
)

func TestStatCPU(t *testing.T) {
	// A process name with spaces and parentheses; utime 1500, stime 250, cutime 40, cstime 2.
	line := "4242 (post (gres) x) S 1 4242 4242 0 -1 4194560 100 0 0 0 1500 250 40 2 20 0 1 0 100 0 0"
	if got := statCPU(line); got != 1750 {
		t.Fatalf("statCPU = %d, want 1750", got)
	}
	if got := statChildrenCPU(line); got != 42 {
		t.Fatalf("statChildrenCPU = %d, want 42", got)
	}
	if statCPU("garbage") != -1 || statChildrenCPU("1 (x) S") != -1 {
		t.Fatal("malformed lines must give -1")
	}
}

func TestRetryable(t *testing.T) {
	for _, tc := range []struct {
		r    refusal
		want bool
	}{
		{refusal{status: 500, code: "server_error"}, true},
		{refusal{status: 503}, true},
		{refusal{status: 400, code: "invalid_request"}, true}, // Hydra: "Please retry the request"
		{refusal{status: 400, code: "invalid_grant"}, false},
		{refusal{status: 401, code: "invalid_client"}, false},
		{refusal{status: 404}, false},
	} {
		if got := tc.r.retryable(); got != tc.want {
			t.Errorf("%+v: retryable = %t", tc.r, got)
		}
	}
}

func TestPercentile(t *testing.T) {
	var d []time.Duration
	for i := 1; i <= 100; i++ {
		d = append(d, time.Duration(i)*time.Millisecond)
	}
	if p := percentile(d, 0.5); p != 50*time.Millisecond {
		t.Fatalf("p50 = %s", p)
	}
	if p := percentile(d, 0.99); p != 99*time.Millisecond {
		t.Fatalf("p99 = %s", p)
	}
	if percentile(nil, 0.5) != 0 {
		t.Fatal("empty")
	}
}

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
	"sync"
	"time"
)

// DefaultMaxRefreshesPerMinute is the burst threshold when the policy sets none.
const DefaultMaxRefreshesPerMinute = 30

// windowSeconds is the sliding window of the burst detector.
const windowSeconds = 60

// detector counts refreshes per key (a subject or a family) in a sliding minute, with a
// one-second resolution: 60 counters per key, so memory stays constant however fast a
// key refreshes. Counts are per replica.
type detector struct {
	mu        sync.Mutex
	windows   map[string]*window
	lastSweep int64
}

type window struct {
	counts [windowSeconds]uint32
	last   int64 // unix second of the latest hit
	burst  bool  // above the limit since the last crossing (reported once per crossing)
}

func newDetector() *detector { return &detector{windows: map[string]*window{}} }

// hit records one refresh of key at now and returns the count in the last minute and
// whether this hit crossed max (true once per burst: the count must fall back to max or
// below before another crossing is reported).
func (d *detector) hit(key string, now time.Time, limit int) (count int, crossed bool) {
	sec := now.Unix()
	d.mu.Lock()
	defer d.mu.Unlock()
	if sec-d.lastSweep >= windowSeconds {
		for k, w := range d.windows {
			if sec-w.last >= windowSeconds {
				delete(d.windows, k)
			}
		}
		d.lastSweep = sec
	}
	w := d.windows[key]
	if w == nil {
		w = &window{last: sec}
		d.windows[key] = w
	}
	w.advance(sec)
	cur := max(sec, w.last)
	w.counts[int(cur%windowSeconds+windowSeconds)%windowSeconds]++
	for _, c := range w.counts {
		count += int(c)
	}
	switch {
	case count > limit && !w.burst:
		w.burst, crossed = true, true
	case count <= limit:
		w.burst = false
	}
	return count, crossed
}

// advance zeroes the buckets of the seconds between the last hit and sec.
func (w *window) advance(sec int64) {
	if sec <= w.last {
		return // same second, or a clock step backwards: count into the current bucket
	}
	gap := sec - w.last
	if gap >= windowSeconds {
		w.counts = [windowSeconds]uint32{}
	} else {
		for s := w.last + 1; s <= sec; s++ {
			w.counts[int(s%windowSeconds+windowSeconds)%windowSeconds] = 0
		}
	}
	w.last = sec
}

// size is the number of keys tracked (tests).
func (d *detector) size() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.windows)
}

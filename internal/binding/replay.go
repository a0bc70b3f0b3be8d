package binding

import (
	"container/heap"
	"crypto/sha256"
	"sync"
)

// replayKey identifies a proof in the replay cache: a SHA-256 prefix of
// jkt and jti, so that an entry has a fixed size however long the jti is
// (RFC 9449 section 11.1).
type replayKey [16]byte

func newReplayKey(jkt, jti string) replayKey {
	h := sha256.New()
	h.Write([]byte(jkt))
	h.Write([]byte{0})
	h.Write([]byte(jti))
	var sum [sha256.Size]byte
	var k replayKey
	copy(k[:], h.Sum(sum[:0]))
	return k
}

// replayCache remembers the proofs accepted within the iat window, bounded
// to max entries.
//
// Each entry lives until exp, the last instant at which its proof could
// still pass the iat check (iat + MaxAge + Leeway); expired entries are
// dropped first. When the cache is full of live entries the one that
// expires first is evicted and the watermark is raised to its expiry: from
// then on a proof expiring at or before the watermark is refused as a
// possible replay, because the cache can no longer prove it was not seen.
// Under a flood the acceptance window therefore shrinks to what the cache
// can remember instead of opening a replay hole; proofs issued at the
// current time keep passing unless the whole cache turns over within one
// proof's lifetime.
type replayCache struct {
	mu        sync.Mutex
	max       int
	entries   map[replayKey]*replayEntry
	byExp     expHeap
	watermark int64 // unix nanoseconds
}

type replayEntry struct {
	key   replayKey
	exp   int64 // unix nanoseconds
	index int   // position in byExp
}

func newReplayCache(max int) *replayCache {
	return &replayCache{max: max, entries: map[replayKey]*replayEntry{}}
}

// check records key with expiry exp at time now and reports whether the
// proof is fresh. overflow is true when the proof was refused because of
// the watermark rather than because it was seen.
func (c *replayCache) check(key replayKey, exp, now int64) (fresh, overflow bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for len(c.byExp) > 0 && c.byExp[0].exp < now {
		e := heap.Pop(&c.byExp).(*replayEntry)
		delete(c.entries, e.key)
	}
	if exp <= c.watermark {
		return false, true
	}
	if _, seen := c.entries[key]; seen {
		return false, false
	}
	e := &replayEntry{key: key, exp: exp}
	c.entries[key] = e
	heap.Push(&c.byExp, e)
	for len(c.byExp) > c.max {
		old := heap.Pop(&c.byExp).(*replayEntry)
		delete(c.entries, old.key)
		if old.exp > c.watermark {
			c.watermark = old.exp
		}
	}
	return true, false
}

// len returns the number of remembered proofs.
func (c *replayCache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.entries)
}

// expHeap is a min-heap of entries by expiry.
type expHeap []*replayEntry

func (h expHeap) Len() int           { return len(h) }
func (h expHeap) Less(i, j int) bool { return h[i].exp < h[j].exp }
func (h expHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].index = i
	h[j].index = j
}
func (h *expHeap) Push(x any) {
	e := x.(*replayEntry)
	e.index = len(*h)
	*h = append(*h, e)
}
func (h *expHeap) Pop() any {
	old := *h
	n := len(old)
	e := old[n-1]
	old[n-1] = nil
	*h = old[:n-1]
	return e
}

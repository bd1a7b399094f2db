package api

import (
	"sync"
	"time"

	"github.com/adaptflow/adaptflow/store"
)

// DefaultKeyCacheTTL is how long a server trusts a key record it read.
const DefaultKeyCacheTTL = time.Second

// maxCachedKeys bounds the cache; only keys that exist are cached, so it is
// reached only by a store with that many keys in use at once.
const maxCachedKeys = 4096

// keyCache keeps the key records requests authenticated with, by secret
// hash, so that a request needs no store read to authenticate. Only keys
// found are kept, never a miss, so a key created anywhere works at once.
// Revoking or rotating a key through this server clears the cache at once;
// a change made elsewhere (another replica, `adaptflow keys revoke`) takes
// effect here within the TTL. Expiry is checked on every request.
type keyCache struct {
	ttl time.Duration
	mu  sync.Mutex
	m   map[string]cachedKey
}

type cachedKey struct {
	key   store.APIKey
	until time.Time
}

func newKeyCache(ttl time.Duration) *keyCache {
	if ttl < 0 {
		return nil
	}
	if ttl == 0 {
		ttl = DefaultKeyCacheTTL
	}
	return &keyCache{ttl: ttl, m: map[string]cachedKey{}}
}

func (c *keyCache) get(hash string, now time.Time) (store.APIKey, bool) {
	if c == nil {
		return store.APIKey{}, false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.m[hash]
	if !ok || now.After(e.until) {
		return store.APIKey{}, false
	}
	return e.key, true
}

func (c *keyCache) put(hash string, k store.APIKey, now time.Time) {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.m) >= maxCachedKeys {
		for h, e := range c.m {
			if now.After(e.until) {
				delete(c.m, h)
			}
		}
		if len(c.m) >= maxCachedKeys {
			clear(c.m)
		}
	}
	c.m[hash] = cachedKey{key: k, until: now.Add(c.ttl)}
}

func (c *keyCache) clear() {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	clear(c.m)
}

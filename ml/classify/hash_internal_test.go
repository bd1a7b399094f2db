package classify

import (
	"hash/fnv"
	"testing"
)

// The hashing is FNV-1a: stored hash embeddings stay comparable with new
// ones only while it is.
func TestHashIsFNV1a(t *testing.T) {
	for _, s := range []string{"", "top up", "<card>", "überweisung", "日本語テキスト"} {
		h := fnv.New32a()
		h.Write([]byte{'c'})
		h.Write([]byte(s))
		want := h.Sum32() & (1<<featureBits - 1)
		if got := hashOf('c', s); got != want {
			t.Errorf("hashOf(%q) = %d, want %d", s, got, want)
		}
		if got := hashRunes('c', []rune(s)); got != want {
			t.Errorf("hashRunes(%q) = %d, want %d", s, got, want)
		}
	}
}

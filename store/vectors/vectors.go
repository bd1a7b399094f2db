// Package vectors holds the exact nearest-neighbour arithmetic the stores
// share: cosine distance and a bounded top-k.
package vectors

import (
	"container/heap"
	"math"
	"sort"
)

// Norm is the Euclidean norm of v.
func Norm(v []float32) float64 {
	var s float64
	for _, x := range v {
		s += float64(x) * float64(x)
	}
	return math.Sqrt(s)
}

// CosineDistance is 1 - cos(q, v), with qNorm = Norm(q) computed once by
// the caller. A zero vector is at distance 1 from everything.
func CosineDistance(q []float32, qNorm float64, v []float32) float64 {
	var dot, vv float64
	for i := range q {
		dot += float64(q[i]) * float64(v[i])
		vv += float64(v[i]) * float64(v[i])
	}
	if qNorm == 0 || vv == 0 {
		return 1
	}
	return 1 - dot/(qNorm*math.Sqrt(vv))
}

// TopK keeps the k items of smallest distance seen so far.
type TopK[T any] struct {
	k int
	h maxHeap[T]
}

// NewTopK keeps k items.
func NewTopK[T any](k int) *TopK[T] { return &TopK[T]{k: max(k, 0)} }

// Wants reports whether an item at distance d would be kept.
func (t *TopK[T]) Wants(d float64) bool {
	return t.k > 0 && (len(t.h) < t.k || d < t.h[0].d)
}

// Push offers an item.
func (t *TopK[T]) Push(item T, d float64) {
	if !t.Wants(d) {
		return
	}
	if len(t.h) == t.k {
		heap.Pop(&t.h)
	}
	heap.Push(&t.h, entry[T]{item: item, d: d})
}

// Sorted returns the kept items, nearest first, with their distances.
func (t *TopK[T]) Sorted() ([]T, []float64) {
	es := append([]entry[T](nil), t.h...)
	sort.SliceStable(es, func(i, j int) bool { return es[i].d < es[j].d })
	items := make([]T, len(es))
	ds := make([]float64, len(es))
	for i, e := range es {
		items[i], ds[i] = e.item, e.d
	}
	return items, ds
}

type entry[T any] struct {
	item T
	d    float64
}

type maxHeap[T any] []entry[T]

func (h maxHeap[T]) Len() int           { return len(h) }
func (h maxHeap[T]) Less(i, j int) bool { return h[i].d > h[j].d }
func (h maxHeap[T]) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *maxHeap[T]) Push(x any)        { *h = append(*h, x.(entry[T])) }
func (h *maxHeap[T]) Pop() any {
	old := *h
	e := old[len(old)-1]
	*h = old[:len(old)-1]
	return e
}

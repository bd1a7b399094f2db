package classify

import "math"

// HashDim is the dimension of the embedded hashing embedding.
const HashDim = 256

// HashEmbedding embeds text without a model: its hashed n-gram features
// folded into dim signed buckets and L2-normalized. Texts sharing words and
// phrases land near each other; it serves few-shot retrieval and "similar
// cases" when no embeddings endpoint is configured.
func HashEmbedding(text string, dim int) []float32 {
	v := make([]float32, dim)
	for idx, c := range rawCounts(text) {
		sign := float32(1)
		if idx&(1<<(featureBits-1)) != 0 {
			sign = -1
		}
		v[int(idx)%dim] += sign * (1 + float32(math.Log(float64(c))))
	}
	var n float64
	for _, x := range v {
		n += float64(x) * float64(x)
	}
	if n > 0 {
		inv := float32(1 / math.Sqrt(n))
		for i := range v {
			v[i] *= inv
		}
	}
	return v
}

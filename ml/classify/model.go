package classify

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"unicode"
)

// Example is one labeled text.
type Example struct {
	Text  string
	Label string
}

// Options tune training; the zero value gives the defaults a process gets.
type Options struct {
	Epochs       int     // passes over the examples (default 40)
	LearningRate float64 // initial step (default 1)
	L2           float64 // weight decay per example (default 1e-6)
	// Dropout is the share of an example's features SGD leaves out each
	// time it learns from it, the others scaled up to make up for them
	// (default 0.9; negative: none). So much left out makes the model
	// learn every feature's part in telling labels apart, not lean on the
	// few that tell its training examples apart (measured on BANKING77,
	// 6 splits: accuracy 0.909 to 0.914, selective accuracy at 80% 0.979
	// to 0.984, with twice the passes), and each pass costs a tenth.
	Dropout float64
	// Hidden is how many hidden units the network beside the linear model
	// has (default 128; negative: none, the linear model alone; none
	// either for fewer than minNetwork examples). See network.
	Hidden int
	// Holdout is the fraction of examples kept aside to calibrate
	// confidence (default 0.1; at least one per label is kept for
	// training). When that would be fewer than 50, every example
	// calibrates, by cross-validation (crossCalibrate).
	Holdout float64
	// KeepHoldout answers with the model trained without the held-out
	// examples (half the training time); by default the model is trained
	// again on every example once the temperature is set. (Calibrated by
	// cross-validation, a model learns from every example either way.)
	KeepHoldout bool
	Seed        uint64
	// NoLexicon leaves out the concepts of the words (the embedded English
	// lexicon, package lexicon): features of the text's own words and
	// characters only.
	NoLexicon bool

	// ctx stops a training (see TrainContext).
	ctx context.Context
}

func (o *Options) defaults() {
	if o.Epochs <= 0 {
		o.Epochs = 40
	}
	if o.LearningRate <= 0 {
		o.LearningRate = 1
	}
	if o.L2 <= 0 {
		o.L2 = 1e-6
	}
	if o.Dropout == 0 || o.Dropout >= 1 {
		o.Dropout = 0.9
	}
	if o.Hidden == 0 {
		o.Hidden = 128
	}
	if o.Holdout <= 0 || o.Holdout >= 0.5 {
		o.Holdout = 0.1
	}
	if o.Seed == 0 {
		o.Seed = 77
	}
}

// Model is a trained embedded classifier. It is safe for concurrent use by
// Classify.
type Model struct {
	Labels []string
	// vocab maps a hashed feature seen in training to its row; features
	// never seen in training carry no weight and are left out.
	vocab       map[uint32]int32
	idf         []float32 // per row
	weights     []float32 // row-major: len(vocab) rows of len(Labels)
	bias        []float32
	net         *network // nil when Options.Hidden is negative
	Temperature float64
	// logPrior is, per label, the log of its share of the examples the
	// model was trained on. Classify takes it out of the calibrated
	// log-odds, so that a label is not favored only because more of its
	// examples were gathered: how many examples a classifier holds of a
	// label (seeds, reviewers' corrections) says how it was taught, not
	// how often the label comes.
	logPrior []float64
	// examples is how many examples the model has learned from, for the
	// idf of features first seen in an update.
	examples int
	opts     Options
	seed     uint64 // advances with each update
}

// row is one feature of a vectorized text: its vocabulary row and weight.
type row struct {
	idx int32
	val float32
}

// Result is a classification: the label, its calibrated probability, and
// the probability of every label.
type Result struct {
	Label         string
	Confidence    float64
	Probabilities map[string]float64
}

// Train fits a model on examples, and on each label's name as one more
// example of it.
func Train(examples []Example, opts Options) (*Model, error) {
	return TrainContext(context.Background(), examples, opts)
}

// TrainContext is Train that gives up, with ctx's error, when ctx ends: it
// looks between passes over the examples.
func TrainContext(ctx context.Context, examples []Example, opts Options) (*Model, error) {
	opts.defaults()
	opts.ctx = ctx
	if len(examples) == 0 {
		return nil, errors.New("classify: no examples to train on")
	}
	labelIdx := map[string]int{}
	var labels []string
	for _, e := range examples {
		if _, ok := labelIdx[e.Label]; !ok {
			labelIdx[e.Label] = len(labels)
			labels = append(labels, e.Label)
		}
	}
	if len(labels) < 2 {
		return nil, errors.New("classify: need examples of at least two labels")
	}
	if len(examples) < minNetwork {
		opts.Hidden = -1
	}
	rng := rand.New(rand.NewPCG(opts.Seed, opts.Seed^0x9e3779b97f4a7c15))
	train, hold := stratifiedSplit(examples, opts.Holdout, rng)
	// A label's name is one more example of it ("lost_or_stolen_card"
	// reads as "lost or stolen card"), always trained on, never held out:
	// it helps most where a label has few examples.
	names := make([]Example, len(labels))
	for i, l := range labels {
		names[i] = Example{Text: labelText(l), Label: l}
	}
	train = append(train, names...)

	if len(hold) < minCalibration {
		// Too few held out to set a temperature on: every example sets
		// it, classified by a model that did not learn from it.
		m := fitModel(labels, labelIdx, append(slices.Clone(examples), names...), opts, rng)
		t, err := crossCalibrate(ctx, labels, labelIdx, examples, names, opts, rng)
		if err != nil {
			return nil, err
		}
		m.Temperature = t
		return m, nil
	}
	m := fitModel(labels, labelIdx, train, opts, rng)
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	hx := make([][]row, len(hold))
	hy := make([]int, len(hold))
	for i, e := range hold {
		hx[i] = m.features(e.Text)
		hy[i] = labelIdx[e.Label]
	}
	t := m.calibrate(hx, hy)
	if !opts.KeepHoldout {
		// The held-out examples have set the temperature; the model that
		// answers learns from every example.
		m = fitModel(labels, labelIdx, append(slices.Clone(examples), names...), opts, rng)
		if err := ctx.Err(); err != nil {
			return nil, err
		}
	}
	m.Temperature = t
	return m, nil
}

// minCalibration is the fewest held-out examples the temperature is set
// on. Fewer (a classifier of a few hundred examples or less, as every one
// starts) gave one or two, all classified right, and so the smallest
// temperature: every answer, even to a text like none taught, at a
// confidence of 1, and none sent to review for being unsure.
const minCalibration = 50

// minNetwork is the fewest examples a model has the network for: from a
// few dozen (a definition's seeds and a reviewer's corrections) it learns
// little the linear model does not, and it was surer than it should be
// of a text like none taught (0.91, where the linear model alone is
// unsure). The number of examples decides it once for a training, so
// that the models that set the temperature are of the same kind as the
// one that answers.
const minNetwork = 200

// calibrationFolds is how many models crossCalibrate trains.
const calibrationFolds = 5

// crossCalibrate is the temperature set on every example, each classified
// by a model trained on the others (their folds, as CrossValidate deals
// them, and the labels' names); 1 for fewer than two examples.
func crossCalibrate(ctx context.Context, labels []string, labelIdx map[string]int, examples, names []Example, opts Options, rng *rand.Rand) (float64, error) {
	folds := stratifiedFolds(examples, min(calibrationFolds, len(examples)), rng)
	if len(folds) < 2 {
		return 1, nil
	}
	var raw, priors [][]float64
	var ys []int
	for i, test := range folds {
		train := slices.Clone(names)
		for j, f := range folds {
			if j != i {
				train = append(train, f...)
			}
		}
		m := fitModel(labels, labelIdx, train, opts, rng)
		if err := ctx.Err(); err != nil {
			return 0, err
		}
		for _, e := range test {
			z := make([]float64, len(labels))
			m.logits(m.features(e.Text), z)
			raw = append(raw, z)
			priors = append(priors, m.logPrior)
			ys = append(ys, labelIdx[e.Label])
		}
	}
	return fitTemperature(raw, priors, ys), nil
}

// labelText is a label's name as words: tokens splits at underscores and
// other punctuation; this also splits camelCase ("LostCard").
func labelText(label string) string {
	var b strings.Builder
	var prev rune
	for _, r := range label {
		if unicode.IsUpper(r) && unicode.IsLower(prev) {
			b.WriteByte(' ')
		}
		b.WriteRune(r)
		prev = r
	}
	return b.String()
}

// fitModel builds the vocabulary and idf of examples and trains on them.
func fitModel(labels []string, labelIdx map[string]int, examples []Example, opts Options, rng *rand.Rand) *Model {
	counts := make([]*bag, len(examples))
	kept := opts
	kept.ctx = nil // the model outlives the training's context (Update uses its options)
	m := &Model{Labels: labels, vocab: map[uint32]int32{}, bias: make([]float32, len(labels)), Temperature: 1, examples: len(examples), opts: kept, seed: opts.Seed}
	var df []int
	for i, e := range examples {
		counts[i] = modelCounts(e.Text, opts)
		counts[i].slots = nil // counted: only keys and counts are read now
		for _, idx := range counts[i].keys {
			r, ok := m.vocab[idx]
			if !ok {
				r = int32(len(df))
				m.vocab[idx] = r
				df = append(df, 0)
			}
			df[r]++
		}
	}
	n := float64(len(examples))
	m.idf = make([]float32, len(df))
	for r, d := range df {
		m.idf[r] = float32(math.Log((1+n)/(1+float64(d))) + 1)
	}
	m.weights = make([]float32, len(df)*len(labels))
	xs := make([][]row, len(examples))
	ys := make([]int, len(examples))
	for i, e := range examples {
		xs[i] = m.vectorize(counts[i])
		ys[i] = labelIdx[e.Label]
	}
	m.logPrior = make([]float64, len(labels))
	for _, y := range ys {
		m.logPrior[y]++
	}
	for c, k := range m.logPrior {
		m.logPrior[c] = math.Log(k / n)
	}
	m.fit(xs, ys, opts, rng)
	if opts.Hidden > 0 {
		m.net = newNetwork(len(df), len(labels), opts.Hidden, rng)
		m.net.fit(xs, ys, opts, netRate, rng)
	}
	return m
}

func (m *Model) features(text string) []row { return m.vectorize(modelCounts(text, m.opts)) }

// Update returns a copy of the model that has also learned from added
// examples (a reviewer's corrections), in a fraction of the time Train
// takes: their features not seen before join the vocabulary (with the idf
// they would have had), a label not seen before joins the labels, and SGD
// makes the model's usual number of passes over the added examples and
// replay, earlier examples mixed in so that the model does not drift
// towards the added ones. The model is left as it is, so it can keep
// answering meanwhile. A model made by Update is not as good as one made
// by Train on every example; it bridges the time until that is trained.
func (m *Model) Update(added, replay []Example) *Model {
	if len(added) == 0 {
		return m
	}
	labels := slices.Clone(m.Labels)
	labelIdx := make(map[string]int, len(labels))
	for i, l := range labels {
		labelIdx[l] = i
	}
	for _, e := range added {
		if _, ok := labelIdx[e.Label]; !ok {
			labelIdx[e.Label] = len(labels)
			labels = append(labels, e.Label)
		}
	}
	k0, k := len(m.Labels), len(labels)
	u := &Model{Labels: labels, vocab: make(map[uint32]int32, len(m.vocab)+16*len(added)), idf: slices.Clone(m.idf),
		bias: make([]float32, k), Temperature: m.Temperature, examples: m.examples + len(added), opts: m.opts, seed: m.seed + 1}
	for idx, r := range m.vocab {
		u.vocab[idx] = r
	}
	copy(u.bias, m.bias)
	// The prior stays until the next training. A label new to the model
	// takes the largest one, so taking it out favors the new label no more
	// than the most taught one: its weights have learned from a few passes
	// over a few examples, and a smaller prior would make up for more than
	// they lack.
	u.logPrior = slices.Grow(slices.Clone(m.logPrior), k-k0)
	for range k - k0 {
		u.logPrior = append(u.logPrior, slices.Max(m.logPrior))
	}
	// Features first seen now: their document frequency among the added.
	df := map[uint32]int{}
	counts := make([]*bag, len(added))
	for i, e := range added {
		counts[i] = modelCounts(e.Text, u.opts)
		for _, idx := range counts[i].keys {
			if _, ok := u.vocab[idx]; !ok {
				df[idx]++
			}
		}
	}
	newRows := make([]uint32, 0, len(df))
	for idx := range df {
		newRows = append(newRows, idx)
	}
	slices.Sort(newRows) // rows in a fixed order: the same update gives the same model
	n := float64(u.examples)
	for _, idx := range newRows {
		u.vocab[idx] = int32(len(u.idf))
		u.idf = append(u.idf, float32(math.Log((1+n)/(1+float64(df[idx])))+1))
	}
	u.weights = make([]float32, len(u.idf)*k)
	if k == k0 {
		copy(u.weights, m.weights)
	} else {
		for r := range len(m.idf) {
			copy(u.weights[r*k:r*k+k0], m.weights[r*k0:r*k0+k0])
		}
	}
	xs := make([][]row, 0, len(added)+len(replay))
	ys := make([]int, 0, len(added)+len(replay))
	for i, e := range added {
		xs = append(xs, u.vectorize(counts[i]))
		ys = append(ys, labelIdx[e.Label])
	}
	for _, e := range replay {
		if c, ok := labelIdx[e.Label]; ok {
			xs = append(xs, u.features(e.Text))
			ys = append(ys, c)
		}
	}
	if k > k0 {
		u.prototypes(xs[:len(added)], ys[:len(added)], xs[len(added):], k0)
	}
	opts := m.opts
	opts.LearningRate *= updateRate
	rng := rand.New(rand.NewPCG(u.seed, u.seed^0x9e3779b97f4a7c15))
	u.fit(xs, ys, opts, rng)
	if m.net != nil {
		u.net = m.net.grown(len(u.idf), k)
		u.net.fit(xs, ys, opts, netRate*updateRate, rng)
	}
	return u
}

// prototypes starts each label new to the model (index k0 on) from the
// mean of its examples' features, scaled so that its examples score as
// high for it as the model's labels score for theirs (the mean top logit
// over the replayed examples), and with the labels' mean bias: SGD's few
// passes at an update's rate, from zero, left a new label all but never
// answered until the next training.
func (m *Model) prototypes(xs [][]row, ys []int, replay [][]row, k0 int) {
	k := len(m.Labels)
	z := make([]float64, k)
	var target float64
	for _, x := range replay {
		m.linear(x, z)
		target += slices.Max(z[:k0])
	}
	if len(replay) == 0 {
		return
	}
	target /= float64(len(replay))
	var b float32
	for c := range k0 {
		b += m.bias[c]
	}
	b /= float32(k0)
	for c := k0; c < k; c++ {
		n := 0
		for i, y := range ys {
			if y != c {
				continue
			}
			n++
			for _, f := range xs[i] {
				m.weights[int(f.idx)*k+c] += f.val / float32(len(xs))
			}
		}
		if n == 0 {
			continue
		}
		m.bias[c] = b
		var own float64
		for i, y := range ys {
			if y == c {
				m.linear(xs[i], z)
				own += z[c] - float64(b)
			}
		}
		own /= float64(n)
		if own <= 0 {
			continue
		}
		scale := float32((target - float64(b)) / own)
		for r := 0; r < len(m.idf); r++ {
			m.weights[r*k+c] *= scale
		}
	}
}

// updateRate scales the learning rate of an update: the model is already
// trained, an update only adjusts it.
var updateRate = 0.25

// fit runs SGD on the softmax loss with a decaying step, each example's
// features thinned by dropout.
func (m *Model) fit(xs [][]row, ys []int, opts Options, rng *rand.Rand) {
	k := len(m.Labels)
	probs := make([]float64, k)
	grad := make([]float32, k)
	passes(xs, opts.Epochs, opts, rng, func(i int, x []row, done float64) {
		lr := opts.LearningRate * (1 - done)
		m.linear(x, probs)
		softmax(probs, 1)
		probs[ys[i]]--
		decay := float32(1 - lr*opts.L2)
		for c, p := range probs {
			grad[c] = float32(lr * p)
		}
		for _, f := range x {
			w := m.weights[int(f.idx)*k : int(f.idx)*k+k]
			g := grad[:len(w)]
			for c := range w {
				w[c] = w[c]*decay - g[c]*f.val
			}
		}
		for c := range k {
			m.bias[c] -= float32(lr * probs[c] * 0.1)
		}
	})
}

// passes makes epochs passes over xs in a shuffled order, handing learn
// each example (its index, and its features thinned by opts.Dropout, the
// rest scaled up) and the share of the passes done, until opts.ctx ends.
func passes(xs [][]row, epochs int, opts Options, rng *rand.Rand, learn func(i int, x []row, done float64)) {
	order := make([]int, len(xs))
	for i := range order {
		order[i] = i
	}
	var kept []row
	q := max(opts.Dropout, 0)
	keep := uint32(math.MaxUint32 * (1 - q)) // a feature stays when a draw is below
	scale := float32(1 / (1 - q))
	step, total := 0, epochs*len(xs)
	for range epochs {
		if opts.ctx != nil && opts.ctx.Err() != nil {
			return
		}
		rng.Shuffle(len(order), func(i, j int) { order[i], order[j] = order[j], order[i] })
		for _, i := range order {
			done := float64(step) / float64(total+1)
			step++
			x := xs[i]
			if q > 0 {
				kept = kept[:0]
				for _, f := range x {
					if rng.Uint32() < keep {
						kept = append(kept, row{idx: f.idx, val: f.val * scale})
					}
				}
				x = kept
			}
			learn(i, x, done)
		}
	}
}

// logits sets out to each label's score for x: the linear model's and
// the network's.
func (m *Model) logits(x []row, out []float64) {
	m.linear(x, out)
	if m.net == nil {
		return
	}
	var buf [256]float32
	var h []float32
	if m.net.hidden <= len(buf) {
		h = buf[:m.net.hidden]
	} else {
		h = make([]float32, m.net.hidden)
	}
	m.net.addLogits(x, h, out)
}

// linear sets out to the linear model's score of each label for x, summed
// in float32 (the weights' own precision; a float64 sum took a third more
// of a training).
func (m *Model) linear(x []row, out []float64) {
	k := len(out)
	var buf [128]float32
	var acc []float32
	if k <= len(buf) {
		acc = buf[:k]
	} else {
		acc = make([]float32, k)
	}
	copy(acc, m.bias)
	for _, f := range x {
		w := m.weights[int(f.idx)*k : int(f.idx)*k+k]
		a := acc[:len(w)]
		v := f.val
		for c, wc := range w {
			a[c] += wc * v
		}
	}
	for c, a := range acc {
		out[c] = float64(a)
	}
}

// probs sets p to the calibrated probability of each label for x, with
// the label prior taken out.
func (m *Model) probs(x []row, p []float64) {
	m.logits(x, p)
	m.adjust(p, m.Temperature)
}

// adjust turns logits z into probabilities at temperature t, with the
// label prior taken out.
func (m *Model) adjust(z []float64, t float64) { adjust(z, t, m.logPrior) }

// adjust turns logits z into probabilities at temperature t, with the
// log prior logPrior taken out.
func adjust(z []float64, t float64, logPrior []float64) {
	for c := range z {
		z[c] = z[c]/t - logPrior[c]
	}
	softmax(z, 1)
}

func softmax(z []float64, temperature float64) {
	mx := math.Inf(-1)
	for _, v := range z {
		mx = max(mx, v)
	}
	var sum float64
	for i, v := range z {
		z[i] = math.Exp((v - mx) / temperature)
		sum += z[i]
	}
	for i := range z {
		z[i] /= sum
	}
}

// calibrate picks the temperature that best fits the held-out examples
// (fitTemperature).
func (m *Model) calibrate(xs [][]row, ys []int) float64 {
	raw := make([][]float64, len(xs))
	priors := make([][]float64, len(xs))
	for i, x := range xs {
		raw[i] = make([]float64, len(m.Labels))
		m.logits(x, raw[i])
		priors[i] = m.logPrior
	}
	return fitTemperature(raw, priors, ys)
}

// fitTemperature picks the temperature that minimizes the negative
// log-likelihood of the labels ys given the logits raw (each with the log
// prior taken out that its model was trained with), a golden-section
// search over log T, with a weak pull of log T towards 0 (T = 1), worth
// about one example: a handful of examples, all classified right, would
// otherwise drive it to its smallest.
func fitTemperature(raw, priors [][]float64, ys []int) float64 {
	var p []float64
	nll := func(logT float64) float64 {
		t := math.Exp(logT)
		var s float64
		for i, z := range raw {
			p = append(p[:0], z...)
			adjust(p, t, priors[i])
			s -= math.Log(max(p[ys[i]], 1e-12))
		}
		return s + logT*logT
	}
	lo, hi := math.Log(0.05), math.Log(5.0)
	g := (math.Sqrt(5) - 1) / 2
	a, b := hi-g*(hi-lo), lo+g*(hi-lo)
	fa, fb := nll(a), nll(b)
	for range 40 {
		if fa < fb {
			hi, b, fb = b, a, fa
			a = hi - g*(hi-lo)
			fa = nll(a)
		} else {
			lo, a, fa = a, b, fb
			b = lo + g*(hi-lo)
			fb = nll(b)
		}
	}
	return math.Exp((lo + hi) / 2)
}

// Classify returns the most probable label of text with calibrated
// probabilities.
func (m *Model) Classify(text string) Result {
	p := make([]float64, len(m.Labels))
	m.probs(m.features(text), p)
	best := 0
	for c := range p {
		if p[c] > p[best] {
			best = c
		}
	}
	probs := make(map[string]float64, len(p))
	for c, v := range p {
		probs[m.Labels[c]] = v
	}
	return Result{Label: m.Labels[best], Confidence: p[best], Probabilities: probs}
}

// stratifiedSplit keeps about frac of each label's examples aside, but
// never a label's last example.
func stratifiedSplit(examples []Example, frac float64, rng *rand.Rand) (train, hold []Example) {
	byLabel := map[string][]Example{}
	var labels []string
	for _, e := range examples {
		if _, ok := byLabel[e.Label]; !ok {
			labels = append(labels, e.Label)
		}
		byLabel[e.Label] = append(byLabel[e.Label], e)
	}
	slices.Sort(labels)
	for _, l := range labels {
		es := slices.Clone(byLabel[l])
		rng.Shuffle(len(es), func(i, j int) { es[i], es[j] = es[j], es[i] })
		h := int(math.Round(frac * float64(len(es))))
		if h >= len(es) {
			h = len(es) - 1
		}
		hold = append(hold, es[:h]...)
		train = append(train, es[h:]...)
	}
	return train, hold
}

// StratifiedSplit splits examples into train and test, keeping frac of each
// label for test, with a fixed seed: for evaluation.
func StratifiedSplit(examples []Example, frac float64, seed uint64) (train, test []Example) {
	return stratifiedSplit(examples, frac, rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)))
}

// String describes the model.
func (m *Model) String() string {
	net := "no network"
	if m.net != nil {
		net = fmt.Sprintf("a network of %d hidden units", m.net.hidden)
	}
	return fmt.Sprintf("embedded classifier: %d labels, %d features, %s, temperature %.2f", len(m.Labels), len(m.vocab), net, m.Temperature)
}

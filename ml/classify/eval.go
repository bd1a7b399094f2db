package classify

import (
	"bufio"
	"cmp"
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"time"
)

// ReadCSV reads `text,category` rows (with that header, in any column
// order and case) into examples. A byte-order mark, as spreadsheets
// write one, is skipped.
func ReadCSV(r io.Reader) ([]Example, error) {
	br := bufio.NewReader(r)
	if bom, err := br.Peek(3); err == nil && string(bom) == "\uFEFF" {
		_, _ = br.Discard(3)
	}
	cr := csv.NewReader(br)
	header, err := cr.Read()
	if err != nil {
		return nil, fmt.Errorf("read header: %w", err)
	}
	column := func(name string) int {
		return slices.IndexFunc(header, func(h string) bool { return strings.EqualFold(strings.TrimSpace(h), name) })
	}
	ti, ci := column("text"), column("category")
	if ti < 0 || ci < 0 {
		return nil, fmt.Errorf("the CSV needs the columns text and category (its header: %s)", strings.Join(header, ","))
	}
	var out []Example
	for {
		rec, err := cr.Read()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, err
		}
		out = append(out, Example{Text: rec[ti], Label: rec[ci]})
	}
}

// Report is what `adaptflow ml eval` prints.
type Report struct {
	Train               int     `json:"train_examples"`
	Test                int     `json:"test_examples"`
	Labels              int     `json:"labels"`
	Accuracy            float64 `json:"accuracy"`
	MacroF1             float64 `json:"macro_f1"`
	SelectiveAccuracy80 float64 `json:"selective_accuracy_80"`
	ECE                 float64 `json:"ece"`
	TrainingSeconds     float64 `json:"training_seconds"`
	P99LatencyMS        float64 `json:"p99_latency_ms"`
	Temperature         float64 `json:"temperature"`
}

// Evaluate trains on train and measures on test.
func Evaluate(train, test []Example, opts Options) (*Model, Report, error) {
	return EvaluateContext(context.Background(), train, test, opts)
}

// EvaluateContext is Evaluate whose training gives up when ctx ends.
func EvaluateContext(ctx context.Context, train, test []Example, opts Options) (*Model, Report, error) {
	m, rep, preds, err := trial(ctx, train, test, opts)
	if err != nil {
		return nil, Report{}, err
	}
	if len(preds) == 0 {
		return m, rep, errors.New("no test examples")
	}
	return m, measured(preds, rep), nil
}

// trial trains a model on train and has it classify test: the model, the
// training's figures (Train, Labels, TrainingSeconds, Temperature), and
// its answers.
func trial(ctx context.Context, train, test []Example, opts Options) (*Model, Report, []prediction, error) {
	start := time.Now()
	m, err := TrainContext(ctx, train, opts)
	if err != nil {
		return nil, Report{}, nil, err
	}
	rep := Report{Train: len(train), Labels: len(m.Labels), TrainingSeconds: time.Since(start).Seconds(), Temperature: m.Temperature}
	return m, rep, answer(m, test), nil
}

// measured is the report of the predictions with training's figures.
func measured(preds []prediction, training Report) Report {
	rep := measure(preds)
	rep.Train, rep.Labels, rep.TrainingSeconds, rep.Temperature = training.Train, training.Labels, training.TrainingSeconds, training.Temperature
	return rep
}

// ErrTooFew is an evaluation of examples too few to hold any out.
var ErrTooFew = errors.New("too few examples to evaluate: a label needs two at least, one to learn from and one to test")

// HoldOut measures a model trained on all but frac of each label's
// examples (a fixed stratified split, as StratifiedSplit with seed 1) on
// those, and diagnoses its mistakes (the n surest).
func HoldOut(ctx context.Context, examples []Example, frac float64, opts Options, mistakes int) (Report, Diagnosis, error) {
	train, test := StratifiedSplit(examples, frac, 1)
	if len(test) == 0 {
		return Report{}, Diagnosis{}, ErrTooFew
	}
	_, training, preds, err := trial(ctx, train, test, opts)
	if err != nil {
		return Report{}, Diagnosis{}, err
	}
	return measured(preds, training), diagnose(preds, mistakes), nil
}

// CrossValidate measures a model on every example once: the examples are
// split into k folds (each label's spread evenly over them, by a fixed
// shuffle), and each fold is classified by a model trained on the others.
// For a classifier with few examples, whose held-out share would be a
// handful, this is the measure to trust. The report's Train is the
// examples a model learned from, on average; its training time the sum.
func CrossValidate(ctx context.Context, examples []Example, k int, opts Options, mistakes int) (Report, Diagnosis, error) {
	return CrossValidateSeed(ctx, examples, k, 1, opts, mistakes)
}

// CrossValidateSeed is CrossValidate with the folds dealt by seed's
// shuffle (CrossValidate's is 1's): another deal, to see how far the
// figures move with it.
func CrossValidateSeed(ctx context.Context, examples []Example, k int, seed uint64, opts Options, mistakes int) (Report, Diagnosis, error) {
	folds := stratifiedFolds(examples, k, rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)))
	if len(folds) < 2 {
		return Report{}, Diagnosis{}, ErrTooFew
	}
	var preds []prediction
	var sum Report // of the folds' training figures
	for i, test := range folds {
		var train []Example
		for j, f := range folds {
			if j != i {
				train = append(train, f...)
			}
		}
		_, r, p, err := trial(ctx, train, test, opts)
		if err != nil {
			return Report{}, Diagnosis{}, fmt.Errorf("fold %d of %d: %w", i+1, k, err)
		}
		sum.Train += r.Train
		sum.TrainingSeconds += r.TrainingSeconds
		sum.Temperature += r.Temperature
		preds = append(preds, p...)
	}
	n := len(folds)
	return measured(preds, Report{Train: sum.Train / n, Labels: len(labelsOf(examples)), TrainingSeconds: sum.TrainingSeconds, Temperature: sum.Temperature / float64(n)}),
		diagnose(preds, mistakes), nil
}

// stratifiedFolds deals each label's examples, shuffled, to k folds in
// turn.
func stratifiedFolds(examples []Example, k int, rng *rand.Rand) [][]Example {
	folds := make([][]Example, k)
	byLabel := map[string][]Example{}
	for _, e := range examples {
		byLabel[e.Label] = append(byLabel[e.Label], e)
	}
	next := 0 // a label's first example goes to the fold after the last one's
	for _, l := range slices.Sorted(maps.Keys(byLabel)) {
		es := byLabel[l]
		rng.Shuffle(len(es), func(i, j int) { es[i], es[j] = es[j], es[i] })
		for _, e := range es {
			folds[next%k] = append(folds[next%k], e)
			next++
		}
	}
	return slices.DeleteFunc(folds, func(f []Example) bool { return len(f) == 0 })
}

func labelsOf(examples []Example) map[string]bool {
	out := map[string]bool{}
	for _, e := range examples {
		out[e.Label] = true
	}
	return out
}

// prediction is a test example, the model's answer, and how long it took.
type prediction struct {
	Example
	got     Result
	latency time.Duration
}

// answer classifies the test examples with m.
func answer(m *Model, test []Example) []prediction {
	out := make([]prediction, len(test))
	for i, e := range test {
		t0 := time.Now()
		r := m.Classify(e.Text)
		out[i] = prediction{Example: e, got: r, latency: time.Since(t0)}
	}
	return out
}

// measure reports the accuracy, macro-F1, selective accuracy, calibration
// error and latency of the predictions (at least one).
func measure(preds []prediction) Report {
	rep := Report{Test: len(preds)}
	type scored struct {
		conf    float64
		correct bool
	}
	res := make([]scored, len(preds))
	lat := make([]time.Duration, len(preds))
	tp, fp, fn := map[string]int{}, map[string]int{}, map[string]int{}
	correct := 0
	labels := map[string]bool{}
	for i, p := range preds {
		lat[i] = p.latency
		labels[p.Label] = true
		ok := p.got.Label == p.Label
		res[i] = scored{conf: p.got.Confidence, correct: ok}
		if ok {
			correct++
			tp[p.Label]++
		} else {
			fp[p.got.Label]++
			fn[p.Label]++
		}
	}
	rep.Accuracy = float64(correct) / float64(len(preds))
	var f1sum float64
	for l := range labels {
		p := safeDiv(float64(tp[l]), float64(tp[l]+fp[l]))
		r := safeDiv(float64(tp[l]), float64(tp[l]+fn[l]))
		f1sum += safeDiv(2*p*r, p+r)
	}
	rep.MacroF1 = f1sum / float64(len(labels))
	// Selective accuracy: the least confident 20% go to review.
	slices.SortFunc(res, func(a, b scored) int { return cmp.Compare(b.conf, a.conf) })
	keep := int(math.Ceil(0.8 * float64(len(res))))
	kc := 0
	for _, s := range res[:keep] {
		if s.correct {
			kc++
		}
	}
	rep.SelectiveAccuracy80 = float64(kc) / float64(keep)
	// Expected calibration error over 15 equal-width confidence bins.
	const bins = 15
	var cnt [bins]int
	var conf, acc [bins]float64
	for _, s := range res {
		b := min(int(s.conf*bins), bins-1)
		cnt[b]++
		conf[b] += s.conf
		if s.correct {
			acc[b]++
		}
	}
	for b := range bins {
		if cnt[b] > 0 {
			rep.ECE += float64(cnt[b]) / float64(len(res)) * math.Abs(acc[b]/float64(cnt[b])-conf[b]/float64(cnt[b]))
		}
	}
	slices.Sort(lat)
	rep.P99LatencyMS = float64(lat[len(lat)*99/100].Microseconds()) / 1000
	return rep
}

// Evaluation is a classifier evaluated on its own examples: a model
// trained on all but a held-out share of each label's examples, measured
// on those, or cross-validated (the figures of Report), each label's
// quality, the weakest first, and the surest mistakes.
type Evaluation struct {
	Classifier string `json:"classifier"`
	Model      string `json:"model"`
	Examples   int    `json:"examples"`
	// Holdout is the share of each label's examples held out, or Folds
	// the folds of a cross-validation (every example tested once).
	Holdout float64 `json:"holdout,omitempty"`
	Folds   int     `json:"folds,omitempty"`
	// ExamplesVersion is the version of the stored examples evaluated,
	// when the caller keeps them versioned (a store: it changes with each
	// write).
	ExamplesVersion int64 `json:"examples_version,omitempty"`
	// Spec is a digest of what the caller evaluated (a classifier's
	// definition: its labels and seed examples).
	Spec string `json:"spec,omitempty"`
	Report
	// Labels are each label's quality, the weakest first (the report's
	// count of labels is their length).
	Labels   []LabelQuality `json:"labels"`
	Mistakes []Mistake      `json:"mistakes"`
	// LLM is what an evaluation of the LLM asked of it.
	LLM *LLMUsage `json:"llm,omitempty"`
}

// LabelQuality is how a model fares on the test examples of one label.
type LabelQuality struct {
	Label string `json:"label"`
	// Test is how many test examples have the label.
	Test      int     `json:"test"`
	Precision float64 `json:"precision"`
	Recall    float64 `json:"recall"`
	F1        float64 `json:"f1"`
	// ConfusedWith are the labels its test examples were taken for, the
	// most frequent first.
	ConfusedWith []Confusion `json:"confused_with"`
}

// Confusion is how many test examples of a label were taken for another.
type Confusion struct {
	Label string `json:"label"`
	Count int    `json:"count"`
}

// Mistake is a test example the model got wrong, and how sure it was.
type Mistake struct {
	// ID is the stored example's, when the caller knows it (not for a
	// definition's seed example).
	ID         string  `json:"id,omitempty"`
	Text       string  `json:"text"`
	Label      string  `json:"label"`
	Predicted  string  `json:"predicted"`
	Confidence float64 `json:"confidence"`
}

// Diagnosis says where a model errs on test examples: each label's
// quality, the weakest (lowest F1) first, and its most confident
// mistakes (at most n), the first to look at: an example labeled wrong,
// or two labels that mean much the same.
type Diagnosis struct {
	Labels   []LabelQuality `json:"labels"`
	Mistakes []Mistake      `json:"mistakes"`
}

// Diagnose classifies the test examples with m.
func Diagnose(m *Model, test []Example, n int) Diagnosis { return diagnose(answer(m, test), n) }

// diagnose tells each label's quality and the n surest mistakes of the
// predictions.
func diagnose(preds []prediction, n int) Diagnosis {
	byLabel := map[string]*LabelQuality{}
	quality := func(l string) *LabelQuality {
		q := byLabel[l]
		if q == nil {
			q = &LabelQuality{Label: l, ConfusedWith: []Confusion{}}
			byLabel[l] = q
		}
		return q
	}
	tp, fp := map[string]int{}, map[string]int{}
	confused := map[[2]string]int{}
	mistakes := []Mistake{}
	for _, p := range preds {
		r := p.got
		quality(p.Label).Test++
		if r.Label == p.Label {
			tp[p.Label]++
			continue
		}
		fp[r.Label]++
		confused[[2]string{p.Label, r.Label}]++
		mistakes = append(mistakes, Mistake{Text: p.Text, Label: p.Label, Predicted: r.Label, Confidence: r.Confidence})
	}
	for pair, c := range confused {
		q := quality(pair[0])
		q.ConfusedWith = append(q.ConfusedWith, Confusion{Label: pair[1], Count: c})
	}
	d := Diagnosis{Labels: make([]LabelQuality, 0, len(byLabel))}
	for l, q := range byLabel {
		q.Precision = safeDiv(float64(tp[l]), float64(tp[l]+fp[l]))
		q.Recall = safeDiv(float64(tp[l]), float64(q.Test))
		q.F1 = safeDiv(2*q.Precision*q.Recall, q.Precision+q.Recall)
		slices.SortFunc(q.ConfusedWith, func(a, b Confusion) int { return cmp.Or(b.Count-a.Count, strings.Compare(a.Label, b.Label)) })
		d.Labels = append(d.Labels, *q)
	}
	slices.SortFunc(d.Labels, func(a, b LabelQuality) int { return cmp.Or(cmp.Compare(a.F1, b.F1), strings.Compare(a.Label, b.Label)) })
	slices.SortStableFunc(mistakes, func(a, b Mistake) int { return cmp.Compare(b.Confidence, a.Confidence) })
	d.Mistakes = mistakes[:min(n, len(mistakes))]
	return d
}

func safeDiv(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return a / b
}

// PerLabel keeps at most n examples of each label (the first n by a fixed
// shuffle), to measure learning from few examples.
func PerLabel(examples []Example, n int, seed uint64) []Example {
	train, _ := StratifiedSplit(examples, 0, seed)
	shuffled := train
	seen := map[string]int{}
	var out []Example
	for _, e := range shuffled {
		if seen[e.Label] < n {
			seen[e.Label]++
			out = append(out, e)
		}
	}
	return out
}

package classify_test

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/adaptflow/adaptflow/ml/classify"
)

var intents = map[string][]string{
	"card_lost":     {"I lost my card", "my card was stolen", "cannot find my debit card", "someone stole my card yesterday", "card is missing", "lost the card on the bus", "my wallet and card are gone", "I think my card got stolen", "where is my card, I lost it", "card lost abroad"},
	"top_up":        {"how do I top up", "add money to my account", "top up with a bank transfer", "can I top up by card", "my top up failed", "top-up limit", "topping up my balance", "put money in my account", "how to add funds", "top up did not arrive"},
	"exchange":      {"what exchange rate do you use", "convert euros to dollars", "currency exchange fee", "exchange rate is wrong", "how much to exchange money", "foreign currency conversion", "rates for pounds", "exchange to yen", "why was the rate bad", "currency conversion cost"},
	"close_account": {"close my account", "I want to delete my account", "how to terminate my account", "cancel my membership", "shut down my account please", "remove my profile", "end my account", "I am leaving, close it", "deactivate account", "delete all my data and account"},
}

func examples() []classify.Example {
	var out []classify.Example
	for label, texts := range intents {
		for _, t := range texts {
			out = append(out, classify.Example{Text: t, Label: label})
		}
	}
	return out
}

// Words never taught are known by their meaning: a classifier taught
// "purchase" knows "buy" (the embedded lexicon); without it "buy" is a
// word like any other.
func TestClassifyBySynonyms(t *testing.T) {
	taught := []classify.Example{
		{Text: "I want to purchase a gift card", Label: "order"},
		{Text: "purchase two tickets", Label: "order"},
		{Text: "can I purchase it online", Label: "order"},
		{Text: "I mislaid my gift card", Label: "lost"},
		{Text: "the tickets are mislaid", Label: "lost"},
		{Text: "I think I mislaid it online", Label: "lost"},
	}
	for _, lex := range []bool{true, false} {
		m, err := classify.Train(taught, classify.Options{NoLexicon: !lex})
		if err != nil {
			t.Fatal(err)
		}
		known := 0
		for _, text := range []string{"buy", "buying", "bought"} {
			r := m.Classify(text)
			if r.Label == "order" && r.Confidence >= 0.7 {
				known++
			} else if lex {
				t.Errorf("%q: %s (%.2f), want order, at least 0.7", text, r.Label, r.Confidence)
			}
		}
		if !lex && known > 0 {
			t.Errorf("without the lexicon %d of 3 forms of buy were known: the test shows nothing", known)
		}
	}
}

func TestClassifyUnseenPhrasings(t *testing.T) {
	m, err := classify.Train(examples(), classify.Options{})
	if err != nil {
		t.Fatal(err)
	}
	for text, want := range map[string]string{
		"my card has been stolen":          "card_lost",
		"how can I top up my account":      "top_up",
		"the exchange rate you gave me":    "exchange",
		"please close my account for good": "close_account",
	} {
		r := m.Classify(text)
		if r.Label != want {
			t.Errorf("%q: %s (%.2f), want %s", text, r.Label, r.Confidence, want)
		}
		var sum float64
		for _, p := range r.Probabilities {
			sum += p
		}
		if math.Abs(sum-1) > 1e-9 || r.Confidence <= 0.25 || r.Confidence > 1 || r.Probabilities[r.Label] != r.Confidence {
			t.Errorf("%q: confidence %v, probabilities sum %v", text, r.Confidence, sum)
		}
	}
	if r := m.Classify(""); r.Label == "" || len(r.Probabilities) != 4 {
		t.Fatalf("empty text: %+v", r)
	}
}

func TestTrainRefusesTooLittle(t *testing.T) {
	if _, err := classify.Train(nil, classify.Options{}); err == nil {
		t.Fatal("trained on nothing")
	}
	if _, err := classify.Train([]classify.Example{{Text: "a", Label: "x"}, {Text: "b", Label: "x"}}, classify.Options{}); err == nil {
		t.Fatal("trained on one label")
	}
}

func TestEvaluateAndCSV(t *testing.T) {
	csv := "text,category\n" + func() string {
		var b strings.Builder
		for _, e := range examples() {
			b.WriteString(`"` + e.Text + `",` + e.Label + "\n")
		}
		return b.String()
	}()
	all, err := classify.ReadCSV(strings.NewReader(csv))
	if err != nil || len(all) != 40 {
		t.Fatalf("read %d: %v", len(all), err)
	}
	train, test := classify.StratifiedSplit(all, 0.3, 1)
	if len(test) != 12 || len(train) != 28 {
		t.Fatalf("split %d/%d, want 3 of each label's 10 for test", len(train), len(test))
	}
	_, rep, err := classify.Evaluate(train, test, classify.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Accuracy < 0.75 || rep.MacroF1 <= 0 || rep.SelectiveAccuracy80 < rep.Accuracy-1e-9 || rep.ECE < 0 || rep.ECE > 1 || rep.P99LatencyMS <= 0 {
		t.Fatalf("report %+v", rep)
	}
	if few := classify.PerLabel(all, 2, 1); len(few) != 8 {
		t.Fatalf("per label: %d", len(few))
	}
	if _, err := classify.ReadCSV(strings.NewReader("msg,label\nhi,x\n")); err == nil {
		t.Fatal("wrong header accepted")
	}
}

// A CSV as a spreadsheet saves it reads the same: a byte-order mark,
// CRLF line ends, every field quoted, the columns in another order and
// case, a text over two lines with a comma.
func TestReadCSVFromASpreadsheet(t *testing.T) {
	got, err := classify.ReadCSV(strings.NewReader("\uFEFF\"Category\",\" Text\"\r\n\"card_arrival\",\"where is my card, still\r\nnothing\"\r\n\"exchange_rate\",\"rate?\"\r\n"))
	want := []classify.Example{{Text: "where is my card, still\nnothing", Label: "card_arrival"}, {Text: "rate?", Label: "exchange_rate"}}
	if err != nil || !slices.Equal(got, want) {
		t.Fatalf("read %+v, %v; want %+v", got, err, want)
	}
}

// A label's name counts as an example of it: a message in the words of a
// label's name, and of none of its examples, gets that label.
func TestLabelNamesAreExamples(t *testing.T) {
	ex := []classify.Example{
		{Text: "where is the parcel with my plastic", Label: "card_arrival"},
		{Text: "how many euros for a pound", Label: "exchange_rate"},
		{Text: "please shut it down", Label: "closeAccount"},
	}
	m, err := classify.Train(ex, classify.Options{})
	if err != nil {
		t.Fatal(err)
	}
	for text, want := range map[string]string{
		"has my card arrival been delayed": "card_arrival",
		"what rate do you use":             "exchange_rate",
		"I want to close my account":       "closeAccount",
	} {
		if r := m.Classify(text); r.Label != want {
			t.Errorf("%q: %s (%.2f), want %s", text, r.Label, r.Confidence, want)
		}
	}
}

// Update teaches a model new examples, a new label among them, and leaves
// the model it was called on as it was.
func TestUpdateLearnsNewExamples(t *testing.T) {
	m, err := classify.Train(examples(), classify.Options{})
	if err != nil {
		t.Fatal(err)
	}
	text := "when will my new card arrive"
	before := m.Classify(text)
	added := []classify.Example{
		{Text: "my new card has not arrived", Label: "card_arrival"},
		{Text: "how long until the card arrives", Label: "card_arrival"},
		{Text: "still waiting for my card to arrive", Label: "card_arrival"},
	}
	replay := examples()[:3]
	u := m.Update(added, replay)
	if r := u.Classify(text); r.Label != "card_arrival" || len(r.Probabilities) != 5 {
		t.Fatalf("updated model: %q is %s (%.2f) of %d labels, want card_arrival", text, r.Label, r.Confidence, len(r.Probabilities))
	}
	for text, want := range map[string]string{
		"my card has been stolen":          "card_lost",
		"how can I top up my account":      "top_up",
		"the exchange rate you gave me":    "exchange",
		"please close my account for good": "close_account",
	} {
		if r := u.Classify(text); r.Label != want {
			t.Errorf("updated model: %q is %s (%.2f), want %s as before", text, r.Label, r.Confidence, want)
		}
	}
	if after := m.Classify(text); after.Label != before.Label || after.Confidence != before.Confidence || len(m.Labels) != 4 {
		t.Fatalf("the model updated from changed: %+v, was %+v", after, before)
	}
	if again := m.Update(added, replay).Classify(text); again.Confidence != u.Classify(text).Confidence {
		t.Fatal("the same update gave another model")
	}
}

// A label a reviewer's correction brings to the model answers texts like
// its examples at once, before the next training, and takes no texts of
// the others. Each label has words of its own, and every text mixes two of
// them with three words all labels share; the new label's texts have one
// word of label 0's.
func TestUpdateAnswersANewLabelAtOnce(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	shared := strings.Fields("please my the account help today again why how can you need want still after")
	pick := func(w []string) string { return w[rng.IntN(len(w))] }
	text := func(label int) string {
		own := []string{fmt.Sprintf("w%da", label), fmt.Sprintf("w%db", label), fmt.Sprintf("w%dc", label)}
		words := []string{pick(own), pick(own), pick(shared), pick(shared), pick(shared)}
		if label == 6 { // a sibling of label 0, as failed_transfer is of transfer
			words[1] = fmt.Sprintf("w0%c", 'a'+rng.IntN(3))
		}
		rng.Shuffle(len(words), func(i, j int) { words[i], words[j] = words[j], words[i] })
		return strings.Join(words, " ")
	}
	var ex []classify.Example
	for label := range 6 {
		for range 100 {
			ex = append(ex, classify.Example{Text: text(label), Label: fmt.Sprint("label", label)})
		}
	}
	m, err := classify.Train(ex, classify.Options{})
	if err != nil {
		t.Fatal(err)
	}
	var replay []classify.Example
	for i := 0; i < len(ex); i += 50 {
		replay = append(replay, ex[i])
	}
	u := m.Update([]classify.Example{{Text: text(6), Label: "label6"}, {Text: text(6), Label: "label6"}}, replay)
	var found, taken int
	for range 100 {
		if u.Classify(text(6)).Label == "label6" {
			found++
		}
		if u.Classify(text(rng.IntN(6))).Label == "label6" {
			taken++
		}
	}
	// Its examples share words with label 0, so until the next training it
	// answers only a part of its texts; from zero, SGD's few passes left it
	// 8 of 100.
	if found < 20 || taken > 0 {
		t.Errorf("the new label answered %d of 100 texts like its examples (want 20 or more), and took %d of 100 of the others' (want none)", found, taken)
	}
}

func TestTrainContextStopsWhenItEnds(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if m, err := classify.TrainContext(ctx, examples(), classify.Options{}); !errors.Is(err, context.Canceled) || m != nil {
		t.Fatalf("a canceled training: %v, %v", m, err)
	}
	// A model trained under a context that ends afterwards (an activity's)
	// still learns by Update.
	ctx, cancel = context.WithCancel(t.Context())
	m, err := classify.TrainContext(ctx, examples(), classify.Options{})
	cancel()
	if err != nil {
		t.Fatal(err)
	}
	u := m.Update([]classify.Example{
		{Text: "my new card has not arrived", Label: "card_arrival"},
		{Text: "how long until the card arrives", Label: "card_arrival"},
		{Text: "still waiting for my card to arrive", Label: "card_arrival"},
	}, examples()[:3])
	if r := u.Classify("when will my new card arrive"); r.Label != "card_arrival" {
		t.Fatalf("updated after its training's context ended: %s (%.2f)", r.Label, r.Confidence)
	}
}

// A label taught with few examples, among labels taught with many, is
// still recognized: that more examples were gathered of a label does not
// make it more likely. Each label has words of its own, and every text
// mixes one of them with three words all labels share; the rare label's
// texts also have a word of its sibling, as "top_up_failed" has of
// "top_up".
func TestFewExamplesOfALabel(t *testing.T) {
	found := 0
	for seed := range uint64(5) {
		found += fewExamplesOfALabel(t, seed)
	}
	if found < 800 {
		t.Errorf("%d of 1000 texts of a label taught with 6 examples, among labels taught with 100, recognized; want at least 800", found)
	}
}

func fewExamplesOfALabel(t *testing.T, seed uint64) int {
	rng := rand.New(rand.NewPCG(seed, 2))
	shared := strings.Fields("please my the account help today again why how can you need want still after")
	pick := func(w []string) string { return w[rng.IntN(len(w))] }
	own := make([][]string, 6)
	for label := range own {
		for i := range 8 {
			own[label] = append(own[label], fmt.Sprintf("w%dx%d", label, i))
		}
	}
	text := func(label int, own0 []string) string {
		words := []string{pick(own[label]), pick(shared), pick(shared), pick(shared)}
		if label == 0 {
			words = append(words, pick(own0))
			words[0] = pick(own[1])
		}
		rng.Shuffle(len(words), func(i, j int) { words[i], words[j] = words[j], words[i] })
		return strings.Join(words, " ")
	}
	var ex []classify.Example
	for label := range 6 {
		n := 100
		if label == 0 {
			n = 6
		}
		for range n {
			ex = append(ex, classify.Example{Text: text(label, own[0]), Label: fmt.Sprint("label", label)})
		}
	}
	m, err := classify.Train(ex, classify.Options{})
	if err != nil {
		t.Fatal(err)
	}
	// Texts of the rare label with one of its words the model was taught.
	var taught []string
	for _, e := range ex[:6] {
		for _, w := range strings.Fields(e.Text) {
			if strings.HasPrefix(w, "w0x") {
				taught = append(taught, w)
			}
		}
	}
	found := 0
	for range 200 {
		if m.Classify(text(0, taught)).Label == "label0" {
			found++
		}
	}
	return found
}

// TestDiagnose: each label's quality, the weakest first, with what its
// examples were taken for, and the most confident mistakes first: a test
// example labeled wrong is one.
func TestDiagnose(t *testing.T) {
	m, err := classify.Train(examples(), classify.Options{})
	if err != nil {
		t.Fatal(err)
	}
	test := []classify.Example{
		{Text: "my card was stolen on the train", Label: "card_lost"},
		{Text: "I lost my card in a shop", Label: "card_lost"},
		{Text: "someone stole my card, please help", Label: "exchange"}, // labeled wrong
		{Text: "what is the exchange rate for euros", Label: "exchange"},
		{Text: "how do I top up my account", Label: "top_up"},
		{Text: "please close my account", Label: "close_account"},
	}
	d := classify.Diagnose(m, test, 1)
	if len(d.Labels) != 4 {
		t.Fatalf("labels %+v", d.Labels)
	}
	weakest := d.Labels[0]
	if weakest.Label != "exchange" || weakest.Test != 2 || weakest.Recall != 0.5 || weakest.Precision != 1 ||
		!slices.Equal(weakest.ConfusedWith, []classify.Confusion{{Label: "card_lost", Count: 1}}) {
		t.Fatalf("the weakest label %+v", weakest)
	}
	if lost := d.Labels[1]; lost.Label != "card_lost" || lost.Recall != 1 || math.Abs(lost.Precision-2.0/3) > 1e-9 || len(lost.ConfusedWith) != 0 {
		t.Fatalf("card_lost %+v (all: %+v)", lost, d.Labels)
	}
	for _, q := range d.Labels[2:] {
		if q.F1 != 1 {
			t.Fatalf("%s: %+v", q.Label, q)
		}
	}
	if len(d.Mistakes) != 1 || d.Mistakes[0].Text != "someone stole my card, please help" || d.Mistakes[0].Predicted != "card_lost" || d.Mistakes[0].Confidence < 0.5 {
		t.Fatalf("mistakes %+v", d.Mistakes)
	}
	if d := classify.Diagnose(m, test[:2], 20); len(d.Mistakes) != 0 || d.Mistakes == nil {
		t.Fatalf("no mistakes: %+v", d.Mistakes)
	}
}

// TestCrossValidate: every example is tested once, by a model that did not
// learn it; each label's examples spread over the folds.
func TestCrossValidate(t *testing.T) {
	all := examples()
	rep, d, err := classify.CrossValidate(t.Context(), all, 5, classify.Options{}, 3)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Test != 40 || rep.Train != 32 || rep.Labels != 4 || rep.Accuracy < 0.75 || rep.TrainingSeconds <= 0 || len(d.Labels) != 4 || len(d.Mistakes) > 3 {
		t.Fatalf("report %+v, diagnosis %+v", rep, d)
	}
	for _, q := range d.Labels {
		if q.Test != 10 {
			t.Fatalf("%s tested %d times, want its 10 examples", q.Label, q.Test)
		}
	}
	// Seed 1's deal is CrossValidate's; another deals the folds otherwise
	// (other models, so another temperature), each example tested once.
	same, _, err := classify.CrossValidateSeed(t.Context(), all, 5, 1, classify.Options{}, 3)
	same.TrainingSeconds, same.P99LatencyMS = rep.TrainingSeconds, rep.P99LatencyMS // timings
	if err != nil || same != rep {
		t.Fatalf("seed 1: %+v, want %+v: %v", same, rep, err)
	}
	other, _, err := classify.CrossValidateSeed(t.Context(), all, 5, 2, classify.Options{}, 3)
	if err != nil || other.Test != 40 || other.Temperature == rep.Temperature {
		t.Fatalf("seed 2: %+v against seed 1's %+v: %v", other, rep, err)
	}
	held, _, err := classify.HoldOut(t.Context(), all, 0.3, classify.Options{}, 3)
	if err != nil || held.Test != 12 || held.Train != 28 {
		t.Fatalf("held out: %+v %v", held, err)
	}
	if _, _, err := classify.CrossValidate(t.Context(), all[:1], 5, classify.Options{}, 3); !errors.Is(err, classify.ErrTooFew) {
		t.Fatalf("one example: %v", err)
	}
	if _, _, err := classify.HoldOut(t.Context(), []classify.Example{{Text: "a", Label: "x"}, {Text: "b", Label: "y"}}, 0.3, classify.Options{}, 3); !errors.Is(err, classify.ErrTooFew) {
		t.Fatalf("one example a label: %v", err)
	}
}

// The same examples train the same model, to the last bit: two workers
// (or a worker restarted) give an instance the same confidence.
func TestTrainingIsReproducible(t *testing.T) {
	// Enough examples for the network beside the linear model, and fewer.
	var many []classify.Example
	for i, suffix := range []string{"", " please", " today", " asap", " thanks"} {
		for _, e := range examples() {
			many = append(many, classify.Example{Text: fmt.Sprintf("%s%s %d", e.Text, suffix, i), Label: e.Label})
		}
	}
	const text = "my card was stolen, top up my account and close it"
	answer := func(taught []classify.Example, o classify.Options) map[string]float64 {
		t.Helper()
		m, err := classify.Train(taught, o)
		if err != nil {
			t.Fatal(err)
		}
		return m.Classify(text).Probabilities
	}
	same := func(a, b map[string]float64) bool {
		for l, v := range a {
			if v != b[l] {
				return false
			}
		}
		return true
	}
	for _, taught := range [][]classify.Example{examples(), many} {
		first := answer(taught, classify.Options{})
		for range 2 {
			if p := answer(taught, classify.Options{}); !same(p, first) {
				t.Fatalf("%d examples trained again: %v, not %v", len(taught), p, first)
			}
		}
		// Dropout is drawn from the seed too: without it the model differs.
		if same(answer(taught, classify.Options{Dropout: -1}), first) {
			t.Fatalf("%d examples: a model trained without dropout answers as the default one: no feature was left out", len(taught))
		}
		// The network is there from 200 examples on, and only then.
		if linear := answer(taught, classify.Options{Hidden: -1}); same(linear, first) != (len(taught) < 200) {
			t.Fatalf("%d examples: the linear model alone answers as the default one: %v", len(taught), same(linear, first))
		}
	}
}

// A classifier of few examples (as every one starts: a definition's seeds
// and a few reviewers' corrections) is not sure of a text like none it
// was taught, so that one goes to review. Its temperature is set on every
// example, each classified by a model that did not learn it: the one or
// two examples a held-out share would be, all classified right, made any
// answer certain.
func TestFewExamplesAreNotOverconfident(t *testing.T) {
	m, err := classify.Train(examples(), classify.Options{})
	if err != nil {
		t.Fatal(err)
	}
	for _, text := range []string{"what time does the branch open on sunday", "hello, a question about my papers", "is the app available in french"} {
		if r := m.Classify(text); r.Confidence > 0.6 {
			t.Errorf("%q: %s at %.2f, of a text like none taught", text, r.Label, r.Confidence)
		}
	}
	// Texts like those taught are still told apart, and surely.
	for text, want := range map[string]string{"my card got stolen on the train": "card_lost", "I want to close my account": "close_account", "how can I top up my account": "top_up"} {
		if r := m.Classify(text); r.Label != want || r.Confidence < 0.6 {
			t.Errorf("%q: %s at %.2f, want %s, surely", text, r.Label, r.Confidence, want)
		}
	}
}

// The network beside the linear model learns what only a conjunction of
// words tells: here the label is whether a place and a color go together
// (north with red, south with blue), with other words between them, so
// that no bigram or n-gram holds both. A linear model cannot weigh that;
// with the network the classifier can.
func TestNetworkLearnsConjunctions(t *testing.T) {
	filler := strings.Fields("please note that we will send the parcel today after lunch and then call you back about it soon or later this week maybe")
	rng := rand.New(rand.NewPCG(5, 6))
	text := func(place, color string) string {
		words := []string{place}
		for range 3 + rng.IntN(3) {
			words = append(words, filler[rng.IntN(len(filler))])
		}
		return strings.Join(append(words, color), " ")
	}
	gen := func(n int) []classify.Example {
		var out []classify.Example
		for i := range n {
			place, color := []string{"north", "south"}[i%2], []string{"red", "blue"}[(i/2)%2]
			label := "cross"
			if (place == "north") == (color == "red") {
				label = "same"
			}
			out = append(out, classify.Example{Text: text(place, color), Label: label})
		}
		return out
	}
	train, test := gen(400), gen(100)
	accuracy := func(o classify.Options) float64 {
		_, rep, err := classify.Evaluate(train, test, o)
		if err != nil {
			t.Fatal(err)
		}
		return rep.Accuracy
	}
	linear, both := accuracy(classify.Options{Hidden: -1}), accuracy(classify.Options{})
	if both < 0.9 || linear > 0.7 {
		t.Fatalf("accuracy %.2f with the network, %.2f without: want above 0.9 with it, and the linear model no better than chance", both, linear)
	}
}

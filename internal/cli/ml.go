package cli

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"maps"
	"math"
	"os"
	"slices"
	"strings"

	"github.com/adaptflow/adaptflow/ml/anomaly"
	"github.com/adaptflow/adaptflow/ml/classify"
)

// ML runs `adaptflow ml eval` and `adaptflow ml nab`.
func ML(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 && args[0] == "nab" {
		return mlNAB(args[1:], stdout, stderr)
	}
	if len(args) == 0 || args[0] != "eval" {
		fmt.Fprintln(stderr, "usage: adaptflow ml eval --train FILE (--test FILE | --split 0.2 | --folds 10) [--per-label N] [--splits N] [--mistakes N] [--no-lexicon] [--dropout F] [--hidden N] [--json]")
		return 2
	}
	fs := flag.NewFlagSet("adaptflow ml eval", flag.ContinueOnError)
	fs.SetOutput(stderr)
	trainPath := fs.String("train", "", "text,category CSV to train on (required)")
	testPath := fs.String("test", "", "text,category CSV to measure on")
	split := fs.Float64("split", 0, "without --test: keep this fraction of each label of --train for testing (stratified, fixed seed)")
	perLabel := fs.Int("per-label", 0, "train on at most this many examples per label")
	seed := fs.Uint64("seed", 1, "seed of the split, or of the folds' deal")
	splits := fs.Int("splits", 1, "with --split: measure on this many splits (seeds --seed on) and report their mean and standard deviation, a split's noise")
	folds := fs.Int("folds", 0, "without --test or --split: cross-validate, each example of --train tested once by a model trained on the other folds (stratified, dealt by --seed): the figures of a model trained on almost every example")
	mistakes := fs.Int("mistakes", 0, "also list the model's N surest mistakes on the test examples (0 to 10000; not with --splits): examples labeled wrong, or two labels that read alike, show there first")
	noLexicon := fs.Bool("no-lexicon", false, "leave out the words' concepts (the embedded English lexicon), as a comparison")
	hidden := fs.Int("hidden", 128, "hidden units of the network beside the linear model (the product's: 128; 0: none, the linear model alone), as a comparison")
	dropout := fs.Float64("dropout", 0.9, "the share of an example's features training leaves out at each pass, 0 to 1 (the product's: 0.9; 0: none), as a comparison")
	asJSON := fs.Bool("json", false, "print one JSON object")
	if _, err := parseFlags(fs, args[1:]); err != nil {
		return 2
	}
	if *dropout < 0 || *dropout >= 1 {
		fmt.Fprintf(stderr, "adaptflow ml eval: --dropout %v: want 0 (none) up to, not including, 1\n", *dropout)
		return 2
	}
	if *hidden < 0 || *hidden > 4096 {
		fmt.Fprintf(stderr, "adaptflow ml eval: --hidden %d: want 0 (none) to 4096\n", *hidden)
		return 2
	}
	if *splits < 1 || (*splits > 1 && *split <= 0) {
		fmt.Fprintf(stderr, "adaptflow ml eval: --splits %d: want 1 or more, more than 1 only with --split\n", *splits)
		return 2
	}
	if *mistakes < 0 || *mistakes > 10000 || (*mistakes > 0 && *splits > 1) {
		fmt.Fprintf(stderr, "adaptflow ml eval: --mistakes %d: want 0 to 10000, and not with --splits\n", *mistakes)
		return 2
	}
	if *folds != 0 && (*folds < 2 || *testPath != "" || *split > 0 || *splits > 1 || *perLabel > 0) {
		fmt.Fprintf(stderr, "adaptflow ml eval: --folds %d: want 2 or more, and no --test, --split, --splits or --per-label with it\n", *folds)
		return 2
	}
	if *trainPath == "" || btoi(*testPath != "")+btoi(*split > 0)+btoi(*folds > 0) != 1 {
		fmt.Fprintln(stderr, "usage: adaptflow ml eval --train FILE (--test FILE | --split 0.2 | --folds 10) [--per-label N] [--splits N] [--mistakes N] [--no-lexicon] [--dropout F] [--hidden N] [--json]")
		return 2
	}
	read := func(path string) ([]classify.Example, error) {
		f, err := os.Open(path)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		return classify.ReadCSV(f)
	}
	all, err := read(*trainPath)
	if err != nil {
		fmt.Fprintf(stderr, "adaptflow ml eval: %s: %v\n", *trainPath, err)
		return 1
	}
	var given []classify.Example
	if *testPath != "" {
		if given, err = read(*testPath); err != nil {
			fmt.Fprintf(stderr, "adaptflow ml eval: %s: %v\n", *testPath, err)
			return 1
		}
		warnUntaught(stderr, all, given, *testPath)
	}
	opts := classify.Options{NoLexicon: *noLexicon, Dropout: *dropout, Hidden: *hidden}
	if *dropout == 0 {
		opts.Dropout = -1 // Options' zero is the default
	}
	if *hidden == 0 {
		opts.Hidden = -1
	}
	if *folds > 0 {
		return crossValidate(ctx, all, *folds, *seed, opts, *mistakes, *asJSON, stdout, stderr)
	}
	reps := make([]classify.Report, 0, *splits)
	var d classify.Diagnosis // of the one split
	for i := range uint64(*splits) {
		s := *seed + i
		train, test := all, given
		if *testPath == "" {
			train, test = classify.StratifiedSplit(all, *split, s)
		}
		if *perLabel > 0 {
			train = classify.PerLabel(train, *perLabel, s)
		}
		m, rep, err := classify.Evaluate(train, test, opts)
		if err != nil {
			fmt.Fprintln(stderr, "adaptflow ml eval:", err)
			return 1
		}
		reps = append(reps, rep)
		if *splits == 1 {
			d = classify.Diagnose(m, test, *mistakes)
		}
		if !*asJSON {
			if *splits > 1 {
				fmt.Fprintf(stdout, "split %d (seed %d): ", i+1, s)
			}
			fmt.Fprintf(stdout, "trained on %d examples of %d labels in %.1fs; tested on %d\n", rep.Train, rep.Labels, rep.TrainingSeconds, rep.Test)
			printReport(stdout, rep)
		}
	}
	if *splits == 1 {
		printDiagnosis(stdout, evalJSON{Report: reps[0]}, d, *mistakes, *asJSON)
		return 0
	}
	m := meanOf(reps)
	if *asJSON {
		_ = json.NewEncoder(stdout).Encode(m)
		return 0
	}
	fmt.Fprintf(stdout, "mean of %d splits (standard deviation: accuracy %.4f, selective accuracy %.4f):\n", m.Splits, m.AccuracySD, m.SelectiveSD)
	printReport(stdout, m.Report)
	return 0
}

// warnUntaught warns of the test's labels the training examples have
// none of: the model cannot answer them, so they count as mistakes (a
// category spelled otherwise in the two files, say).
func warnUntaught(stderr io.Writer, train, test []classify.Example, testPath string) {
	taught := map[string]bool{}
	for _, e := range train {
		taught[e.Label] = true
	}
	untaught := map[string]int{}
	for _, e := range test {
		if !taught[e.Label] {
			untaught[e.Label]++
		}
	}
	if len(untaught) == 0 {
		return
	}
	var named []string
	for _, l := range slices.Sorted(maps.Keys(untaught)) {
		named = append(named, fmt.Sprintf("%s (%d)", l, untaught[l]))
	}
	fmt.Fprintf(stderr, "adaptflow ml eval: warning: %s has labels --train has no example of, counted as mistakes: %s\n", testPath, strings.Join(named, ", "))
}

// evalJSON is the JSON of one measure: a split's, a test set's or a
// cross-validation's (with folds), with the surest mistakes when asked for.
type evalJSON struct {
	classify.Report
	Folds    int                 `json:"folds,omitempty"`
	Mistakes *[]classify.Mistake `json:"mistakes,omitempty"`
}

// crossValidate is `ml eval --folds k`.
func crossValidate(ctx context.Context, all []classify.Example, k int, seed uint64, opts classify.Options, mistakes int, asJSON bool, stdout, stderr io.Writer) int {
	rep, d, err := classify.CrossValidateSeed(ctx, all, k, seed, opts, mistakes)
	if err != nil {
		fmt.Fprintln(stderr, "adaptflow ml eval:", err)
		return 1
	}
	if !asJSON {
		fmt.Fprintf(stdout, "cross-validated over %d folds: each of %d examples of %d labels tested once by a model trained on the other folds (%d examples) in %.1fs in all\n",
			k, rep.Test, rep.Labels, rep.Train, rep.TrainingSeconds)
		printReport(stdout, rep)
	}
	printDiagnosis(stdout, evalJSON{Report: rep, Folds: k}, d, mistakes, asJSON)
	return 0
}

// printDiagnosis prints, after a report: as JSON, the report itself, with
// the surest mistakes (`mistakes`) when asked for; as text, the weakest
// labels, and the mistakes when asked for.
func printDiagnosis(w io.Writer, rep evalJSON, d classify.Diagnosis, mistakes int, asJSON bool) {
	if asJSON {
		if mistakes > 0 {
			rep.Mistakes = &d.Mistakes
		}
		_ = json.NewEncoder(w).Encode(rep)
		return
	}
	printWeakest(w, d.Labels)
	if mistakes > 0 {
		_ = printMistakes(w, d.Mistakes)
	}
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

func printReport(w io.Writer, rep classify.Report) {
	fmt.Fprintf(w, "accuracy %.4f  macro-F1 %.4f  selective accuracy at 80%% coverage %.4f  ECE %.4f  p99 latency %.3f ms\n",
		rep.Accuracy, rep.MacroF1, rep.SelectiveAccuracy80, rep.ECE, rep.P99LatencyMS)
}

// splitsReport is the mean of several splits' reports, with the spread
// of the two figures a split moves most.
type splitsReport struct {
	classify.Report
	Splits      int     `json:"splits"`
	AccuracySD  float64 `json:"accuracy_sd"`
	SelectiveSD float64 `json:"selective_accuracy_80_sd"`
}

// meanOf averages reports (two at least): each figure's mean, the
// counts of the first, and the sample standard deviations.
func meanOf(reps []classify.Report) splitsReport {
	n := float64(len(reps))
	m := splitsReport{Report: reps[0], Splits: len(reps)}
	m.Accuracy, m.MacroF1, m.SelectiveAccuracy80, m.ECE, m.TrainingSeconds, m.P99LatencyMS, m.Temperature = 0, 0, 0, 0, 0, 0, 0
	for _, r := range reps {
		m.Accuracy += r.Accuracy / n
		m.MacroF1 += r.MacroF1 / n
		m.SelectiveAccuracy80 += r.SelectiveAccuracy80 / n
		m.ECE += r.ECE / n
		m.TrainingSeconds += r.TrainingSeconds / n
		m.P99LatencyMS += r.P99LatencyMS / n
		m.Temperature += r.Temperature / n
	}
	for _, r := range reps {
		m.AccuracySD += (r.Accuracy - m.Accuracy) * (r.Accuracy - m.Accuracy) / (n - 1)
		m.SelectiveSD += (r.SelectiveAccuracy80 - m.SelectiveAccuracy80) * (r.SelectiveAccuracy80 - m.SelectiveAccuracy80) / (n - 1)
	}
	m.AccuracySD, m.SelectiveSD = math.Sqrt(m.AccuracySD), math.Sqrt(m.SelectiveSD)
	return m
}

// mlNAB runs the product's anomaly detector, with its defaults, over a NAB
// layout directory and scores it.
func mlNAB(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("adaptflow ml nab", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dataDir := fs.String("data", "", "directory with data/<category>/*.csv and labels/combined_windows.json (required)")
	out := fs.String("out", "", "write timestamp,value,anomaly_score,label per series here")
	asJSON := fs.Bool("json", false, "print one JSON object")
	if _, err := parseFlags(fs, args); err != nil {
		return 2
	}
	if *dataDir == "" {
		fmt.Fprintln(stderr, "usage: adaptflow ml nab --data DIR [--out DIR] [--json]")
		return 2
	}
	series, err := anomaly.LoadNAB(*dataDir)
	if err != nil {
		fmt.Fprintln(stderr, "adaptflow ml nab:", err)
		return 1
	}
	var unlabeled []string
	for _, s := range series {
		if s.Unlabeled {
			unlabeled = append(unlabeled, s.Name)
		}
	}
	if len(unlabeled) > 0 {
		named := strings.Join(unlabeled[:min(5, len(unlabeled))], ", ")
		if len(unlabeled) > 5 {
			named += ", ..."
		}
		fmt.Fprintf(stderr, "adaptflow ml nab: warning: labels/combined_windows.json does not name %d of %d series, scored as having no anomaly: %s\n", len(unlabeled), len(series), named)
	}
	rep, err := anomaly.RunNAB(series, anomaly.DetectorOptions{}, *out)
	if err != nil {
		fmt.Fprintln(stderr, "adaptflow ml nab:", err)
		return 1
	}
	if *asJSON {
		_ = json.NewEncoder(stdout).Encode(rep)
		return 0
	}
	fmt.Fprintf(stdout, "%d series, %d points, %.0f points/s\n", rep.Series, rep.Points, rep.PointsPerSecond)
	for _, p := range anomaly.Profiles {
		fmt.Fprintf(stdout, "%-20s fixed threshold %.4f: %6.1f   best threshold %.4f: %6.1f\n", p.Name, rep.Threshold, rep.Fixed[p.Name], rep.BestThreshold, rep.Best[p.Name])
	}
	return 0
}

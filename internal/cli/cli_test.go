package cli

import (
	"bytes"
	"database/sql"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	_ "modernc.org/sqlite"

	"github.com/adaptflow/adaptflow/activities"
	"github.com/adaptflow/adaptflow/api"
	"github.com/adaptflow/adaptflow/api/apitest"
	"github.com/adaptflow/adaptflow/ml/classify"
	"github.com/adaptflow/adaptflow/policies"
	"github.com/adaptflow/adaptflow/process"
	"github.com/adaptflow/adaptflow/store"
	"github.com/adaptflow/adaptflow/store/sqlite"
)

const shop = `name: shop
version: 1
steps:
  - {id: pack, kind: task, task: qa_check}
  - {id: charge, kind: task, task: charge, mandatory: true}
`

func policyDoc(limit int) string {
	return fmt.Sprintf("id: small-skip\nprocess: shop\nwhen: input.amount < %d\nactions: [{skip: pack}]\ntests:\n  - {name: tiny, step: pack, facts: {input: {amount: 1}}, expect: {actions: [{skip: pack}]}}\n", limit)
}

func writeDir(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, body := range files {
		path := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func run(t *testing.T, f func(args []string, out, errOut *bytes.Buffer) int, args ...string) (int, string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code := f(args, &out, &errOut)
	return code, out.String() + errOut.String()
}

func policyCmd(t *testing.T) func([]string, *bytes.Buffer, *bytes.Buffer) int {
	return func(args []string, out, errOut *bytes.Buffer) int { return Policy(t.Context(), args, out, errOut) }
}

func TestPolicyTest(t *testing.T) {
	code, out := run(t, policyCmd(t), "test", filepath.Join("..", "..", "examples"))
	if code != 0 || !strings.Contains(out, "0 failing policies") {
		t.Fatalf("examples: exit %d\n%s", code, out)
	}
	bad := writeDir(t, map[string]string{"processes/shop.yaml": shop, "policies/p.yaml": strings.Replace(policyDoc(50), "amount: 1}", "amount: 70}", 1)})
	code, out = run(t, policyCmd(t), "test", bad)
	if code != 1 || !strings.Contains(out, `FAIL small-skip, case "tiny": applied nothing`) || !strings.Contains(out, "input.amount < 50 → false") {
		t.Fatalf("failing case: exit %d\n%s", code, out)
	}
	orphan := writeDir(t, map[string]string{"p.yaml": policyDoc(50)})
	if code, out = run(t, policyCmd(t), "test", orphan); code != 1 || !strings.Contains(out, `no definition of process "shop"`) {
		t.Fatalf("no definition: exit %d\n%s", code, out)
	}
}

// seed makes a store with the shop process, policy v1 (< 50) and decisions
// for the given amounts, recorded by the real Decide activity.
func seed(t *testing.T, amounts ...float64) (string, *sqlite.Store) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "adaptflow.db")
	st, err := sqlite.Open(t.Context(), path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	env, _ := policies.NewEnv()
	if _, _, err := api.RegisterDefinition(t.Context(), st, env, []byte(shop), "t"); err != nil {
		t.Fatal(err)
	}
	if _, _, err := api.RegisterPolicy(t.Context(), st, st, env, []byte(policyDoc(50)), "t", "", store.ModeActive); err != nil {
		t.Fatal(err)
	}
	def, _ := process.ParseDefinition([]byte(shop))
	acts := &activities.Activities{Env: env, Policies: st, Decisions: st, Reviews: st, Starts: st, Calendar: policies.DefaultCalendar()}
	for i, amt := range amounts {
		id := fmt.Sprintf("i%d", i)
		if _, err := acts.Decide(t.Context(), activities.DecideInput{Definition: def, InstanceID: id, RunID: "r" + id, Seq: 1, Step: "pack",
			Now: time.Now(), Started: time.Now(), Input: map[string]any{"amount": amt}}); err != nil {
			t.Fatal(err)
		}
	}
	return path, st
}

func TestPolicySimulateIsReadOnly(t *testing.T) {
	t.Setenv("DATABASE_URL", "") // the missing-store case must not find the CI server
	path, _ := seed(t, 10, 100, 150, 300)
	before, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	dir := writeDir(t, map[string]string{"p.yaml": policyDoc(200)})
	code, out := run(t, policyCmd(t), "simulate", "--process", "shop", "--since", "1h", "--database-url", path, dir)
	if code != 0 || !strings.Contains(out, "Simulated 4 decisions") || !strings.Contains(out, "2 decisions would change (50.0%), in 2 instances") || !strings.Contains(out, "skip pack") {
		t.Fatalf("exit %d\n%s", code, out)
	}
	after, _ := os.ReadFile(path)
	if !bytes.Equal(before, after) {
		t.Fatal("simulation changed the store file")
	}
	if code, out = run(t, policyCmd(t), "simulate", "--process", "shop", dir); code != 1 || !strings.Contains(out, "adaptflow.db") {
		t.Fatalf("missing store: exit %d\n%s", code, out)
	}
}

func TestAuditVerify(t *testing.T) {
	path, st := seed(t, 10, 100)
	audit := func(args []string, out, errOut *bytes.Buffer) int { return Audit(t.Context(), args, out, errOut) }
	if code, out := run(t, audit, "verify", "--database-url", path); code != 0 || !strings.Contains(out, "ok: every chain is intact") {
		t.Fatalf("exit %d\n%s", code, out)
	}
	_ = st.Close()
	raw, err := sql.Open("sqlite", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	if _, err := raw.Exec(`DELETE FROM decisions WHERE instance_id = 'i1'`); err != nil {
		t.Fatal(err)
	}
	if _, err := raw.Exec(`UPDATE decisions SET record = replace(record, '"amount":10', '"amount":1') WHERE instance_id = 'i0'`); err != nil {
		t.Fatal(err)
	}
	code, out := run(t, audit, "verify", "--database-url", path)
	if code != 1 || !strings.Contains(out, "FIRST decision") || !strings.Contains(out, "instance i0") {
		t.Fatalf("tampered: exit %d\n%s", code, out)
	}
}

// apiServer serves the API on st, with a Temporal that never answers, and
// gives out a key of role.
func apiServer(t *testing.T, st *sqlite.Store, name, role string, tweak ...func(*api.Options)) (*httptest.Server, string) {
	t.Helper()
	opts := apitest.Options(t, st)
	for _, f := range tweak {
		f(&opts)
	}
	h, err := api.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	k, secret := api.NewKey(name, role, time.Now())
	if err := st.PutKey(t.Context(), k); err != nil {
		t.Fatal(err)
	}
	return srv, secret
}

func TestApplyAndDiff(t *testing.T) {
	_, st := seed(t, 10, 100) // two decisions before pack: the first skips it
	srv, secret := apiServer(t, st, "gitops", store.RoleEngineer)
	dir := writeDir(t, map[string]string{"processes/shop.yaml": shop, "policies/small.yaml": policyDoc(200),
		"policies/new.yaml": "id: charge-note\nprocess: shop\nwhen: input.amount > 1000\nactions: [{set: {name: big, value: true}}]\n"})
	remoteArgs := func(cmd string, extra ...string) []string {
		return append([]string{cmd, "-f", dir, "--server", srv.URL, "--api-key", secret}, extra...)
	}
	code, out := run(t, policyCmd(t), remoteArgs("diff")...)
	if code != 3 || !strings.Contains(out, "policy small-skip: changed (server has v1)") || !strings.Contains(out, "- when: input.amount < 50") ||
		!strings.Contains(out, "policy charge-note: new") || !strings.Contains(out, "process shop@1: unchanged") {
		t.Fatalf("diff: exit %d\n%s", code, out)
	}
	code, out = run(t, policyCmd(t), remoteArgs("apply", "--mode", "shadow", "--note", "raise the limit")...)
	if code != 0 || !strings.Contains(out, "applied as v2 (shadow)") || !strings.Contains(out, "2 change(s) applied") {
		t.Fatalf("apply: exit %d\n%s", code, out)
	}
	stt, err := st.PolicyState(t.Context(), "small-skip")
	if err != nil || stt.Active != 1 || stt.Shadow != 2 || stt.ChangedBy != "gitops" {
		t.Fatalf("state after apply: %+v %v", stt, err)
	}
	v2, _ := st.PolicyVersion(t.Context(), "small-skip", 2)
	if v2.Note != "raise the limit" || v2.Author != "gitops" {
		t.Fatalf("attribution: %+v", v2)
	}
	code, out = run(t, policyCmd(t), remoteArgs("diff")...)
	if code != 0 || !strings.Contains(out, "0 change(s) to apply") || !strings.Contains(out, "v1 active, v2 in shadow") {
		t.Fatalf("diff after apply: exit %d\n%s", code, out)
	}
	// The next change goes out as a canary to a quarter of the instances.
	if err := os.WriteFile(filepath.Join(dir, "policies/small.yaml"), []byte(policyDoc(300)), 0o644); err != nil {
		t.Fatal(err)
	}
	if code, out = run(t, policyCmd(t), remoteArgs("apply", "--mode", "canary")...); code != 2 {
		t.Fatalf("a canary without its percent: exit %d\n%s", code, out)
	}
	if code, out = run(t, policyCmd(t), remoteArgs("apply", "--guard-promote-after", "2d")...); code != 2 {
		t.Fatalf("a guard without a canary: exit %d\n%s", code, out)
	}
	code, out = run(t, policyCmd(t), remoteArgs("apply", "--mode", "canary", "--percent", "25", "--guard-max-error-rate-increase", "0.05", "--guard-promote-after", "2d", "--guard-confidence", "0.9", "--guard-max-cycle-time-increase", "0.25", "--guard-decide-after", "7d")...)
	if code != 0 || !strings.Contains(out, "applied as v3 (canary 25%)") {
		t.Fatalf("canary apply: exit %d\n%s", code, out)
	}
	if stt, err = st.PolicyState(t.Context(), "small-skip"); err != nil || stt.Active != 1 || stt.Shadow != 3 || stt.ShadowPercent != 25 ||
		stt.Guard == nil || *stt.Guard.MaxErrorRateIncrease != 0.05 || stt.Guard.PromoteAfter != "2d" || stt.Guard.MinInstances != 20 || stt.Guard.MaxReviewRateIncrease != nil || stt.Guard.Confidence != 0.9 || stt.Guard.MaxCycleTimeIncrease == nil || *stt.Guard.MaxCycleTimeIncrease != 0.25 || stt.Guard.DecideAfter != "7d" {
		t.Fatalf("state after the canary: %+v %v", stt, err)
	}
	if code, out = run(t, policyCmd(t), remoteArgs("diff")...); code != 0 || !strings.Contains(out, "v1 active, v3 canary 25%") {
		t.Fatalf("diff after the canary: exit %d\n%s", code, out)
	}
	// What the policies did at the recorded decisions.
	code, out = run(t, policyCmd(t), "activity", "--process", "shop", "--since", "30d", "--server", srv.URL, "--api-key", secret)
	if code != 0 || !strings.Contains(out, "2 decisions of shop in the last 30d") || !regexp.MustCompile(`small-skip\s+v1\s+active\s+1 of 2\s+skip×1\s+0\s+0`).MatchString(out) {
		t.Fatalf("activity: exit %d\n%s", code, out)
	}
	if code, out = run(t, policyCmd(t), "activity", "--server", srv.URL, "--api-key", secret); code != 2 {
		t.Fatalf("activity without a process: exit %d\n%s", code, out)
	}
}

func TestMLEval(t *testing.T) {
	var b strings.Builder
	b.WriteString("text,category\n")
	phrases := map[string][]string{
		"lost":  {"I lost my card", "my card was stolen", "card missing", "cannot find my card", "stolen card", "lost card abroad"},
		"topup": {"how to top up", "add money", "top up failed", "top up by transfer", "put money in", "topping up"},
	}
	for label, ps := range phrases {
		for _, p := range ps {
			fmt.Fprintf(&b, "%q,%s\n", p, label)
		}
	}
	dir := writeDir(t, map[string]string{"train.csv": b.String()})
	ml := func(args []string, out, errOut *bytes.Buffer) int { return ML(t.Context(), args, out, errOut) }
	code, out := run(t, ml, "eval", "--train", filepath.Join(dir, "train.csv"), "--split", "0.34", "--json")
	if code != 0 {
		t.Fatalf("exit %d\n%s", code, out)
	}
	var rep map[string]float64
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("not one JSON object: %v\n%s", err, out)
	}
	for _, key := range []string{"accuracy", "macro_f1", "selective_accuracy_80", "ece", "training_seconds", "p99_latency_ms"} {
		if _, ok := rep[key]; !ok {
			t.Errorf("report lacks %s: %s", key, out)
		}
	}
	if code, _ := run(t, ml, "eval", "--train", filepath.Join(dir, "train.csv")); code != 2 {
		t.Fatalf("no test set: exit %d", code)
	}
	// Without dropout, as a comparison: another model (its confidences).
	code, out = run(t, ml, "eval", "--train", filepath.Join(dir, "train.csv"), "--split", "0.34", "--dropout", "0", "--json")
	var without map[string]float64
	if err := json.Unmarshal([]byte(out), &without); code != 0 || err != nil {
		t.Fatalf("--dropout 0: exit %d, %v\n%s", code, err, out)
	}
	if without["ece"] == rep["ece"] {
		t.Fatalf("--dropout 0 trained the default model: ECE %v both", rep["ece"])
	}
	if code, out := run(t, ml, "eval", "--train", filepath.Join(dir, "train.csv"), "--split", "0.34", "--dropout", "1"); code != 2 || !strings.Contains(out, "--dropout 1") {
		t.Fatalf("--dropout 1: exit %d\n%s", code, out)
	}
	// Without the network beside the linear model, as a comparison: on
	// labels that only a conjunction of words tells (a place and a color
	// that go together, with other words between them), the linear model
	// alone guesses.
	var conj strings.Builder
	conj.WriteString("text,category\n")
	filler := strings.Fields("please note that we will send the parcel today after lunch and call you back")
	for i := range 300 {
		place, color := []string{"north", "south"}[i%2], []string{"red", "blue"}[(i/2)%2]
		label := "cross"
		if (place == "north") == (color == "red") {
			label = "same"
		}
		fmt.Fprintf(&conj, "%s %s %s %s %s,%s\n", place, filler[i%len(filler)], filler[(i*7+3)%len(filler)], filler[(i*5+1)%len(filler)], color, label)
	}
	conjDir := writeDir(t, map[string]string{"train.csv": conj.String()})
	for hidden, want := range map[string]func(float64) bool{"128": func(a float64) bool { return a > 0.9 }, "0": func(a float64) bool { return a < 0.7 }} {
		code, out = run(t, ml, "eval", "--train", filepath.Join(conjDir, "train.csv"), "--split", "0.25", "--hidden", hidden, "--json")
		var r map[string]float64
		if err := json.Unmarshal([]byte(out), &r); code != 0 || err != nil || !want(r["accuracy"]) {
			t.Fatalf("--hidden %s: exit %d, %v\n%s", hidden, code, err, out)
		}
	}
	if code, out := run(t, ml, "eval", "--train", filepath.Join(dir, "train.csv"), "--split", "0.34", "--hidden", "-1"); code != 2 || !strings.Contains(out, "--hidden -1") {
		t.Fatalf("--hidden -1: exit %d\n%s", code, out)
	}
	// Several splits: the mean, and how far a split goes from it.
	code, out = run(t, ml, "eval", "--train", filepath.Join(dir, "train.csv"), "--split", "0.34", "--splits", "3", "--json")
	var mean map[string]float64
	if err := json.Unmarshal([]byte(out), &mean); code != 0 || err != nil || mean["splits"] != 3 || mean["accuracy"] <= 0 || mean["accuracy"] > 1 {
		t.Fatalf("--splits 3: exit %d, %v\n%s", code, err, out)
	}
	for _, key := range []string{"accuracy_sd", "selective_accuracy_80_sd", "selective_accuracy_80", "ece"} {
		if _, ok := mean[key]; !ok {
			t.Errorf("the mean of splits lacks %s: %s", key, out)
		}
	}
	code, out = run(t, ml, "eval", "--train", filepath.Join(dir, "train.csv"), "--split", "0.34", "--splits", "2")
	if code != 0 || strings.Count(out, "split ") != 2 || !strings.Contains(out, "mean of 2 splits") {
		t.Fatalf("--splits 2, as text: exit %d\n%s", code, out)
	}
	for _, args := range [][]string{{"--splits", "0", "--split", "0.34"}, {"--splits", "2", "--test", filepath.Join(dir, "train.csv")}} {
		if code, out := run(t, ml, append([]string{"eval", "--train", filepath.Join(dir, "train.csv")}, args...)...); code != 2 || !strings.Contains(out, "--splits") {
			t.Fatalf("%v: exit %d\n%s", args, code, out)
		}
	}
	// Cross-validation: every example tested once, by a model that did
	// not learn from it.
	code, out = run(t, ml, "eval", "--train", filepath.Join(dir, "train.csv"), "--folds", "3", "--json")
	var cv map[string]float64
	if err := json.Unmarshal([]byte(out), &cv); code != 0 || err != nil || cv["folds"] != 3 || cv["test_examples"] != 12 || cv["train_examples"] != 8 || cv["accuracy"] <= 0 || cv["accuracy"] > 1 {
		t.Fatalf("--folds 3: exit %d, %v\n%s", code, err, out)
	}
	code, out = run(t, ml, "eval", "--train", filepath.Join(dir, "train.csv"), "--folds", "3", "--seed", "2", "--json")
	var cv2 map[string]float64
	if err := json.Unmarshal([]byte(out), &cv2); code != 0 || err != nil || cv2["test_examples"] != 12 || cv2["temperature"] == cv["temperature"] {
		t.Fatalf("--folds 3 --seed 2, another deal: exit %d, %v\n%s", code, err, out)
	}
	code, out = run(t, ml, "eval", "--train", filepath.Join(dir, "train.csv"), "--folds", "3")
	if code != 0 || !strings.Contains(out, "cross-validated over 3 folds: each of 12 examples of 2 labels") || !strings.Contains(out, "accuracy ") {
		t.Fatalf("--folds 3, as text: exit %d\n%s", code, out)
	}
	// A test's label the training has no example of is warned of.
	testDir := writeDir(t, map[string]string{"test.csv": "text,category\n\"my card is gone\",lost\n\"where is my parcel\",parcel\n\"parcel late\",parcel\n"})
	var stdout, stderr bytes.Buffer
	if code := ML(t.Context(), []string{"eval", "--train", filepath.Join(dir, "train.csv"), "--test", filepath.Join(testDir, "test.csv"), "--json"}, &stdout, &stderr); code != 0 ||
		!strings.Contains(stderr.String(), "has labels --train has no example of, counted as mistakes: parcel (2)") || json.Unmarshal(stdout.Bytes(), &rep) != nil || rep["accuracy"] > 1.0/3 {
		t.Fatalf("untaught labels: exit %d\n%s\n%s", code, stdout.String(), stderr.String())
	}
	// The labels known least well, and what their examples were taken
	// for: "mixed" reads like the others.
	mixed := b.String()
	for _, p := range []string{"lost card top up", "card money stolen", "top up my lost card", "money missing from card", "stolen top up", "add money lost card"} {
		mixed += fmt.Sprintf("%q,mixed\n", p)
	}
	mixedDir := writeDir(t, map[string]string{"train.csv": mixed})
	for _, args := range [][]string{{"--folds", "3"}, {"--split", "0.5"}} {
		code, out = run(t, ml, append([]string{"eval", "--train", filepath.Join(mixedDir, "train.csv")}, args...)...)
		if code != 0 || !strings.Contains(out, "the weakest labels (of 3):") || !regexp.MustCompile(`(?m)^(lost|topup|mixed) +\d+ +\d\.\d\d +\d\.\d\d +0\.\d\d +(lost|topup|mixed) \d`).MatchString(out) {
			t.Fatalf("%v, weakest labels: exit %d\n%s", args, code, out)
		}
	}
	// The surest mistakes, as text and in the JSON.
	code, out = run(t, ml, "eval", "--train", filepath.Join(mixedDir, "train.csv"), "--folds", "3", "--mistakes", "2", "--json")
	var withMistakes struct {
		Accuracy float64            `json:"accuracy"`
		Folds    int                `json:"folds"`
		Mistakes []classify.Mistake `json:"mistakes"`
	}
	if err := json.Unmarshal([]byte(out), &withMistakes); code != 0 || err != nil || withMistakes.Folds != 3 || len(withMistakes.Mistakes) != 2 ||
		withMistakes.Mistakes[0].Label == withMistakes.Mistakes[0].Predicted || withMistakes.Mistakes[0].Confidence < withMistakes.Mistakes[1].Confidence {
		t.Fatalf("--mistakes 2 --json: exit %d, %v\n%s", code, err, out)
	}
	code, out = run(t, ml, "eval", "--train", filepath.Join(mixedDir, "train.csv"), "--split", "0.5", "--mistakes", "3")
	if code != 0 || !regexp.MustCompile(`the surest mistakes .*\nLABELED +TAKEN FOR +CONFIDENCE +TEXT\n(lost|topup|mixed) +(lost|topup|mixed) +0\.\d\d +\S`).MatchString(out) {
		t.Fatalf("--mistakes 3: exit %d\n%s", code, out)
	}
	if code, out = run(t, ml, "eval", "--train", filepath.Join(mixedDir, "train.csv"), "--split", "0.5", "--json"); code != 0 || strings.Contains(out, "mistakes") {
		t.Fatalf("mistakes listed unasked: exit %d\n%s", code, out)
	}
	for _, args := range [][]string{{"--mistakes", "-1", "--split", "0.5"}, {"--mistakes", "3", "--split", "0.5", "--splits", "2"}} {
		if code, out := run(t, ml, append([]string{"eval", "--train", filepath.Join(dir, "train.csv")}, args...)...); code != 2 || !strings.Contains(out, "--mistakes") {
			t.Fatalf("%v: exit %d\n%s", args, code, out)
		}
	}
	for _, args := range [][]string{{"--folds", "1"}, {"--folds", "3", "--split", "0.34"}, {"--folds", "3", "--test", filepath.Join(dir, "train.csv")}, {"--folds", "3", "--per-label", "2"}} {
		if code, out := run(t, ml, append([]string{"eval", "--train", filepath.Join(dir, "train.csv")}, args...)...); code != 2 || !strings.Contains(out, "--folds") {
			t.Fatalf("%v: exit %d\n%s", args, code, out)
		}
	}
}

func TestMLNAB(t *testing.T) {
	var csvBody strings.Builder
	csvBody.WriteString("timestamp,value\n")
	start := time.Date(2014, 4, 1, 0, 0, 0, 0, time.UTC)
	for i := range 2000 {
		v := 10.0
		if i == 1500 {
			v = 500
		}
		fmt.Fprintf(&csvBody, "%s,%g\n", start.Add(time.Duration(i)*5*time.Minute).Format("2006-01-02 15:04:05"), v)
	}
	w0 := start.Add(1450 * 5 * time.Minute).Format("2006-01-02 15:04:05.000000")
	w1 := start.Add(1550 * 5 * time.Minute).Format("2006-01-02 15:04:05.000000")
	dir := writeDir(t, map[string]string{
		"data/cat/s.csv":               csvBody.String(),
		"labels/combined_windows.json": `{"cat/s.csv": [["` + w0 + `", "` + w1 + `"]]}`,
	})
	out := t.TempDir()
	ml := func(args []string, o, e *bytes.Buffer) int { return ML(t.Context(), args, o, e) }
	code, text := run(t, ml, "nab", "--data", dir, "--out", out, "--json")
	if code != 0 {
		t.Fatalf("exit %d\n%s", code, text)
	}
	var rep struct {
		Fixed map[string]float64 `json:"fixed_threshold_scores"`
	}
	if err := json.Unmarshal([]byte(text), &rep); err != nil || rep.Fixed["standard"] < 50 {
		t.Fatalf("a spike in its window must be found: %v %s", err, text)
	}
	body, err := os.ReadFile(filepath.Join(out, "cat", "s.csv"))
	lines := strings.Split(string(body), "\n")
	if err != nil || lines[0] != "timestamp,value,anomaly_score,label" || len(lines) != 2002 || !strings.HasSuffix(lines[1501], ",500,1.000000,1") {
		t.Fatalf("result file: %v; header %q, spike row %q", err, lines[0], lines[min(1501, len(lines)-1)])
	}
	if strings.Contains(text, "warning") {
		t.Fatalf("a warning with every series labeled:\n%s", text)
	}
	// A series the labels do not name is scored as having no anomaly,
	// and said so.
	if err := os.WriteFile(filepath.Join(dir, "data", "cat", "other.csv"), []byte(csvBody.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	if code := ML(t.Context(), []string{"nab", "--data", dir, "--out", out, "--json"}, &stdout, &stderr); code != 0 ||
		!strings.Contains(stderr.String(), "warning: labels/combined_windows.json does not name 1 of 2 series, scored as having no anomaly: cat/other.csv") ||
		json.Unmarshal(stdout.Bytes(), &rep) != nil {
		t.Fatalf("an unlabeled series: exit %d\n%s\n%s", code, stdout.String(), stderr.String())
	}
}

func TestKeysCommand(t *testing.T) {
	dir := t.TempDir()
	db := filepath.Join(dir, "adaptflow.db") // named, so DATABASE_URL does not apply
	keys := func(args []string, o, e *bytes.Buffer) int { return Keys(t.Context(), args, o, e) }
	code, out := run(t, keys, "create", "--database-url", db, "--role", "reviewer", "--name", "ann", "--processes", "returns,orders", "--expires-in", "30d", "--json")
	if code != 0 {
		t.Fatalf("create: exit %d\n%s", code, out)
	}
	var created struct {
		ID, Key   string
		Processes []string
	}
	if err := json.Unmarshal([]byte(out), &created); err != nil || !strings.HasPrefix(created.Key, "af_") || len(created.Processes) != 2 {
		t.Fatalf("create: %v %s", err, out)
	}
	st, err := sqlite.Open(t.Context(), filepath.Join(dir, "adaptflow.db"))
	if err != nil {
		t.Fatal(err)
	}
	k, err := st.KeyByHash(t.Context(), api.HashKey(created.Key))
	_ = st.Close()
	if err != nil || k.ID != created.ID || k.Role != "reviewer" || k.ExpiresAt == nil || !k.Allows("returns") || k.Allows("payroll") {
		t.Fatalf("stored key %+v %v", k, err)
	}
	for _, bad := range [][]string{
		{"create", "--database-url", db, "--role", "boss", "--name", "x"},
		{"create", "--database-url", db, "--role", "admin", "--name", "x", "--processes", "returns"},
		{"create", "--database-url", db, "--role", "system", "--name", "x", "--expires-in", "someday"},
	} {
		if code, out := run(t, keys, bad...); code != 2 {
			t.Errorf("%v: exit %d\n%s", bad, code, out)
		}
	}
	if code, out := run(t, keys, "revoke", created.ID, "--database-url", db); code != 0 || !strings.Contains(out, "revoked") {
		t.Fatalf("revoke: exit %d\n%s", code, out)
	}
	if code, out := run(t, keys, "list", "--database-url", db); code != 0 || !strings.Contains(out, "was revoked") || !strings.Contains(out, "returns,orders") {
		t.Fatalf("list: exit %d\n%s", code, out)
	}
}

func TestInstancesCommand(t *testing.T) {
	_, st := seed(t)
	srv, secret := apiServer(t, st, "ops", store.RoleSystem)
	ctx := t.Context()
	now := time.Now()
	for i, in := range []struct{ id, status string }{{"s-1", "completed"}, {"s-2", "failed"}, {"s-3", "waiting_review"}} {
		if _, _, err := st.CreateInstance(ctx, store.Instance{ID: in.id, Process: "shop", ProcessVersion: 1, BusinessKey: "order-" + in.id, Input: []byte(`{"amount":1}`), CreatedAt: now.Add(time.Duration(i-5) * time.Minute)}); err != nil {
			t.Fatal(err)
		}
		state := `{"status":"` + in.status + `","plan":[{"id":"charge","state":"done"},{"id":"ship","state":"not_run","skipped_by":""}],"reviews":[{"id":"rv_1","queue":"finance","status":"open"}]}`
		if in.status == "failed" {
			state = `{"status":"failed","error":"charge declined","plan":[{"id":"charge","state":"failed"}]}`
		}
		if _, err := st.SaveInstanceState(ctx, in.id, "run", 1, json.RawMessage(state)); err != nil {
			t.Fatal(err)
		}
	}
	cmd := func(args []string, out, errOut *bytes.Buffer) int { return Instances(t.Context(), args, out, errOut) }
	remote := []string{"--server", srv.URL, "--api-key", secret}

	code, out := run(t, cmd, append([]string{"list", "--process", "shop"}, remote...)...)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if code != 0 || len(lines) != 4 || !strings.HasPrefix(lines[0], "ID") || !strings.HasPrefix(lines[1], "s-3") || !strings.Contains(lines[3], "completed") {
		t.Fatalf("list: exit %d\n%s", code, out)
	}
	code, out = run(t, cmd, append([]string{"list", "--process", "shop", "--status", "finished", "--limit", "1"}, remote...)...)
	if code != 0 || !strings.Contains(out, "s-2") || strings.Contains(out, "s-1") || !strings.Contains(out, "more: --after ") {
		t.Fatalf("first page of finished: exit %d\n%s", code, out)
	}
	cursor := strings.TrimSpace(out[strings.Index(out, "--after ")+len("--after "):])
	code, out = run(t, cmd, append([]string{"list", "--process", "shop", "--status", "finished", "--limit", "1", "--after", cursor}, remote...)...)
	if code != 0 || !strings.Contains(out, "s-1") || strings.Contains(out, "s-2") {
		t.Fatalf("second page of finished: exit %d\n%s", code, out)
	}
	// Its latest version declares the input field matched.
	env, _ := policies.NewEnv()
	if _, _, err := api.RegisterDefinition(ctx, st, env, []byte(strings.Replace(shop, "version: 1", "version: 2\ninput: {properties: {amount: {type: number}}}", 1)), "t"); err != nil {
		t.Fatal(err)
	}
	code, out = run(t, cmd, append([]string{"list", "--process", "shop", "--input", "amount=1", "--status", "failed"}, remote...)...)
	if code != 0 || !strings.Contains(out, "s-2") || strings.Contains(out, "s-1") {
		t.Fatalf("list by input: exit %d\n%s", code, out)
	}
	code, out = run(t, cmd, append([]string{"list", "--process", "shop", "--input", "amount=2"}, remote...)...)
	if code != 0 || strings.Contains(out, "s-") {
		t.Fatalf("list by an input none has: exit %d\n%s", code, out)
	}
	if code, out = run(t, cmd, append([]string{"list", "--process", "shop", "--input", "amount"}, remote...)...); code != 2 {
		t.Fatalf("--input without a value: exit %d\n%s", code, out)
	}
	// Its failed callback, given up, waits for a redelivery.
	hook, err := st.AddUndeliveredWebhook(ctx, store.UndeliveredWebhook{Process: "shop", InstanceID: "s-2", Event: "instance.failed", URL: "http://erp.example/hooks",
		Key: "s-2/failed", Body: json.RawMessage(`{}`), Attempts: 12, Error: "webhook http://erp.example/hooks: 503 Service Unavailable", FailedAt: now})
	if err != nil {
		t.Fatal(err)
	}
	code, out = run(t, cmd, append([]string{"show", "s-2"}, remote...)...)
	if code != 0 || !strings.Contains(out, "s-2 (shop v1, business key order-s-2): failed") || !strings.Contains(out, "error: charge declined") || !strings.Contains(out, "step charge: failed") ||
		!strings.Contains(out, fmt.Sprintf("webhook instance.failed to http://erp.example/hooks not delivered (12 attempts, webhook http://erp.example/hooks: 503 Service Unavailable): adaptflow webhooks redeliver %d", hook.ID)) {
		t.Fatalf("show: exit %d\n%s", code, out)
	}
	code, out = run(t, cmd, append([]string{"show", "s-3", "--json"}, remote...)...)
	if code != 0 || !json.Valid([]byte(out)) || !strings.Contains(out, `"status":"waiting_review"`) {
		t.Fatalf("show --json: exit %d\n%s", code, out)
	}
	code, out = run(t, cmd, append([]string{"cancel", "s-1", "--reason", "duplicate"}, remote...)...)
	if code != 1 || !strings.Contains(out, "409") || !strings.Contains(out, "has already ended: completed") {
		t.Fatalf("cancel of an ended instance: exit %d\n%s", code, out)
	}
	// Many canceled at once: first what would go (those in progress).
	code, out = run(t, cmd, append([]string{"cancel", "--process", "shop", "--dry-run"}, remote...)...)
	if code != 0 || !strings.Contains(out, "s-3\n") || strings.Contains(out, "s-1") || !strings.Contains(out, "would cancel 1 instances of shop") {
		t.Fatalf("cancel --dry-run: exit %d\n%s", code, out)
	}
	// Temporal is down in this test: each cancel that does not go through
	// is reported, and the exit status says so.
	code, out = run(t, cmd, append([]string{"cancel", "--process", "shop", "--reason", "test"}, remote...)...)
	if code != 1 || !strings.Contains(out, "s-3: not canceled") || !strings.Contains(out, "canceled 0 of 1 instances of shop") {
		t.Fatalf("cancel --process: exit %d\n%s", code, out)
	}
	// Every one as CSV, across pages.
	code, out = run(t, cmd, append([]string{"export", "--process", "shop", "--limit", "1"}, remote...)...)
	if recs, err := csv.NewReader(strings.NewReader(out)).ReadAll(); code != 0 || err != nil || len(recs) != 4 || recs[0][0] != "id" || recs[1][0] != "s-3" || recs[3][3] != "completed" || recs[3][7] == "" {
		t.Fatalf("export: exit %d (%v)\n%s", code, err, out)
	}
	// By business key alone, in every process.
	code, out = run(t, cmd, append([]string{"list", "--business-key", "order-s-2"}, remote...)...)
	if lines := strings.Split(strings.TrimSpace(out), "\n"); code != 0 || len(lines) != 2 || !strings.HasPrefix(lines[1], "s-2") {
		t.Fatalf("list --business-key: exit %d\n%s", code, out)
	}
	if code, out = run(t, cmd, append([]string{"list", "--business-key", "order-s-2", "--status", "failed"}, remote...)...); code != 2 {
		t.Fatalf("a filter without --process: exit %d\n%s", code, out)
	}
	// A version with an SLA of a minute: its instance of ten minutes runs late.
	if _, _, err := api.RegisterDefinition(ctx, st, env, []byte(strings.Replace(shop, "version: 1", "version: 3\nsla: 1m", 1)), "t"); err != nil {
		t.Fatal(err)
	}
	if _, _, err := st.CreateInstance(ctx, store.Instance{ID: "s-4", Process: "shop", ProcessVersion: 3, BusinessKey: "order-s-4", Input: []byte(`{}`), CreatedAt: now.Add(-10 * time.Minute)}); err != nil {
		t.Fatal(err)
	}
	if _, err := st.SaveInstanceState(ctx, "s-4", "run", 1, json.RawMessage(`{"status":"running","plan":[{"id":"pack","state":"running"}]}`)); err != nil {
		t.Fatal(err)
	}
	code, out = run(t, cmd, append([]string{"list", "--process", "shop", "--sla", "overdue"}, remote...)...)
	if lines := strings.Split(strings.TrimSpace(out), "\n"); code != 0 || len(lines) != 2 || !strings.HasPrefix(lines[1], "s-4") || !strings.HasSuffix(lines[1], "overdue") {
		t.Fatalf("list --sla overdue: exit %d\n%s", code, out)
	}
	code, out = run(t, cmd, append([]string{"show", "s-4"}, remote...)...)
	if code != 0 || !strings.Contains(out, "by its SLA: overdue") {
		t.Fatalf("show of a late instance: exit %d\n%s", code, out)
	}
	code, out = run(t, cmd, append([]string{"list", "--process", "shop", "--status", "sleeping"}, remote...)...)
	if code != 1 || !strings.Contains(out, "400") || !strings.Contains(out, `"field":"status"`) {
		t.Fatalf("a bad status: exit %d\n%s", code, out)
	}
	for _, args := range [][]string{{}, {"list"}, {"show"}, {"cancel", "a", "b", "--api-key", "k"}, {"frobnicate"}} {
		if code, out := run(t, cmd, args...); code != 2 || !strings.Contains(out, "usage:") {
			t.Fatalf("%v: exit %d\n%s", args, code, out)
		}
	}
}

// TestInstancesStartWaitsOutTheRateLimit: `instances start -f` sends its
// batches within the key's rate limit, waiting when the server asks it
// to, so that every line is sent (here Temporal is down: each start is
// stored, answered 503, and left for the sweep).
func TestInstancesStartWaitsOutTheRateLimit(t *testing.T) {
	_, st := seed(t)
	srv, secret := apiServer(t, st, "erp", store.RoleSystem, func(o *api.Options) { o.RateLimit = 4; o.Timeout = 100 * time.Millisecond })
	var lines strings.Builder
	for i := range 12 {
		fmt.Fprintf(&lines, `{"business_key":"o-%d","input":{"amount":%d}}`+"\n", i, i+1)
	}
	file := filepath.Join(t.TempDir(), "orders.jsonl")
	if err := os.WriteFile(file, []byte(lines.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := func(args []string, out, errOut *bytes.Buffer) int { return Instances(t.Context(), args, out, errOut) }
	code, out := run(t, cmd, "start", "--process", "shop", "-f", file, "--batch", "6", "--server", srv.URL, "--api-key", secret)
	if code != 1 || !strings.Contains(out, "created 0, existing 0, failed 12") || strings.Contains(out, "not sent") || strings.Count(out, ": 503 ") != 12 {
		t.Fatalf("start: exit %d\n%s", code, out)
	}
	pending, err := st.PendingStarts(t.Context(), time.Now(), 20)
	if err != nil || len(pending) != 12 {
		t.Fatalf("stored: %d %v", len(pending), err)
	}
	for _, args := range [][]string{{"start", "--process", "shop", "--api-key", "k"}, {"start", "-f", file, "--api-key", "k"}, {"start", "--process", "shop", "-f", file, "--batch", "501", "--api-key", "k"}} {
		if code, out := run(t, cmd, args...); code != 2 || !strings.Contains(out, "usage:") {
			t.Fatalf("%v: exit %d\n%s", args, code, out)
		}
	}
}

func TestProcessCommand(t *testing.T) {
	_, st := seed(t)
	const payouts = "name: payouts\nversion: 1\ninput: {properties: {amount: {type: number}}}\nsignals: [{name: amount, kind: value, field: amount}, {name: payout_volume, kind: arrival_rate}]\nsteps: [{id: pay, kind: task, task: noop}]\n"
	env, _ := policies.NewEnv()
	if _, _, err := api.RegisterDefinition(t.Context(), st, env, []byte(payouts), "t"); err != nil {
		t.Fatal(err)
	}
	def, _ := process.ParseDefinition([]byte(payouts))
	acts := &activities.Activities{Env: env, Policies: st, Decisions: st, Reviews: st, Detectors: st, Calendar: policies.DefaultCalendar()}
	now := time.Now()
	amounts := make([]float64, 250)
	for i := range amounts {
		amounts[i] = 100 + float64(i%7)
	}
	amounts[170] = 5000 // after the 150 of warm-up
	for i, amt := range amounts {
		id := fmt.Sprintf("p%d", i)
		at := now.Add(time.Duration(i-len(amounts)) * time.Minute)
		if _, err := acts.Decide(t.Context(), activities.DecideInput{Definition: def, InstanceID: id, RunID: "r" + id, Seq: 1, Step: "pay",
			Now: at, Started: at, Input: map[string]any{"amount": amt}}); err != nil {
			t.Fatal(err)
		}
	}
	srv, secret := apiServer(t, st, "eng", store.RoleEngineer)
	cmd := func(args []string, out, errOut *bytes.Buffer) int { return Process(t.Context(), args, out, errOut) }
	remote := []string{"--server", srv.URL, "--api-key", secret}
	code, out := run(t, cmd, append([]string{"signals", "payouts", "--since", "1d"}, remote...)...)
	lines := strings.Split(out, "\n")
	if code != 0 || len(lines) < 3 || !strings.HasPrefix(lines[0], "SIGNAL") || !strings.Contains(lines[0], "ANOMALOUS (1d)") {
		t.Fatalf("signals: exit %d\n%s", code, out)
	}
	if !strings.HasPrefix(lines[1], "amount ") || !strings.Contains(lines[1], "value of amount") || !strings.Contains(lines[1], " usual ") || !strings.Contains(lines[1], "1 of 250") {
		t.Fatalf("the amount's line: %q\n%s", lines[1], out)
	}
	if !strings.HasPrefix(lines[2], "payout_volume") || !strings.Contains(lines[2], "no observation yet") {
		t.Fatalf("the arrival rate's line (no Starts here): %q\n%s", lines[2], out)
	}
	if !strings.Contains(out, "amount, latest flagged:") || !strings.Contains(out, "(instance p170): 5000 is unusual") {
		t.Fatalf("the flagged spike:\n%s", out)
	}
	code, out = run(t, cmd, append([]string{"signals", "payouts", "--json", "--flagged", "0"}, remote...)...)
	if code != 0 || !json.Valid([]byte(out)) || !strings.Contains(out, `"flagged":[]`) || !strings.Contains(out, `"anomalous":1`) {
		t.Fatalf("--json: exit %d\n%s", code, out)
	}
	code, out = run(t, cmd, append([]string{"signals", "payouts", "--since", "soon"}, remote...)...)
	if code != 1 || !strings.Contains(out, "400") || !strings.Contains(out, `"field":"since"`) {
		t.Fatalf("a bad window: exit %d\n%s", code, out)
	}
	if code, out := run(t, cmd, append([]string{"signals", "nope"}, remote...)...); code != 1 || !strings.Contains(out, "404") {
		t.Fatalf("an unknown process: exit %d\n%s", code, out)
	}
	// The observations as CSV, oldest first: every one, or the flagged.
	code, out = run(t, cmd, append([]string{"observations", "payouts", "amount"}, remote...)...)
	rows, err := csv.NewReader(strings.NewReader(out)).ReadAll()
	if code != 0 || err != nil || len(rows) != 251 || strings.Join(rows[0], ",") != "at,value,instance_id,score,anomalous,warming_up,recurring,expected,low,high,reason" ||
		rows[1][2] != "p0" || rows[1][5] != "true" || rows[250][2] != "p249" {
		t.Fatalf("observations: exit %d, %d rows, %v\n%.500s", code, len(rows), err, out)
	}
	code, out = run(t, cmd, append([]string{"observations", "payouts", "amount", "--anomalous", "--since", "1d"}, remote...)...)
	if rows, err = csv.NewReader(strings.NewReader(out)).ReadAll(); code != 0 || err != nil || len(rows) != 2 || rows[1][1] != "5000" || rows[1][2] != "p170" || rows[1][4] != "true" ||
		!strings.HasPrefix(rows[1][10], "5000 is unusual") {
		t.Fatalf("the flagged observation: exit %d, %v\n%s", code, err, out)
	}
	if code, out := run(t, cmd, append([]string{"observations", "payouts", "weather"}, remote...)...); code != 1 || !strings.Contains(out, `declares no signal \"weather\"`) {
		t.Fatalf("an undeclared signal: exit %d\n%s", code, out)
	}
	// The KPIs of three instances: one completed, one failed, one running.
	for i, status := range []string{"completed", "failed", "running"} {
		id := fmt.Sprint("k-", i)
		if _, _, err := st.CreateInstance(t.Context(), store.Instance{ID: id, Process: "payouts", ProcessVersion: 1, BusinessKey: id, Input: []byte(`{"amount":1}`), CreatedAt: now.Add(-time.Hour)}); err != nil {
			t.Fatal(err)
		}
		if _, err := st.SaveInstanceState(t.Context(), id, "run", 1, json.RawMessage(`{"status":"`+status+`"}`)); err != nil {
			t.Fatal(err)
		}
	}
	code, out = run(t, cmd, append([]string{"kpis", "payouts", "--since", "1d", "--bucket", "6h"}, remote...)...)
	lines = strings.Split(strings.TrimSpace(out), "\n")
	if code != 0 || len(lines) != 3 || !strings.Contains(lines[0], "STARTED") || !strings.Contains(lines[0], "ERROR RATE") {
		t.Fatalf("kpis: exit %d\n%s", code, out)
	}
	if f := strings.Fields(lines[1]); len(f) != 14 || f[0] != "last" || f[1] != "1d" || f[2] != "3" || f[3] != "1" || f[4] != "1" || f[6] != "1" || f[8] != "50.0%" || f[9] != "60" || f[10] != "min" {
		t.Fatalf("kpis over the day: %q\n%s", f, out)
	}
	if !strings.HasPrefix(strings.TrimSpace(lines[2]), "from ") {
		t.Fatalf("kpis of the period with the starts: %q", lines[2])
	}
	code, out = run(t, cmd, append([]string{"list"}, remote...)...)
	if code != 0 || !strings.HasPrefix(out, "PROCESS") || !strings.Contains(out, "IN PROGRESS") || !strings.Contains(out, "shop") {
		t.Fatalf("list: exit %d\n%s", code, out)
	}
	for l := range strings.Lines(out) {
		// One in progress, none in review, one failed, by t.
		if f := strings.Fields(l); f[0] == "payouts" && !slices.Equal(f[:6], []string{"payouts", "v1", "1", "0", "1", "t"}) {
			t.Fatalf("list: payouts reads %q\n%s", f, out)
		}
	}
	code, out = run(t, cmd, append([]string{"schedules", "payouts"}, remote...)...)
	if code != 0 || !strings.Contains(out, "payouts v1 has no schedules") {
		t.Fatalf("schedules of a process with none: exit %d\n%s", code, out)
	}
	const weekly = "name: payouts\nversion: 2\ninput: {properties: {amount: {type: number}}}\nsteps: [{id: pay, kind: task, task: noop}]\nschedules: [{id: weekly, cron: \"0 6 * * 1\", timezone: Asia/Tokyo, input: {amount: 0}}]\n"
	if _, _, err := api.RegisterDefinition(t.Context(), st, env, []byte(weekly), "t"); err != nil {
		t.Fatal(err)
	}
	code, out = run(t, cmd, append([]string{"schedules", "payouts"}, remote...)...)
	if lines := strings.Split(strings.TrimSpace(out), "\n"); code != 0 || len(lines) != 2 || !strings.HasPrefix(lines[0], "SCHEDULE") ||
		!strings.HasPrefix(lines[1], "weekly") || !strings.Contains(lines[1], "0 6 * * 1") || !strings.Contains(lines[1], "Asia/Tokyo") {
		t.Fatalf("schedules: exit %d\n%s", code, out)
	}
	code, out = run(t, cmd, append([]string{"schedules", "payouts", "--pause", "weekly", "--note", "bank holiday"}, remote...)...)
	if code != 0 || !strings.Contains(out, "paused by eng") || !strings.Contains(out, ": bank holiday") {
		t.Fatalf("schedules --pause: exit %d\n%s", code, out)
	}
	code, out = run(t, cmd, append([]string{"schedules", "payouts", "--resume", "weekly"}, remote...)...)
	if code != 0 || strings.Contains(out, "paused") {
		t.Fatalf("schedules --resume: exit %d\n%s", code, out)
	}
	// What changed between its versions.
	if _, _, err := api.RegisterDefinition(t.Context(), st, env, []byte(strings.Replace(payouts, "version: 1", "version: 9\nsla: 1d", 1)), "t"); err != nil {
		t.Fatal(err)
	}
	if code, out = run(t, cmd, append([]string{"diff", "payouts"}, remote...)...); code != 0 || !strings.Contains(out, "+++ payouts v9\n") || !strings.Contains(out, "+ sla: 1d") {
		t.Fatalf("diff: exit %d\n%s", code, out)
	}
	// The whole process: its new instances held, then not.
	if code, out = run(t, cmd, append([]string{"pause", "payouts", "--note", "bank down"}, remote...)...); code != 0 || !strings.Contains(out, "payouts is paused") {
		t.Fatalf("pause: exit %d\n%s", code, out)
	}
	if sts, err := st.ProcessStates(t.Context(), "payouts"); err != nil || len(sts) != 1 || !sts[0].Paused || sts[0].Note != "bank down" {
		t.Fatalf("after pause: %+v %v", sts, err)
	}
	if code, out = run(t, cmd, append([]string{"resume", "payouts"}, remote...)...); code != 0 || !strings.Contains(out, "payouts runs") {
		t.Fatalf("resume: exit %d\n%s", code, out)
	}
	if code, out = run(t, cmd, append([]string{"pause", "nope"}, remote...)...); code != 1 || !strings.Contains(out, "404") {
		t.Fatalf("pause of an unknown process: exit %d\n%s", code, out)
	}
	if code, out = run(t, cmd, append([]string{"schedules", "payouts", "--pause", "daily"}, remote...)...); code != 1 || !strings.Contains(out, "404") {
		t.Fatalf("schedules --pause of an unknown schedule: exit %d\n%s", code, out)
	}
	for _, args := range [][]string{{}, {"signals"}, {"kpis", "--api-key", "k"}, {"list", "payouts", "--api-key", "k"}, {"stats", "payouts", "--api-key", "k"}, {"signals", "a", "b", "--api-key", "k"}, {"observations", "payouts", "--api-key", "k"}} {
		if code, out := run(t, cmd, args...); code != 2 || !strings.Contains(out, "usage:") {
			t.Fatalf("%v: exit %d\n%s", args, code, out)
		}
	}
}

// TestPruneCommand: `adaptflow prune` removes the instances that ended
// before --older-than ago, with their decisions, and the observations and
// audit entries made before it; an instance that ended later, or runs,
// stays.
func TestPruneCommand(t *testing.T) {
	t.Setenv("DATABASE_URL", "") // the missing-store case must not find the CI server
	ctx := t.Context()
	db := filepath.Join(t.TempDir(), "adaptflow.db")
	st, err := sqlite.Open(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	for _, id := range []string{"old", "new", "running"} {
		if _, _, err := st.CreateInstance(ctx, store.Instance{ID: id, Process: "shop", ProcessVersion: 1, BusinessKey: id, Input: []byte(`{}`), CreatedAt: now.Add(-60 * 24 * time.Hour)}); err != nil {
			t.Fatal(err)
		}
		status := "completed"
		if id == "running" {
			status = "running"
		}
		d := process.Decision{ID: "dc-" + id, InstanceID: id, RunID: "r-" + id, Seq: 1, Time: now.Add(-60 * 24 * time.Hour), Process: "shop", ProcessVersion: 1, Step: "pack",
			Facts: []byte(`{}`), Evaluations: []process.Evaluation{}, Applied: []process.AppliedAction{}, Rejected: []process.Rejection{}, Model: "none"}
		d.Hash = d.ComputeHash()
		if _, err := st.AppendDecisionWithState(ctx, d, &store.StateSave{InstanceID: id, RunID: "r-" + id, Seq: 1, State: json.RawMessage(`{"status":"` + status + `"}`)}); err != nil {
			t.Fatal(err)
		}
	}
	if err := st.AppendObservations(ctx, store.Observation{Process: "shop", Signal: "amount", At: now.Add(-40 * 24 * time.Hour), Value: 1, InstanceID: "old"},
		store.Observation{Process: "shop", Signal: "amount", At: now.Add(-time.Hour), Value: 2, InstanceID: "new"}); err != nil {
		t.Fatal(err)
	}
	if _, err := st.AppendAudit(ctx, store.AuditEntry{At: now.Add(-40 * 24 * time.Hour), KeyID: "k", Actor: "ann", Role: store.RoleAdmin, Action: "POST /v1/keys", Status: 201}); err != nil {
		t.Fatal(err)
	}
	_ = st.Close()
	// "old" ended 40 days ago.
	raw, err := sql.Open("sqlite", "file:"+db)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := raw.ExecContext(ctx, `UPDATE instances SET finished_at = ? WHERE id = 'old'`, now.Add(-40*24*time.Hour).UnixMicro()); err != nil {
		t.Fatal(err)
	}
	_ = raw.Close()

	prune := func(args []string, o, e *bytes.Buffer) int { return Prune(t.Context(), args, o, e) }
	for _, bad := range [][]string{{"--database-url", db, "--older-than", "12h"}, {"--database-url", db, "--older-than", "soon"}, {"--database-url", db, "extra"}} {
		if code, out := run(t, prune, bad...); code != 2 {
			t.Errorf("%v: exit %d\n%s", bad, code, out)
		}
	}
	if code, out := run(t, prune, "--database-url", db); code != 1 || !strings.Contains(out, "nothing to prune: no --older-than, and no process's definition declares a retention") {
		t.Errorf("no --older-than and no retention: exit %d\n%s", code, out)
	}
	if code, out := run(t, prune, "--older-than", "30d", "--data-dir", t.TempDir()); code != 1 || !strings.Contains(out, "no store at") {
		t.Errorf("a data directory without a store: exit %d\n%s", code, out)
	}
	before, err := os.ReadFile(db)
	if err != nil {
		t.Fatal(err)
	}
	if code, out := run(t, prune, "--older-than", "30d", "--database-url", db, "--dry-run"); code != 0 ||
		out != "would remove 1 instances (with 1 decision records, 0 reviews, 0 verdicts, 0 undelivered webhooks), 1 signal observations and 1 audit entries\n" {
		t.Fatalf("dry run: exit %d\n%s", code, out)
	}
	if after, _ := os.ReadFile(db); !bytes.Equal(before, after) {
		t.Fatal("a dry run changed the store")
	}
	code, out := run(t, prune, "--older-than", "30d", "--database-url", db, "--json")
	var got store.Pruned
	if err := json.Unmarshal([]byte(out), &got); code != 0 || err != nil {
		t.Fatalf("prune: exit %d, %v\n%s", code, err, out)
	}
	if want := (store.Pruned{Instances: 1, Decisions: 1, Observations: 1, AuditEntries: 1}); got != want {
		t.Fatalf("pruned %+v, want %+v", got, want)
	}
	if code, out := run(t, prune, "--older-than", "30d", "--database-url", db); code != 0 || !strings.HasPrefix(out, "removed 0 instances") {
		t.Fatalf("a second prune: exit %d\n%s", code, out)
	}
	st, err = sqlite.Open(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	for id, want := range map[string]bool{"old": false, "new": true, "running": true} {
		_, err := st.Instance(ctx, id)
		if kept := err == nil; kept != want {
			t.Errorf("instance %s kept: %v (%v), want %v", id, kept, err, want)
		}
	}

	// A definition's own retention applies without --older-than, and to
	// its process only: "new" (ended 3 days ago) goes under shop's 2d; an
	// instance of another process, as old, stays.
	def, err := process.ParseDefinition([]byte("name: shop\nversion: 1\nretention: 2d\nsteps:\n  - {id: pack, kind: task, task: noop}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.PutDefinition(ctx, store.DefinitionRecord{Name: "shop", Version: 1, Doc: process.JSON(def), Digest: "1", Author: "eng", CreatedAt: now}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := st.CreateInstance(ctx, store.Instance{ID: "other", Process: "returns", ProcessVersion: 1, BusinessKey: "other", Input: []byte(`{}`), CreatedAt: now.Add(-4 * 24 * time.Hour)}); err != nil {
		t.Fatal(err)
	}
	if _, err := st.SaveInstanceState(ctx, "other", "r", 1, json.RawMessage(`{"status":"completed"}`)); err != nil {
		t.Fatal(err)
	}
	_ = st.Close()
	if raw, err = sql.Open("sqlite", "file:"+db); err != nil {
		t.Fatal(err)
	}
	if _, err := raw.ExecContext(ctx, `UPDATE instances SET finished_at = ? WHERE id IN ('new', 'other')`, now.Add(-3*24*time.Hour).UnixMicro()); err != nil {
		t.Fatal(err)
	}
	_ = raw.Close()
	if code, out := run(t, prune, "--database-url", db, "--dry-run"); code != 0 || !strings.HasPrefix(out, "shop: its definition keeps 2d (what ended before ") ||
		!strings.HasSuffix(out, "would remove 1 instances (with 1 decision records, 0 reviews, 0 verdicts, 0 undelivered webhooks), 0 signal observations and 0 audit entries\n") {
		t.Fatalf("dry run by retention: exit %d\n%s", code, out)
	}
	if code, out := run(t, prune, "--database-url", db); code != 0 || !strings.HasSuffix(out, "removed 1 instances (with 1 decision records, 0 reviews, 0 verdicts, 0 undelivered webhooks), 0 signal observations and 0 audit entries\n") {
		t.Fatalf("prune by retention: exit %d\n%s", code, out)
	}
	if st, err = sqlite.Open(ctx, db); err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	for id, want := range map[string]bool{"new": false, "running": true, "other": true} {
		_, err := st.Instance(ctx, id)
		if kept := err == nil; kept != want {
			t.Errorf("after the retention's prune, instance %s kept: %v (%v), want %v", id, kept, err, want)
		}
	}
}

func TestWebhooksCommand(t *testing.T) {
	_, st := seed(t)
	var mu sync.Mutex
	refuse := "i2" // the receiver refuses this instance's webhook
	var got []string
	receiver := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var ev struct {
			InstanceID string `json:"instance_id"`
		}
		_ = json.NewDecoder(r.Body).Decode(&ev)
		mu.Lock()
		defer mu.Unlock()
		got = append(got, ev.InstanceID)
		if ev.InstanceID == refuse {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		w.WriteHeader(http.StatusOK)
	}))
	defer receiver.Close()
	srv, secret := apiServer(t, st, "ops", store.RoleSystem)
	for _, id := range []string{"i1", "i2", "i3"} {
		if _, err := st.AddUndeliveredWebhook(t.Context(), store.UndeliveredWebhook{Process: "shop", InstanceID: id, Event: "instance.completed", URL: receiver.URL,
			Key: id + "/completed", Body: json.RawMessage(`{"event":"instance.completed","instance_id":"` + id + `"}`), Attempts: 12, Error: "webhook: 503", FailedAt: time.Now()}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := st.AddUndeliveredWebhook(t.Context(), store.UndeliveredWebhook{Process: "other", InstanceID: "o1", Event: "instance.failed", URL: receiver.URL,
		Key: "o1/failed", Body: json.RawMessage(`{"instance_id":"o1"}`), Attempts: 12, Error: "webhook: 503", FailedAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	cmd := func(args []string, out, errOut *bytes.Buffer) int { return Webhooks(t.Context(), args, out, errOut) }
	remote := []string{"--server", srv.URL, "--api-key", secret}

	code, out := run(t, cmd, append([]string{"list", "--process", "shop"}, remote...)...)
	if lines := strings.Split(strings.TrimSpace(out), "\n"); code != 0 || len(lines) != 3 || !strings.Contains(lines[0], "i3") || !strings.Contains(lines[2], "i1") || !strings.Contains(out, "pending") {
		t.Fatalf("list: exit %d\n%s", code, out)
	}
	code, out = run(t, cmd, append([]string{"redeliver", "--process", "shop", "--dry-run"}, remote...)...)
	if code != 0 || !strings.Contains(out, "would redeliver 3 pending webhooks of shop") || len(got) != 0 {
		t.Fatalf("dry run: exit %d, %d sent\n%s", code, len(got), out)
	}
	// Oldest first; it stops at the first the receiver refuses.
	code, out = run(t, cmd, append([]string{"redeliver", "--process", "shop"}, remote...)...)
	mu.Lock()
	sent := strings.Join(got, ",")
	mu.Unlock()
	if code != 1 || sent != "i1,i2" || !strings.Contains(out, "was refused, so the 1 after it were not sent") || !strings.Contains(out, "redelivered 1 of 3 pending webhooks of shop") {
		t.Fatalf("redeliver with one refused: exit %d, sent %s\n%s", code, sent, out)
	}
	mu.Lock()
	refuse = ""
	mu.Unlock()
	code, out = run(t, cmd, append([]string{"redeliver", "--process", "shop"}, remote...)...)
	mu.Lock()
	sent = strings.Join(got, ",")
	mu.Unlock()
	if code != 0 || sent != "i1,i2,i2,i3" || !strings.Contains(out, "redelivered 2 of 2 pending webhooks of shop") {
		t.Fatalf("redeliver the rest: exit %d, sent %s\n%s", code, sent, out)
	}
	code, out = run(t, cmd, append([]string{"list", "--process", "shop", "--status", "redelivered"}, remote...)...)
	if code != 0 || strings.Count(out, "redelivered ") != 3 || !strings.Contains(out, "by ops") {
		t.Fatalf("redelivered: exit %d\n%s", code, out)
	}
	// One by one: show, then redeliver.
	ws, err := st.UndeliveredWebhooks(t.Context(), store.WebhookFilter{Process: "other"})
	if err != nil || len(ws) != 1 {
		t.Fatal(ws, err)
	}
	id := strconv.FormatInt(ws[0].ID, 10)
	code, out = run(t, cmd, append([]string{"show", id}, remote...)...)
	if code != 0 || !strings.Contains(out, "idempotency key: o1/failed") || !strings.Contains(out, `body: {"instance_id":"o1"}`) {
		t.Fatalf("show: exit %d\n%s", code, out)
	}
	if code, out = run(t, cmd, append([]string{"redeliver", id}, remote...)...); code != 0 || out != "redelivered webhook "+id+"\n" {
		t.Fatalf("redeliver one: exit %d\n%s", code, out)
	}
	if code, out = run(t, cmd, append([]string{"redeliver", id}, remote...)...); code != 1 || !strings.Contains(out, "409") {
		t.Fatalf("redeliver one again: exit %d\n%s", code, out)
	}
	for _, args := range [][]string{{"redeliver"}, {"show"}, {"list", "x"}, {"resend"}} {
		if code, _ := run(t, cmd, append(args, remote...)...); code != 2 {
			t.Fatalf("%v: exit %d, want 2", args, code)
		}
	}
}

// `adaptflow examples import` adds a CSV's examples in batches (a text
// named twice takes its last label), and `list` shows them; a file
// without the columns is refused before anything is sent.
func TestExamplesCommand(t *testing.T) {
	_, st := seed(t)
	srv, secret := apiServer(t, st, "engineer-1", store.RoleEngineer)
	cmd := func(args []string, out, errOut *bytes.Buffer) int { return Examples(t.Context(), args, out, errOut) }
	remote := []string{"--server", srv.URL, "--api-key", secret, "--classifier", "requests"}
	var csv strings.Builder
	csv.WriteString("text,category\n")
	for i := range 25 {
		fmt.Fprintf(&csv, "\"refund %d, please\",refund\n", i)
	}
	csv.WriteString("\"refund 3, please\",question\n") // named again: the last label counts
	file := filepath.Join(t.TempDir(), "examples.csv")
	if err := os.WriteFile(file, []byte(csv.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	code, out := run(t, cmd, append([]string{"import", "-f", file, "--batch", "10"}, remote...)...)
	if code != 0 || !strings.Contains(out, "added 25 examples to requests (1 texts named again: their last label counts)") {
		t.Fatalf("import: exit %d\n%s", code, out)
	}
	es, err := st.ExamplesOf(t.Context(), "requests")
	labels := map[string]string{}
	for _, e := range es {
		labels[e.Text] = e.Label
	}
	if err != nil || len(es) != 25 || labels["refund 3, please"] != "question" || labels["refund 24, please"] != "refund" || es[0].Source != "api:engineer-1" {
		t.Fatalf("%d examples stored (%v): %v", len(es), err, labels)
	}
	code, out = run(t, cmd, append([]string{"list"}, remote...)...)
	if lines := strings.Split(strings.TrimSpace(out), "\n"); code != 0 || len(lines) != 27 || !strings.HasPrefix(lines[0], "ID") || !strings.Contains(out, "refund 3, please") ||
		lines[26] != "25 stored examples: refund 24, question 1" {
		t.Fatalf("list: exit %d\n%s", code, out)
	}
	// A page at a time, and filtered.
	code, out = run(t, cmd, append([]string{"list", "--limit", "20"}, remote...)...)
	more := regexp.MustCompile(`more: --after (\S+)`).FindStringSubmatch(out)
	if code != 0 || more == nil || strings.Count(out, "api:engineer-1") != 20 {
		t.Fatalf("first page: exit %d\n%s", code, out)
	}
	code, out = run(t, cmd, append([]string{"list", "--limit", "20", "--after", more[1]}, remote...)...)
	if code != 0 || strings.Count(out, "api:engineer-1") != 5 || strings.Contains(out, "more:") {
		t.Fatalf("second page: exit %d\n%s", code, out)
	}
	code, out = run(t, cmd, append([]string{"list", "--label", "question"}, remote...)...)
	if code != 0 || strings.Count(out, "api:engineer-1") != 1 || !strings.Contains(out, "refund 3, please") {
		t.Fatalf("questions: exit %d\n%s", code, out)
	}
	// Exported as import reads it: the same examples back.
	code, out = run(t, cmd, append([]string{"export", "--text", "REFUND 1"}, remote...)...)
	exported, err := classify.ReadCSV(strings.NewReader(out))
	if code != 0 || err != nil || len(exported) != 11 { // refund 1 and refund 10 to 19
		t.Fatalf("export: exit %d, %d examples (%v)\n%s", code, len(exported), err, out)
	}
	code, out = run(t, cmd, append([]string{"export"}, remote...)...)
	exported, err = classify.ReadCSV(strings.NewReader(out))
	got := map[string]string{}
	for _, e := range exported {
		got[e.Text] = e.Label
	}
	if code != 0 || err != nil || !maps.Equal(got, labels) {
		t.Fatalf("export: exit %d (%v): %v, want %v", code, err, got, labels)
	}
	// Deleted by filter, or all; one or the other.
	if code, _ := run(t, cmd, append([]string{"delete"}, remote...)...); code != 2 {
		t.Fatalf("delete without a filter: exit %d", code)
	}
	if code, _ := run(t, cmd, append([]string{"delete", "--all", "--label", "refund"}, remote...)...); code != 2 {
		t.Fatalf("delete --all with a filter: exit %d", code)
	}
	code, out = run(t, cmd, append([]string{"delete", "--label", "question"}, remote...)...)
	if es, _ := st.ExamplesOf(t.Context(), "requests"); code != 0 || !strings.Contains(out, "deleted 1 examples of requests") || len(es) != 24 {
		t.Fatalf("delete the questions: exit %d, %d left\n%s", code, len(es), out)
	}
	code, out = run(t, cmd, append([]string{"delete", "--all"}, remote...)...)
	if es, _ := st.ExamplesOf(t.Context(), "requests"); code != 0 || !strings.Contains(out, "deleted 24 examples") || len(es) != 0 {
		t.Fatalf("delete all: exit %d, %d left\n%s", code, len(es), out)
	}
	bad := filepath.Join(t.TempDir(), "bad.csv")
	if err := os.WriteFile(bad, []byte("message,intent\nhello,greeting\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if code, out := run(t, cmd, append([]string{"import", "-f", bad}, remote...)...); code != 1 || !strings.Contains(out, "the CSV needs the columns text and category") {
		t.Fatalf("a file without the columns: exit %d\n%s", code, out)
	}
	if code, _ := run(t, cmd, "import", "-f", file, "--api-key", secret); code != 2 {
		t.Fatalf("no --classifier: exit %d, want 2", code)
	}
}

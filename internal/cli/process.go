package cli

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/adaptflow/adaptflow/ml/anomaly"
	"github.com/adaptflow/adaptflow/ml/classify"
	"github.com/adaptflow/adaptflow/process"
	"github.com/adaptflow/adaptflow/store"
)

const processUsage = `usage:
  adaptflow process list
  adaptflow process kpis NAME [--since 30d] [--bucket 1d] [--version N]
  adaptflow process steps NAME [--since 30d] [--version N]   (per step: added, skipped, how it ended, how long it took)
  adaptflow process signals NAME [--since 7d] [--bucket 1h] [--version N] [--flagged 5]
  adaptflow process observations NAME SIGNAL [--since 30d] [--anomalous] [--version N]   (CSV, oldest first)
  adaptflow process classify NAME (--text TEXT | --text - | --input JSON) [--version N]   (try its classifier; no instance)
  adaptflow process evaluate NAME [--holdout 0.2 | --folds 5] [--llm [--limit 200]] [--version N]   (its classifier, or the LLM, on its own examples: a share of each label's held out, or cross-validated; the weakest labels, the surest mistakes)
  adaptflow process schedules NAME [--pause ID | --resume ID] [--note TEXT]   (its schedules, and when each next starts an instance)
  adaptflow process diff NAME [--from N] [--to N]   (what changed between two versions of its definition; default the latest against the one before)
  adaptflow process pause NAME [--note TEXT]    (hold its new instances: stored, not started, until resumed)
  adaptflow process resume NAME [--note TEXT]   (start the held instances, and the new ones again)
flags common to all: --server URL ($ADAPTFLOW_SERVER) --api-key KEY ($ADAPTFLOW_API_KEY) --json`

// signalPoint is an observation of a signal as the API reports it.
type signalPoint struct {
	At         time.Time            `json:"at"`
	Value      float64              `json:"value"`
	InstanceID string               `json:"instance_id"`
	Verdict    *store.SignalVerdict `json:"verdict"`
}

// signalsView is the part of GET /v1/processes/{name}/signals the CLI
// prints.
type signalsView struct {
	Process string    `json:"process"`
	Version int       `json:"version"`
	Since   time.Time `json:"since"`
	Signals []struct {
		Name         string        `json:"name"`
		Kind         string        `json:"kind"`
		Field        string        `json:"field"`
		Step         string        `json:"step"`
		Observations int           `json:"observations"`
		Anomalous    int           `json:"anomalous"`
		Latest       *signalPoint  `json:"latest"`
		Flagged      []signalPoint `json:"flagged"`
	} `json:"signals"`
}

// kpisView is the part of GET /v1/processes/{name}/kpis the CLI prints.
type kpisView struct {
	Process string `json:"process"`
	Periods []struct {
		Start time.Time `json:"start"`
		kpiFigures
	} `json:"periods"`
	Overall  kpiFigures `json:"overall"`
	Versions []struct {
		Version int `json:"version"`
		kpiFigures
	} `json:"versions"`
	Canaries []struct {
		PolicyID      string     `json:"policy_id"`
		CanaryVersion int        `json:"canary_version"`
		Percent       int        `json:"percent"`
		Canary        kpiFigures `json:"canary"`
		Rest          kpiFigures `json:"rest"`
	} `json:"canaries"`
}

type kpiFigures struct {
	Started    int     `json:"started"`
	InProgress int     `json:"in_progress"`
	Completed  int     `json:"completed"`
	Rejected   int     `json:"rejected"`
	Failed     int     `json:"failed"`
	Canceled   int     `json:"canceled"`
	ErrorRate  float64 `json:"error_rate"`
	CycleTime  *struct {
		P50 float64 `json:"p50"`
		P90 float64 `json:"p90"`
	} `json:"cycle_time_seconds"`
	ReviewRate float64 `json:"review_rate"`
}

// Process runs `adaptflow process`: the registered processes, a process's
// KPIs, and where its signals stand, through a running server's API.
func Process(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	sub, fs, ok := subcommand("process", args, []string{"list", "kpis", "steps", "signals", "observations", "classify", "evaluate", "schedules", "pause", "resume", "diff"}, processUsage, stderr)
	if !ok {
		return 2
	}
	rf := addRemoteFlags(fs, "engineer")
	asJSON := fs.Bool("json", false, "print the server's JSON")
	since := fs.String("since", map[string]string{"kpis": "30d", "steps": "30d", "signals": "7d"}[sub], "kpis, steps, signals, observations: the window, back from now (observations: default all)")
	bucket := fs.String("bucket", "", "kpis: the length of a period (default 1d); signals: of the JSON's periods (default 1h)")
	version := fs.Int("version", 0, "kpis: only this definition version's instances; signals: this version's signals (default the latest)")
	flagged := fs.Int("flagged", 5, "signals: how many of the latest anomalous observations to list per signal")
	anomalous := fs.Bool("anomalous", false, "observations: only the flagged ones")
	text := fs.String("text", "", "classify: the text to classify (-: read it from standard input)")
	input := fs.String("input", "", "classify: an instance's input as JSON; the text is taken from it as for an instance")
	holdout := fs.Float64("holdout", 0.2, "evaluate: the share of each label's examples held out to test (0.05 to 0.5)")
	folds := fs.Int("folds", 0, "evaluate: cross-validate over this many folds instead (2 to 10): every example tested once, for a classifier with few examples")
	evalLLM := fs.Bool("llm", false, "evaluate: the server's LLM, not the embedded classifier (one request per held-out text)")
	limit := fs.Int("limit", 0, "evaluate --llm: ask about at most this many held-out texts (default 200)")
	pause := fs.String("pause", "", "schedules: pause this schedule (it starts nothing until resumed)")
	resume := fs.String("resume", "", "schedules: resume this schedule")
	from := fs.Int("from", 0, "diff: the older version (default the one before --to)")
	to := fs.Int("to", 0, "diff: the newer version (default the latest)")
	note := fs.String("note", "", "pause, resume, schedules --pause/--resume: why, kept with the switch")
	pos, err := parseFlags(fs, args[1:])
	if err != nil {
		return 2
	}
	wantPos := map[string]int{"list": 0, "kpis": 1, "steps": 1, "signals": 1, "observations": 2, "classify": 1, "evaluate": 1, "schedules": 1, "pause": 1, "resume": 1, "diff": 1}[sub]
	if *rf.key == "" || len(pos) != wantPos {
		fmt.Fprintln(stderr, processUsage)
		return 2
	}
	if sub == "observations" {
		if err := exportObservations(ctx, rf.remote(), pos[0], pos[1], *since, *anomalous, *version, stdout); err != nil {
			fmt.Fprintf(stderr, "adaptflow process observations: %v\n", err)
			return 1
		}
		return 0
	}
	if sub == "diff" {
		q := url.Values{}
		if *from > 0 {
			q.Set("from", fmt.Sprint(*from))
		}
		if *to > 0 {
			q.Set("to", fmt.Sprint(*to))
		}
		var d struct {
			From, To int
			Diff     string
		}
		if err := rf.remote().do(ctx, "GET", "/v1/processes/"+url.PathEscape(pos[0])+"/diff?"+q.Encode(), "", nil, nil, &d); err != nil {
			fmt.Fprintf(stderr, "adaptflow process diff: %v\n", err)
			return 1
		}
		fmt.Fprintf(stdout, "--- %s v%d\n+++ %s v%d\n%s", pos[0], d.From, pos[0], d.To, d.Diff)
		return 0
	}
	if sub == "pause" || sub == "resume" {
		b, _ := json.Marshal(map[string]string{"note": *note})
		var st store.ProcessState
		if err := rf.remote().do(ctx, "POST", "/v1/processes/"+url.PathEscape(pos[0])+"/"+sub, "application/json", b, nil, &st); err != nil {
			fmt.Fprintf(stderr, "adaptflow process %s: %v\n", sub, err)
			return 1
		}
		if st.Paused {
			fmt.Fprintf(stdout, "%s is paused: its new instances are held until it is resumed\n", st.Process)
		} else {
			fmt.Fprintf(stdout, "%s runs: the instances held while it was paused are starting\n", st.Process)
		}
		return 0
	}
	if sub == "evaluate" {
		if err := evaluateClassifier(ctx, rf.remote(), pos[0], evaluation{holdout: *holdout, folds: *folds, llm: *evalLLM, limit: *limit}, *version, *asJSON, stdout); err != nil {
			fmt.Fprintf(stderr, "adaptflow process evaluate: %v\n", err)
			return 1
		}
		return 0
	}
	if sub == "classify" {
		if err := classifyPreview(ctx, rf.remote(), pos[0], *text, *input, *version, *asJSON, stdout); err != nil {
			fmt.Fprintf(stderr, "adaptflow process classify: %v\n", err)
			return 1
		}
		return 0
	}
	q := url.Values{}
	if sub != "list" && sub != "schedules" {
		q.Set("since", *since)
	}
	if sub == "signals" {
		q.Set("flagged", fmt.Sprint(*flagged))
	}
	if *bucket != "" {
		q.Set("bucket", *bucket)
	}
	if *version != 0 {
		q.Set("version", fmt.Sprint(*version))
	}
	path := "/v1/processes"
	switch sub {
	case "list":
	case "schedules": // the process, which lists its schedules
		path += "/" + url.PathEscape(pos[0])
	default:
		path += "/" + url.PathEscape(pos[0]) + "/" + sub + "?" + q.Encode()
	}
	r := rf.remote()
	fail := func(err error) int {
		fmt.Fprintf(stderr, "adaptflow process %s: %v\n", sub, err)
		return 1
	}
	if sub == "schedules" && (*pause != "" || *resume != "") {
		id, verb := *pause, "pause"
		if *resume != "" {
			id, verb = *resume, "resume"
		}
		b, _ := json.Marshal(map[string]string{"note": *note})
		if err := r.do(ctx, "POST", path+"/schedules/"+url.PathEscape(id)+"/"+verb, "application/json", b, nil, nil); err != nil {
			return fail(err)
		}
	}
	var raw json.RawMessage
	if err := r.do(ctx, "GET", path, "", nil, nil, &raw); err != nil {
		return fail(err)
	}
	if *asJSON {
		fmt.Fprintln(stdout, string(raw))
		return 0
	}
	switch sub {
	case "list":
		var v struct {
			Processes []struct {
				Name, Author string
				Version      int
				CreatedAt    time.Time `json:"created_at"`
				Paused       bool
				Queued       int
				InProgress   int `json:"in_progress"`
				Review       int `json:"waiting_review"`
				Failed       int `json:"failed_24h"`
			}
		}
		if err := json.Unmarshal(raw, &v); err != nil {
			return fail(err)
		}
		tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "PROCESS\tVERSION\tIN PROGRESS\tIN REVIEW\tFAILED 24H\tBY\tREGISTERED\tSTATE")
		for _, p := range v.Processes {
			var state []string
			if p.Paused {
				state = append(state, "paused")
			}
			if p.Queued > 0 {
				state = append(state, fmt.Sprintf("%d queued", p.Queued))
			}
			fmt.Fprintf(tw, "%s\tv%d\t%d\t%d\t%d\t%s\t%s\t%s\n", p.Name, p.Version, p.InProgress, p.Review, p.Failed, p.Author, p.CreatedAt.Local().Format(time.DateTime), strings.Join(state, ", "))
		}
		_ = tw.Flush()
	case "schedules":
		var v struct {
			Name      string
			Version   int
			Schedules []struct {
				ID, Cron, Timezone string
				NextRun            time.Time `json:"next_run"`
				Paused             bool
				ChangedBy          string    `json:"changed_by"`
				ChangedAt          time.Time `json:"changed_at"`
				Note               string
			}
		}
		if err := json.Unmarshal(raw, &v); err != nil {
			return fail(err)
		}
		if len(v.Schedules) == 0 {
			fmt.Fprintf(stdout, "%s v%d has no schedules\n", v.Name, v.Version)
			return 0
		}
		tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "SCHEDULE\tCRON\tTIME ZONE\tNEXT START")
		for _, sc := range v.Schedules {
			next := sc.NextRun.Local().Format(time.DateTime)
			if sc.Paused {
				next = fmt.Sprintf("paused by %s %s", sc.ChangedBy, sc.ChangedAt.Local().Format(time.DateTime))
				if sc.Note != "" {
					next += ": " + sc.Note
				}
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", sc.ID, sc.Cron, sc.Timezone, next)
		}
		_ = tw.Flush()
	case "kpis":
		var v kpisView
		if err := json.Unmarshal(raw, &v); err != nil {
			return fail(err)
		}
		printKPIs(stdout, v, *since)
	case "steps":
		var v stepsView
		if err := json.Unmarshal(raw, &v); err != nil {
			return fail(err)
		}
		printSteps(stdout, v, *since)
	default:
		var v signalsView
		if err := json.Unmarshal(raw, &v); err != nil {
			return fail(err)
		}
		printSignals(stdout, v, *since)
	}
	return 0
}

// stepsView is the steps report as the API gives it.
type stepsView struct {
	Instances int `json:"instances"`
	Adapted   struct {
		Added   int `json:"added"`
		Skipped int `json:"skipped"`
	} `json:"adapted"`
	Steps []struct {
		ID         string `json:"id"`
		Kind       string `json:"kind"`
		InPlan     int    `json:"in_plan"`
		Done       int    `json:"done"`
		Skipped    int    `json:"skipped"`
		Failed     int    `json:"failed"`
		InProgress int    `json:"in_progress"`
		Added      int    `json:"added"`
		Reviews    int    `json:"reviews"`
		Duration   *struct {
			P50 float64 `json:"p50"`
			P90 float64 `json:"p90"`
		} `json:"duration_seconds"`
	} `json:"steps"`
}

func printSteps(w io.Writer, v stepsView, since string) {
	fmt.Fprintf(w, "%d instances started in the last %s; a policy added steps to %d and skipped steps of %d\n\n", v.Instances, since, v.Adapted.Added, v.Adapted.Skipped)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "STEP\tKIND\tIN PLAN\tADDED\tSKIPPED\tDONE\tFAILED\tIN PROGRESS\tREVIEWS\tP50\tP90\t")
	for _, s := range v.Steps {
		p50, p90 := "—", "—"
		if s.Duration != nil {
			p50, p90 = seconds(s.Duration.P50), seconds(s.Duration.P90)
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%s\t%s\t\n", s.ID, s.Kind, s.InPlan, s.Added, s.Skipped, s.Done, s.Failed, s.InProgress, s.Reviews, p50, p90)
	}
	_ = tw.Flush()
}

// classifyPreview asks the server how the process's classifier reads a
// text (or an instance's input) and prints the answer.
func classifyPreview(ctx context.Context, r *remote, name, text, input string, version int, asJSON bool, w io.Writer) error {
	body := map[string]any{}
	switch {
	case (text == "") == (input == ""):
		return errors.New("give --text or --input, one of the two")
	case text == "-":
		b, err := io.ReadAll(os.Stdin)
		if err != nil {
			return err
		}
		body["text"] = string(b)
	case text != "":
		body["text"] = text
	default:
		var in map[string]any
		if err := json.Unmarshal([]byte(input), &in); err != nil {
			return fmt.Errorf("--input: not a JSON object: %w", err)
		}
		body["input"] = in
	}
	path := "/v1/processes/" + url.PathEscape(name) + "/classify"
	if version != 0 {
		path += "?version=" + strconv.Itoa(version)
	}
	raw, err := r.ask(ctx, path, body, asJSON, w)
	if raw == nil {
		return err
	}
	var v struct {
		ReviewBelow    float64 `json:"review_below"`
		Classification struct {
			Label        string         `json:"label"`
			Confidence   float64        `json:"confidence"`
			Fields       map[string]any `json:"fields"`
			Model        string         `json:"model"`
			Review       bool           `json:"review"`
			Fallback     string         `json:"fallback"`
			Alternatives []struct {
				Label       string  `json:"label"`
				Probability float64 `json:"probability"`
			} `json:"alternatives"`
		} `json:"classification"`
	}
	if err := json.Unmarshal(raw, &v); err != nil {
		return err
	}
	cl := v.Classification
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "label\t%s (confidence %.2f, by %s)\n", cl.Label, cl.Confidence, cl.Model)
	review := "no"
	switch {
	case cl.Fallback != "":
		review = "yes: the LLM failed (" + cl.Fallback + ")"
	case cl.Review:
		review = fmt.Sprintf("yes: confidence under %.2f", v.ReviewBelow)
	}
	fmt.Fprintf(tw, "review\t%s\n", review)
	names := slices.Sorted(maps.Keys(cl.Fields))
	fields := make([]string, 0, len(names))
	for _, n := range names {
		fields = append(fields, fmt.Sprintf("%s=%v", n, cl.Fields[n]))
	}
	if len(fields) > 0 {
		fmt.Fprintf(tw, "fields\t%s\n", strings.Join(fields, " "))
	}
	var alts []string
	for _, a := range cl.Alternatives {
		if a.Label != cl.Label {
			alts = append(alts, fmt.Sprintf("%s %.2f", a.Label, a.Probability))
		}
	}
	if len(alts) > 0 {
		fmt.Fprintf(tw, "or else\t%s\n", strings.Join(alts, ", "))
	}
	return tw.Flush()
}

// exportObservations writes a signal's observations as CSV, oldest first,
// through every page.
func exportObservations(ctx context.Context, r *remote, name, signal, since string, anomalous bool, version int, w io.Writer) error {
	q := url.Values{"limit": {fmt.Sprint(store.MaxObservationPage)}}
	if since != "" {
		q.Set("since", since)
	}
	if anomalous {
		q.Set("anomalous", "true")
	}
	if version != 0 {
		q.Set("version", fmt.Sprint(version))
	}
	cw := csv.NewWriter(w)
	_ = cw.Write([]string{"at", "value", "instance_id", "score", "anomalous", "warming_up", "recurring", "expected", "low", "high", "reason"})
	num := func(x float64) string { return strconv.FormatFloat(x, 'g', -1, 64) }
	for {
		var page struct {
			Observations []signalPoint `json:"observations"`
			Next         string        `json:"next"`
		}
		if err := r.do(ctx, "GET", "/v1/processes/"+url.PathEscape(name)+"/signals/"+url.PathEscape(signal)+"/observations?"+q.Encode(), "", nil, nil, &page); err != nil {
			return err
		}
		for _, o := range page.Observations {
			row := []string{o.At.UTC().Format(time.RFC3339Nano), num(o.Value), o.InstanceID, "", "", "", "", "", "", "", ""}
			if v := o.Verdict; v != nil {
				copy(row[3:], []string{num(v.Score), strconv.FormatBool(v.Anomalous), strconv.FormatBool(v.WarmingUp), strconv.FormatBool(v.Recurring),
					num(v.Expected), num(v.Low), num(v.High), v.Reason})
			}
			if err := cw.Write(row); err != nil {
				return err
			}
		}
		if page.Next == "" {
			break
		}
		q.Set("after", page.Next)
	}
	cw.Flush()
	return cw.Error()
}

// printKPIs prints a process's KPIs overall, per period with starts, per
// version and per live canary.
func printKPIs(w io.Writer, v kpisView, since string) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "\tSTARTED\tIN PROGRESS\tCOMPLETED\tREJECTED\tFAILED\tCANCELED\tERROR RATE\tCYCLE P50\tCYCLE P90\tREVIEWED\t")
	row := func(label string, k kpiFigures) {
		p50, p90 := "-", "-"
		if k.CycleTime != nil {
			p50, p90 = seconds(k.CycleTime.P50), seconds(k.CycleTime.P90)
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%d\t%d\t%.1f%%\t%s\t%s\t%.1f%%\t\n", label, k.Started, k.InProgress, k.Completed, k.Rejected, k.Failed, k.Canceled,
			100*k.ErrorRate, p50, p90, 100*k.ReviewRate)
	}
	row("last "+since, v.Overall)
	for i := len(v.Periods) - 1; i >= 0; i-- {
		if p := v.Periods[i]; p.Started > 0 {
			row("from "+p.Start.Local().Format("2006-01-02 15:04"), p.kpiFigures)
		}
	}
	if len(v.Versions) > 1 {
		for _, ver := range v.Versions {
			row(fmt.Sprintf("v%d", ver.Version), ver.kpiFigures)
		}
	}
	for _, c := range v.Canaries {
		row(fmt.Sprintf("%s v%d (%d%%)", c.PolicyID, c.CanaryVersion, c.Percent), c.Canary)
		row(fmt.Sprintf("%s rest", c.PolicyID), c.Rest)
	}
	_ = tw.Flush()
}

// seconds prints a duration given in seconds, as the web UI does.
func seconds(s float64) string {
	switch {
	case s < 1:
		return fmt.Sprintf("%.0f ms", s*1000)
	case s < 90:
		return fmt.Sprintf("%.0f s", s)
	case s < 90*60:
		return fmt.Sprintf("%.0f min", s/60)
	case s < 48*3600:
		return fmt.Sprintf("%.1f h", s/3600)
	default:
		return fmt.Sprintf("%.1f d", s/86400)
	}
}

// printSignals prints where each signal stands, then the flagged
// observations of each.
func printSignals(w io.Writer, v signalsView, since string) {
	if len(v.Signals) == 0 {
		fmt.Fprintf(w, "%s v%d declares no signals\n", v.Process, v.Version)
		return
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "SIGNAL\tKIND\tLATEST\tAT\tSTATE\tEXPECTED\tUSUAL\tANOMALOUS (%s)\n", since)
	for _, s := range v.Signals {
		kind := s.Kind
		switch {
		case s.Field != "":
			kind += " of " + s.Field
		case s.Step != "":
			kind += " of " + s.Step
		}
		latest, at, state, expected, usual := "-", "-", "no observation yet", "-", "-"
		if p := s.Latest; p != nil {
			latest, at = fmt.Sprintf("%.4g", p.Value), p.At.Local().Format(time.DateTime)
			state = "no verdict"
			if vd := p.Verdict; vd != nil {
				state = stateOf(*vd)
				if !vd.WarmingUp {
					expected, usual = fmt.Sprintf("%.4g", vd.Expected), fmt.Sprintf("%.4g to %.4g", vd.Low, vd.High)
				}
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%d of %d\n", s.Name, kind, latest, at, state, expected, usual, s.Anomalous, s.Observations)
	}
	_ = tw.Flush()
	for _, s := range v.Signals {
		if len(s.Flagged) == 0 {
			continue
		}
		fmt.Fprintf(w, "\n%s, latest flagged:\n", s.Name)
		for _, p := range s.Flagged {
			who := ""
			if p.InstanceID != "" {
				who = " (instance " + p.InstanceID + ")"
			}
			reason := ""
			if p.Verdict != nil {
				reason = ": " + p.Verdict.Reason
			}
			fmt.Fprintf(w, "  %s%s%s\n", p.At.Local().Format(time.DateTime), who, reason)
		}
	}
}

// stateOf names a verdict in a word or two.
func stateOf(v store.SignalVerdict) string {
	switch {
	case v.WarmingUp:
		return "warming up"
	case v.Anomalous:
		return "ANOMALOUS"
	case v.Recurring:
		return "far off, recurring"
	case v.Score >= anomaly.DefaultThreshold:
		return "off, not flagged"
	default:
		return "usual"
	}
}

// evaluation is what `process evaluate` asks for.
type evaluation struct {
	holdout float64
	folds   int
	llm     bool
	limit   int
}

// evaluateClassifier asks the server to evaluate the process's classifier
// (or the LLM) on its own examples, and prints the figures, the weakest
// labels and the surest mistakes.
func evaluateClassifier(ctx context.Context, r *remote, name string, ev evaluation, version int, asJSON bool, w io.Writer) error {
	path := "/v1/processes/" + url.PathEscape(name) + "/classify/evaluate"
	if version != 0 {
		path += "?version=" + strconv.Itoa(version)
	}
	body := map[string]any{"holdout": ev.holdout}
	if ev.folds != 0 {
		body = map[string]any{"folds": ev.folds}
	}
	if ev.llm {
		body["model"] = "llm"
	}
	if ev.limit != 0 {
		body["limit"] = ev.limit
	}
	raw, err := r.ask(ctx, path, body, asJSON, w)
	if raw == nil {
		return err
	}
	var v struct {
		Evaluation classify.Evaluation `json:"evaluation"`
	}
	if err := json.Unmarshal(raw, &v); err != nil {
		return err
	}
	e := v.Evaluation
	if e.Folds > 1 {
		fmt.Fprintf(w, "classifier %s (%s): %d examples, cross-validated over %d folds: each tested once by a model that learned from %d others\n", e.Classifier, e.Model, e.Examples, e.Folds, e.Train)
	} else {
		fmt.Fprintf(w, "classifier %s (%s): %d examples, %d learned from, %d held out (%.0f%% of each label's)\n", e.Classifier, e.Model, e.Examples, e.Train, e.Test, e.Holdout*100)
	}
	if e.LLM != nil {
		fmt.Fprintf(w, "accuracy %.3f, macro-F1 %.3f, accuracy on the surest 80%% %.3f, calibration error %.3f, p99 latency %.0f ms\n",
			e.Accuracy, e.MacroF1, e.SelectiveAccuracy80, e.ECE, e.P99LatencyMS)
		fmt.Fprintf(w, "the LLM was asked about %d held-out texts: %d unanswered (counted wrong), %d from its cache; %d prompt and %d completion tokens\n",
			e.LLM.Asked, e.LLM.Failed, e.LLM.Cached, e.LLM.PromptTokens, e.LLM.CompletionTokens)
	} else {
		fmt.Fprintf(w, "accuracy %.3f, macro-F1 %.3f, accuracy on the surest 80%% %.3f, calibration error %.3f, trained in %.1f s\n",
			e.Accuracy, e.MacroF1, e.SelectiveAccuracy80, e.ECE, e.TrainingSeconds)
	}
	printWeakest(w, e.Labels)
	return printMistakes(w, e.Mistakes)
}

// weakestShown is how many labels printWeakest lists.
const weakestShown = 10

// printWeakest lists the labels a classifier knows least well (the
// lowest F1 first, as a Diagnosis has them) and what their test examples
// were taken for: where to look first.
func printWeakest(w io.Writer, labels []classify.LabelQuality) {
	fmt.Fprintf(w, "\nthe weakest labels (of %d):\n", len(labels))
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "LABEL\tTESTED\tPRECISION\tRECALL\tF1\tTAKEN FOR")
	for _, l := range labels[:min(weakestShown, len(labels))] {
		var taken []string
		for _, c := range l.ConfusedWith {
			taken = append(taken, fmt.Sprintf("%s %d", c.Label, c.Count))
		}
		fmt.Fprintf(tw, "%s\t%d\t%.2f\t%.2f\t%.2f\t%s\n", l.Label, l.Test, l.Precision, l.Recall, l.F1, strings.Join(taken, ", "))
	}
	_ = tw.Flush()
}

// printMistakes lists a classifier's surest mistakes.
func printMistakes(w io.Writer, mistakes []classify.Mistake) error {
	if len(mistakes) == 0 {
		_, err := fmt.Fprintln(w, "\nno mistakes")
		return err
	}
	fmt.Fprintln(w, "\nthe surest mistakes (an example labeled wrong, or two labels that read alike):")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "LABELED\tTAKEN FOR\tCONFIDENCE\tTEXT")
	for _, m := range mistakes {
		fmt.Fprintf(tw, "%s\t%s\t%.2f\t%s\n", m.Label, m.Predicted, m.Confidence, oneLine(m.Text, 70))
	}
	return tw.Flush()
}

// ask posts body to a route that computes an answer (a preview, an
// evaluation), waiting while it goes on, and with asJSON prints the
// server's JSON: it returns the answer to print otherwise (nil when it
// printed it, or failed).
func (r *remote) ask(ctx context.Context, path string, body any, asJSON bool, w io.Writer) (json.RawMessage, error) {
	var raw json.RawMessage
	if err := r.doWaiting(ctx, "POST", path, process.JSON(body), &raw); err != nil {
		return nil, err
	}
	if asJSON {
		_, err := fmt.Fprintln(w, string(raw))
		return nil, err
	}
	return raw, nil
}

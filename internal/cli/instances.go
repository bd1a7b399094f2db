package cli

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"net/url"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/adaptflow/adaptflow/store"
)

const instancesUsage = `usage:
  adaptflow instances list --business-key K [--limit 50] [--after CURSOR]   # K's instances in every process
  adaptflow instances list --process P [--status S] [--business-key K] [--input FIELD=VALUE ...] [--sla on_track|overdue|met|missed] [--since 7d] [--limit 50] [--after CURSOR]
  adaptflow instances export --process P [--status S] [--sla S] [--input FIELD=VALUE ...] [--since 30d] [--limit 500] > instances.csv   (every one that matches, as CSV)
  adaptflow instances show ID
  adaptflow instances cancel ID [--reason TEXT]
  adaptflow instances cancel --process P [--status S] [--sla S] [--input FIELD=VALUE ...] [--since 2h] [--reason TEXT] [--dry-run]   (every one in progress that matches)
  adaptflow instances retry ID [--reason TEXT]
  adaptflow instances retry --process P [--since 2h] [--reason TEXT]   (every failed instance of P)
  adaptflow instances event ID NAME [--id EVENT_ID] [--data JSON]       (send it an event its event steps wait for)
  adaptflow instances start --process P -f FILE [--version N] [--batch 200]  (start the instances FILE lists, a JSON object
                                                                          {"business_key", "input"} a line; - reads stdin)
flags common to all: --server URL ($ADAPTFLOW_SERVER) --api-key KEY ($ADAPTFLOW_API_KEY) --json`

// instanceView is the part of an instance the CLI prints.
type instanceView struct {
	ID          string     `json:"id"`
	Process     string     `json:"process"`
	Version     int        `json:"version"`
	BusinessKey string     `json:"business_key"`
	Status      string     `json:"status"`
	Error       string     `json:"error"`
	Held        string     `json:"held"`
	DueAt       *time.Time `json:"due_at"`
	SLAStatus   string     `json:"sla_status"`
	Plan        []struct {
		ID        string `json:"id"`
		State     string `json:"state"`
		AddedBy   string `json:"added_by"`
		SkippedBy string `json:"skipped_by"`
	} `json:"plan"`
	Reviews []struct {
		ID      string `json:"id"`
		Queue   string `json:"queue"`
		Status  string `json:"status"`
		Verdict string `json:"verdict"`
	} `json:"reviews"`
}

// instancePage is a page of GET /v1/processes/{name}/instances.
type instancePage struct {
	Instances []store.InstanceSummary `json:"instances"`
	Next      string                  `json:"next"`
}

// fieldValues is a repeated flag of FIELD=VALUE.
type fieldValues []string

func (f *fieldValues) String() string { return strings.Join(*f, ",") }

func (f *fieldValues) Set(v string) error {
	if field, _, ok := strings.Cut(v, "="); !ok || field == "" {
		return fmt.Errorf("want FIELD=VALUE (got %q)", v)
	}
	*f = append(*f, v)
	return nil
}

// reasonBody is the body of an action on an instance (cancel, retry):
// nothing without a reason.
func reasonBody(reason string) []byte {
	if reason == "" {
		return nil
	}
	b, _ := json.Marshal(map[string]string{"reason": reason})
	return b
}

// Instances runs `adaptflow instances`: list a process's instances, show
// one, cancel one, or retry a failed one, through a running server's API.
func Instances(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	sub, fs, ok := subcommand("instances", args, []string{"list", "show", "cancel", "retry", "event", "start", "export"}, instancesUsage, stderr)
	if !ok {
		return 2
	}
	rf := addRemoteFlags(fs, "system or engineer")
	asJSON := fs.Bool("json", false, "print the server's JSON")
	processName := fs.String("process", "", "list: the process (required); retry without an ID: retry every failed instance of it")
	status := fs.String("status", "", "list: a status, in_progress, finished or queued")
	businessKey := fs.String("business-key", "", "list: only this business key")
	sla := fs.String("sla", "", "list: only the instances that stand so against their process's SLA: on_track, overdue (running within it, past it), met, missed (ended within it, after it)")
	var inputs fieldValues
	fs.Var(&inputs, "input", "list: only instances whose input has FIELD=VALUE (a top-level string, number or boolean field; repeat for more)")
	since := fs.String("since", "", "list, retry --process: only instances started within this long (7d)")
	limit := fs.Int("limit", 50, "list: instances per page (1 to 500); export: per request")
	after := fs.String("after", "", "list: the cursor the previous page printed")
	dryRun := fs.Bool("dry-run", false, "cancel --process: only list the instances it would cancel")
	reason := fs.String("reason", "", "cancel: why, kept as the instance's error; retry: why, kept with Temporal's reset")
	data := fs.String("data", "", "event: the event's data, a JSON object")
	eventID := fs.String("id", "", "event: tells apart events of one name (a shipment number), for a step that waits for several")
	file := fs.String("f", "", "start: the file of instances to start, a JSON object {\"business_key\", \"input\"} a line (- reads stdin)")
	version := fs.Int("version", 0, "start: the process version of the new instances (default the latest)")
	batch := fs.Int("batch", 200, "start: starts a request (1 to 500; each counts against the key's rate limit, 200 a second with bursts of 400 by default)")
	pos, err := parseFlags(fs, args[1:])
	if err != nil {
		return 2
	}
	bulk := (sub == "retry" || sub == "cancel") && len(pos) == 0 && *processName != ""
	needsID := sub != "list" && sub != "start" && sub != "export" && !bulk
	wantPos := 1 // the instance
	if sub == "event" {
		wantPos = 2 // and the event
	}
	// list --business-key K without --process finds K in every process.
	anyProcess := sub == "list" && *processName == "" && *businessKey != "" && *status == "" && *sla == "" && *since == "" && len(inputs) == 0
	if *rf.key == "" || (needsID && len(pos) != wantPos) || (!needsID && ((*processName == "" && !anyProcess) || len(pos) != 0)) || (sub == "start") != (*file != "") || *batch < 1 || *batch > 500 {
		fmt.Fprintln(stderr, instancesUsage)
		return 2
	}
	r := rf.remote()
	// filter adds the listing's filters the flags give to q.
	filter := func(q url.Values) {
		for k, v := range map[string]string{"status": *status, "business_key": *businessKey, "sla": *sla, "since": *since} {
			if v != "" {
				q.Set(k, v)
			}
		}
		for _, fv := range inputs {
			field, value, _ := strings.Cut(fv, "=")
			q.Set("input."+field, value)
		}
	}
	if bulk && sub == "retry" {
		q := url.Values{"status": {store.InstanceFailed}}
		if *since != "" {
			q.Set("since", *since)
		}
		return retryFailed.run(ctx, r, *processName, q, *reason, false, stdout, stderr)
	}
	if bulk {
		// Those in progress unless --status says otherwise.
		q := url.Values{"status": {store.InstanceInProgress}}
		filter(q)
		return cancelMany.run(ctx, r, *processName, q, *reason, *dryRun, stdout, stderr)
	}
	if sub == "start" {
		return startFile(ctx, r, *processName, *version, *batch, *file, stdout, stderr)
	}
	if sub == "export" {
		q := url.Values{"limit": {fmt.Sprint(*limit)}} // a page per request
		filter(q)
		if err := exportInstances(ctx, r, *processName, q, stdout); err != nil {
			fmt.Fprintf(stderr, "adaptflow instances export: %v\n", err)
			return 1
		}
		return 0
	}
	fail := func(err error) int {
		fmt.Fprintf(stderr, "adaptflow instances %s: %v\n", sub, err)
		return 1
	}
	var raw json.RawMessage
	switch sub {
	case "list":
		q := url.Values{"limit": {fmt.Sprint(*limit)}}
		if anyProcess {
			q.Set("business_key", *businessKey)
			if *after != "" {
				q.Set("after", *after)
			}
			err = r.do(ctx, "GET", "/v1/instances?"+q.Encode(), "", nil, nil, &raw)
			break
		}
		filter(q)
		if *after != "" {
			q.Set("after", *after)
		}
		err = r.do(ctx, "GET", "/v1/processes/"+url.PathEscape(*processName)+"/instances?"+q.Encode(), "", nil, nil, &raw)
	case "show":
		err = r.do(ctx, "GET", "/v1/instances/"+url.PathEscape(pos[0]), "", nil, nil, &raw)
	case "cancel", "retry":
		err = r.do(ctx, "POST", "/v1/instances/"+url.PathEscape(pos[0])+"/"+sub, "application/json", reasonBody(*reason), nil, &raw)
	case "event":
		body := map[string]any{"name": pos[1]}
		if *eventID != "" {
			body["id"] = *eventID
		}
		if *data != "" {
			var d map[string]any
			if err := json.Unmarshal([]byte(*data), &d); err != nil {
				return fail(fmt.Errorf("--data: not a JSON object: %w", err))
			}
			body["data"] = d
		}
		b, _ := json.Marshal(body)
		err = r.do(ctx, "POST", "/v1/instances/"+url.PathEscape(pos[0])+"/events", "application/json", b, nil, &raw)
	}
	if err != nil {
		return fail(err)
	}
	if *asJSON {
		fmt.Fprintln(stdout, string(raw))
		return 0
	}
	if sub == "event" {
		var kept struct {
			Name string    `json:"name"`
			ID   string    `json:"id"`
			At   time.Time `json:"at"`
			By   string    `json:"by"`
		}
		if err := json.Unmarshal(raw, &kept); err != nil {
			return fail(err)
		}
		name := kept.Name
		if kept.ID != "" {
			name += " " + kept.ID
		}
		fmt.Fprintf(stdout, "%s: event %s received %s from %s\n", pos[0], name, kept.At.Local().Format(time.DateTime), kept.By)
		return 0
	}
	if sub == "list" {
		var page instancePage
		if err := json.Unmarshal(raw, &page); err != nil {
			return fail(err)
		}
		printInstances(stdout, page.Instances, page.Next)
		return 0
	}
	var inst instanceView
	if err := json.Unmarshal(raw, &inst); err != nil {
		return fail(err)
	}
	printInstance(stdout, inst)
	if sub == "show" {
		// Its webhooks given up, which wait for a redelivery.
		var hooks struct {
			Webhooks []store.UndeliveredWebhook `json:"webhooks"`
		}
		q := url.Values{"instance_id": {inst.ID}, "status": {store.WebhookPending}}
		if err := r.do(ctx, "GET", "/v1/webhooks/undelivered?"+q.Encode(), "", nil, nil, &hooks); err == nil {
			for _, w := range hooks.Webhooks {
				fmt.Fprintf(stdout, "  webhook %s to %s not delivered (%d attempts, %s): adaptflow webhooks redeliver %d\n", w.Event, w.URL, w.Attempts, w.Error, w.ID)
			}
		}
	}
	return 0
}

// bulkAction is an action posted to many instances of a process, and
// how its outcome reads.
type bulkAction struct {
	action, done, refused, what string
}

var (
	// retryFailed retries every failed instance of a process (started
	// within since, when given), one after the other: after an outage of a
	// partner, say.
	retryFailed = bulkAction{action: "retry", done: "retried", refused: "not retried", what: "failed instances"}
	// cancelMany cancels every instance of a process a listing keeps
	// (after an incident: the orders a pause held, say).
	cancelMany = bulkAction{action: "cancel", done: "canceled", refused: "not canceled", what: "instances"}
)

// run posts the action to every instance of a process the listing query
// q keeps, one after the other, and says how each went; with dryRun it
// only lists them. It fails when any did not go through.
func (b bulkAction) run(ctx context.Context, r *remote, processName string, q url.Values, reason string, dryRun bool, stdout, stderr io.Writer) int {
	ids, err := listIDs(ctx, r, processName, q)
	if err != nil {
		fmt.Fprintf(stderr, "adaptflow instances %s: %v\n", b.action, err)
		return 1
	}
	if dryRun {
		for _, id := range ids {
			fmt.Fprintln(stdout, id)
		}
		fmt.Fprintf(stdout, "would %s %d %s of %s\n", b.action, len(ids), b.what, processName)
		return 0
	}
	failed, held := each(ctx, r, ids, b.action, reason, b.refused, stdout)
	waiting := ""
	if held > 0 {
		waiting = fmt.Sprintf(" (%d held: queued under the concurrency limit, or paused)", held)
	}
	fmt.Fprintf(stdout, "%s %d of %d %s of %s%s\n", b.done, len(ids)-failed, len(ids), b.what, processName, waiting)
	if failed > 0 {
		return 1
	}
	return 0
}

// each posts action (retry, cancel) with the reason to every instance of
// ids, one after the other, says how each went, and returns how many did
// not go through, and how many of those that did wait (held: a retry
// queued under the concurrency limit, say).
func each(ctx context.Context, r *remote, ids []string, action, reason, refused string, stdout io.Writer) (failed, waiting int) {
	body := reasonBody(reason)
	for _, id := range ids {
		var inst instanceView
		if err := r.do(ctx, "POST", "/v1/instances/"+url.PathEscape(id)+"/"+action, "application/json", body, nil, &inst); err != nil {
			failed++
			fmt.Fprintf(stdout, "%s: %s: %v\n", id, refused, err)
			continue
		}
		held := ""
		if inst.Held != "" {
			held = " (held: " + inst.Held + ")"
			waiting++
		}
		fmt.Fprintf(stdout, "%s (business key %s): %s%s\n", id, inst.BusinessKey, inst.Status, held)
	}
	return failed, waiting
}

// listIDs lists the ids of every instance of a process the listing query
// q keeps, newest first, page after page.
func listIDs(ctx context.Context, r *remote, processName string, q url.Values) ([]string, error) {
	q.Set("limit", fmt.Sprint(store.MaxInstancePage))
	var ids []string
	err := eachInstance(ctx, r, processName, q, func(in store.InstanceSummary) error {
		ids = append(ids, in.ID)
		return nil
	})
	return ids, err
}

// eachInstance calls fn with every instance of a process the listing
// query q keeps, newest first, reading a page (q's limit) at a time.
func eachInstance(ctx context.Context, r *remote, processName string, q url.Values, fn func(store.InstanceSummary) error) error {
	for {
		var page instancePage
		if err := r.do(ctx, "GET", "/v1/processes/"+url.PathEscape(processName)+"/instances?"+q.Encode(), "", nil, nil, &page); err != nil {
			return err
		}
		for _, in := range page.Instances {
			if err := fn(in); err != nil {
				return err
			}
		}
		if page.Next == "" {
			return nil
		}
		q.Set("after", page.Next)
	}
}

func printInstances(w io.Writer, list []store.InstanceSummary, next string) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tBUSINESS KEY\tVERSION\tSTATUS\tSTARTED\tTOOK\tSLA")
	for _, in := range list {
		took := "-"
		if in.FinishedAt != nil {
			took = in.FinishedAt.Sub(in.CreatedAt).Round(time.Millisecond).String()
		}
		sla := "-"
		if in.SLAStatus != "" {
			sla = in.SLAStatus
		}
		fmt.Fprintf(tw, "%s\t%s\tv%d\t%s\t%s\t%s\t%s\n", in.ID, in.BusinessKey, in.Version, in.Status, in.CreatedAt.Local().Format(time.DateTime), took, sla)
	}
	_ = tw.Flush()
	if next != "" {
		fmt.Fprintf(w, "more: --after %s\n", next)
	}
}

func printInstance(w io.Writer, in instanceView) {
	fmt.Fprintf(w, "%s (%s v%d, business key %s): %s\n", in.ID, in.Process, in.Version, in.BusinessKey, in.Status)
	if in.Error != "" {
		fmt.Fprintf(w, "  error: %s\n", in.Error)
	}
	if in.Held != "" {
		fmt.Fprintf(w, "  held: %s\n", in.Held)
	}
	if in.DueAt != nil {
		fmt.Fprintf(w, "  due %s by its SLA", in.DueAt.Local().Format(time.DateTime))
		if in.SLAStatus != "" {
			fmt.Fprintf(w, ": %s", strings.ReplaceAll(in.SLAStatus, "_", " "))
		}
		fmt.Fprintln(w)
	}
	for _, p := range in.Plan {
		note := ""
		switch {
		case p.AddedBy != "":
			note = " (added by " + p.AddedBy + ")"
		case p.SkippedBy != "":
			note = " (skipped by " + p.SkippedBy + ")"
		}
		fmt.Fprintf(w, "  step %s: %s%s\n", p.ID, p.State, note)
	}
	for _, rv := range in.Reviews {
		verdict := ""
		if rv.Verdict != "" {
			verdict = ", " + rv.Verdict
		}
		fmt.Fprintf(w, "  review %s in %s: %s%s\n", rv.ID, rv.Queue, rv.Status, verdict)
	}
}

// exportInstances writes, as CSV, every instance of a process the listing
// query q keeps, newest first, a page at a time.
func exportInstances(ctx context.Context, r *remote, processName string, q url.Values, w io.Writer) error {
	cw := csv.NewWriter(w)
	_ = cw.Write([]string{"id", "business_key", "version", "status", "created_by", "created_at", "finished_at", "cycle_seconds", "due_at", "sla_status"})
	stamp := func(t *time.Time) string {
		if t == nil {
			return ""
		}
		return t.UTC().Format(time.RFC3339Nano)
	}
	err := eachInstance(ctx, r, processName, q, func(in store.InstanceSummary) error {
		cycle := ""
		if in.FinishedAt != nil {
			cycle = strconv.FormatFloat(in.FinishedAt.Sub(in.CreatedAt).Seconds(), 'f', 3, 64)
		}
		return cw.Write([]string{in.ID, in.BusinessKey, strconv.Itoa(in.Version), in.Status, in.CreatedBy, stamp(&in.CreatedAt), stamp(in.FinishedAt), cycle, stamp(in.DueAt), in.SLAStatus})
	})
	if err != nil {
		return err
	}
	cw.Flush()
	return cw.Error()
}

package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"

	"github.com/adaptflow/adaptflow/store"
)

const webhooksUsage = `usage:
  adaptflow webhooks list [--process P] [--instance ID] [--status pending|redelivered|all] [--limit N] [--after CURSOR] [--json]
  adaptflow webhooks show ID [--json]
  adaptflow webhooks redeliver ID
  adaptflow webhooks redeliver --process P [--instance ID] [--dry-run]
                              send every pending webhook of P again, oldest first
Through a running server's API (--server, --api-key: a system or engineer key).`

// Webhooks runs `adaptflow webhooks`: the webhooks adaptflow gave up
// delivering, and their redelivery, through a running server's API.
func Webhooks(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	sub, fs, ok := subcommand("webhooks", args, []string{"list", "show", "redeliver"}, webhooksUsage, stderr)
	if !ok {
		return 2
	}
	rf := addRemoteFlags(fs, "system or engineer")
	asJSON := fs.Bool("json", false, "print the server's JSON")
	processName := fs.String("process", "", "list: only this process; redeliver without an ID: every pending webhook of it")
	instance := fs.String("instance", "", "list, redeliver --process: only this instance's")
	status := fs.String("status", store.WebhookPending, "list: pending, redelivered or all")
	limit := fs.Int("limit", 100, "list: webhooks per page (1 to 500)")
	after := fs.String("after", "", "list: the cursor the previous page printed")
	dryRun := fs.Bool("dry-run", false, "redeliver --process: only list what it would send")
	pos, err := parseFlags(fs, args[1:])
	if err != nil {
		return 2
	}
	bulk := sub == "redeliver" && len(pos) == 0 && *processName != ""
	needsID := sub != "list" && !bulk
	if *rf.key == "" || (needsID && len(pos) != 1) || (!needsID && len(pos) != 0) {
		fmt.Fprintln(stderr, webhooksUsage)
		return 2
	}
	r := rf.remote()
	fail := func(err error) int {
		fmt.Fprintf(stderr, "adaptflow webhooks %s: %v\n", sub, err)
		return 1
	}
	filter := func(q url.Values) url.Values {
		for k, v := range map[string]string{"process": *processName, "instance_id": *instance} {
			if v != "" {
				q.Set(k, v)
			}
		}
		return q
	}
	switch {
	case bulk:
		return redeliverAll(ctx, r, filter(url.Values{"status": {store.WebhookPending}}), *processName, *dryRun, stdout, stderr)
	case sub == "list":
		q := filter(url.Values{"status": {*status}, "limit": {strconv.Itoa(*limit)}})
		if *after != "" {
			q.Set("after", *after)
		}
		var page struct {
			Webhooks []store.UndeliveredWebhook `json:"webhooks"`
			Next     string                     `json:"next"`
		}
		var raw json.RawMessage
		if err := r.do(ctx, "GET", "/v1/webhooks/undelivered?"+q.Encode(), "", nil, nil, &raw); err != nil {
			return fail(err)
		}
		if *asJSON {
			_, _ = fmt.Fprintln(stdout, string(raw))
			return 0
		}
		if err := json.Unmarshal(raw, &page); err != nil {
			return fail(err)
		}
		for _, w := range page.Webhooks {
			printWebhookLine(stdout, w)
		}
		if page.Next != "" {
			fmt.Fprintf(stdout, "more: --after %s\n", page.Next)
		}
		return 0
	}
	path := "/v1/webhooks/undelivered/" + url.PathEscape(pos[0])
	method := "GET"
	if sub == "redeliver" {
		method, path = "POST", path+"/redeliver"
	}
	var raw json.RawMessage
	if err := r.do(ctx, method, path, "", nil, nil, &raw); err != nil {
		return fail(err)
	}
	if *asJSON || sub == "show" {
		var w store.UndeliveredWebhook
		if err := json.Unmarshal(raw, &w); err != nil || *asJSON {
			_, _ = fmt.Fprintln(stdout, string(raw))
			return 0
		}
		printWebhookLine(stdout, w)
		fmt.Fprintf(stdout, "idempotency key: %s\nlast error: %s\nbody: %s\n", w.Key, w.Error, w.Body)
		return 0
	}
	fmt.Fprintf(stdout, "redelivered webhook %s\n", pos[0])
	return 0
}

// printWebhookLine prints one webhook on a line.
func printWebhookLine(w io.Writer, h store.UndeliveredWebhook) {
	state := "pending"
	if h.RedeliveredAt != nil {
		state = "redelivered " + h.RedeliveredAt.Format("2006-01-02 15:04:05") + " by " + h.RedeliveredBy
	}
	fmt.Fprintf(w, "%d\t%s\t%s\t%s\t%s\t%d attempts, last failed %s\t%s\n", h.ID, h.Process, h.InstanceID, h.Event, h.URL, h.Attempts,
		h.FailedAt.Format("2006-01-02 15:04:05"), state)
}

// redeliverAll sends every pending webhook q selects again, oldest first
// (the order the receiver should have had them in), and stops at the
// first the receiver refuses: the later ones would most likely fail the
// same way, and sent out of order.
func redeliverAll(ctx context.Context, r *remote, q url.Values, processName string, dryRun bool, stdout, stderr io.Writer) int {
	var pending []store.UndeliveredWebhook
	q.Set("limit", strconv.Itoa(store.MaxWebhookPage))
	for {
		var page struct {
			Webhooks []store.UndeliveredWebhook `json:"webhooks"`
			Next     string                     `json:"next"`
		}
		if err := r.do(ctx, "GET", "/v1/webhooks/undelivered?"+q.Encode(), "", nil, nil, &page); err != nil {
			fmt.Fprintf(stderr, "adaptflow webhooks redeliver: %v\n", err)
			return 1
		}
		pending = append(pending, page.Webhooks...)
		if page.Next == "" {
			break
		}
		q.Set("after", page.Next)
	}
	sent := 0
	for i := len(pending) - 1; i >= 0; i-- { // the listing is newest first
		w := pending[i]
		if dryRun {
			printWebhookLine(stdout, w)
			continue
		}
		err := r.do(ctx, "POST", "/v1/webhooks/undelivered/"+strconv.FormatInt(w.ID, 10)+"/redeliver", "", nil, nil, nil)
		if isStatus(err, http.StatusConflict) { // redelivered meanwhile, by someone else
			continue
		}
		if err != nil {
			if isStatus(err, http.StatusBadGateway) {
				fmt.Fprintf(stderr, "adaptflow webhooks redeliver: webhook %d (%s of instance %s) was refused, so the %d after it were not sent: %v\n",
					w.ID, w.Event, w.InstanceID, i, err)
			} else {
				fmt.Fprintf(stderr, "adaptflow webhooks redeliver: webhook %d: %v\n", w.ID, err)
			}
			fmt.Fprintf(stdout, "redelivered %d of %d pending webhooks of %s\n", sent, len(pending), processName)
			return 1
		}
		sent++
	}
	if dryRun {
		fmt.Fprintf(stdout, "would redeliver %d pending webhooks of %s\n", len(pending), processName)
		return 0
	}
	fmt.Fprintf(stdout, "redelivered %d of %d pending webhooks of %s\n", sent, len(pending), processName)
	return 0
}

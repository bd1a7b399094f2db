package app_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/adaptflow/adaptflow/internal/app"
)

// browser is a headless Chromium tab on the web UI of a running dev.
type browser struct {
	t    *testing.T
	ctx  context.Context
	base string
}

// newBrowser starts headless Chromium. Without it the test fails, saying
// how to get it: scripts/test.sh installs it.
func newBrowser(t *testing.T, base string) *browser {
	t.Helper()
	if !slices.ContainsFunc([]string{"chromium", "chromium-browser", "google-chrome"}, func(name string) bool {
		_, err := exec.LookPath(name)
		return err == nil
	}) {
		t.Fatal("Chromium is missing: the web UI test drives it headless (scripts/test.sh installs it: apt-get install chromium)")
	}
	ctx, cancel := chromedp.NewContext(context.Background(), chromedp.WithLogf(func(string, ...any) {}),
		chromedp.WithAllocatorOptions(chromedp.NoSandbox, chromedp.DisableGPU,
			chromedp.Flag("disable-background-networking", true), chromedp.WindowSize(1280, 1000),
			chromedp.UserDataDir(filepath.Join(t.TempDir(), "chromium"))))
	t.Cleanup(cancel)
	ctx, stop := context.WithTimeout(ctx, 3*time.Minute)
	t.Cleanup(stop)
	return &browser{t: t, ctx: ctx, base: base}
}

func (b *browser) do(what string, steps ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	if err := chromedp.Do(b.ctx, steps...); err != nil {
		b.t.Fatalf("%s: %v\npage: %s", what, err, b.text("body"))
	}
}

// text is what the element shows, or "" when there is none.
func (b *browser) text(css string) string {
	q, _ := json.Marshal(css)
	s, err := chromedp.Run(b.ctx, chromedp.Evaluate[string](`document.querySelector(`+string(q)+`)?.innerText ?? ""`))
	if err != nil {
		return "(" + err.Error() + ")"
	}
	return s
}

// waitText waits until the element's text holds want. It reads the page
// again and again, so a page that is still loading is read once it has.
func (b *browser) waitText(css, want string) {
	b.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		got := b.text(css)
		if strings.Contains(got, want) {
			return
		}
		if time.Now().After(deadline) {
			b.t.Fatalf("%q never showed %q; it shows:\n%s", css, want, got)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (b *browser) signIn(key string) {
	b.t.Helper()
	b.do("sign in",
		chromedp.Navigate(b.base+"/"),
		chromedp.WaitVisible(chromedp.ID("api-key")),
		chromedp.SendKeys(chromedp.ID("api-key"), key),
		chromedp.Click(chromedp.CSS("form.login button")))
}

func (b *browser) open(hash, css, want string) {
	b.t.Helper()
	// Through a blank page, so the same address loads afresh.
	b.do("open "+hash, chromedp.Navigate("about:blank"), chromedp.Navigate(b.base+"/ui/#"+hash))
	b.waitText(css, want)
}

// cells are the texts of the cells of the first row matching css.
func (b *browser) cells(css string) []string {
	b.t.Helper()
	q, _ := json.Marshal(css)
	got, err := chromedp.Run(b.ctx, chromedp.Evaluate[[]string](`[...(document.querySelector(`+string(q)+`)?.cells ?? [])].map((c) => c.innerText.trim())`))
	if err != nil {
		b.t.Fatalf("cells of %s: %v", css, err)
	}
	return got
}

// clickText clicks the first element matching css whose text is text.
func (b *browser) clickText(css, text string) {
	b.t.Helper()
	q, _ := json.Marshal(css)
	w, _ := json.Marshal(text)
	ok, err := chromedp.Run(b.ctx, chromedp.Evaluate[bool](`(() => {
		const el = [...document.querySelectorAll(`+string(q)+`)].find((e) => e.innerText.trim() === `+string(w)+`);
		if (!el) return false;
		el.click();
		return true;
	})()`))
	if err != nil || !ok {
		b.t.Fatalf("no %s reading %q to click (%v); page:\n%s", css, text, err, b.text("body"))
	}
}

// TestWebUI drives the web UI in headless Chromium as a reviewer and as an
// engineer would: the inbox, a review decided, the instance going on, its
// decisions explained, the KPIs, and a policy taken out of force and back.
func TestWebUI(t *testing.T) {
	var banner bytes.Buffer
	d := startDev(t, t.TempDir(), "", func(o *app.Options) { o.Out = &banner })
	if want := "adaptflow: web UI on " + d.base + "/ui/"; !strings.Contains(banner.String(), want) {
		t.Fatalf("adaptflow dev printed %q, want %q", banner.String(), want)
	}
	reviewer, engineer := d.newKey("reviewer"), d.newKey("engineer")
	// Markup in an applicant's message must show as text, never run.
	message := `our company needs a business account with two directors <img src=x onerror="document.title='owned'">`
	id := d.start("customer-onboarding", "ui-1", map[string]any{"applicant": "Ann", "message": message})
	d.waitStatus(id, "waiting_review")

	b := newBrowser(t, d.base)
	b.do("open the UI", chromedp.Navigate(d.base+"/"), chromedp.WaitVisible(chromedp.ID("api-key")))
	b.do("sign in with a wrong key",
		chromedp.SendKeys(chromedp.ID("api-key"), "af_not-a-key"),
		chromedp.Click(chromedp.CSS("form.login button")))
	b.waitText("#flash", "not accepted")

	// A reviewer lands on the inbox, and sees no engineer screens.
	b.signIn(reviewer)
	b.waitText("main h1", "Inbox")
	b.waitText("main > table", "Business account: check the company's registration and directors")
	// Above it, where each queue stands.
	b.waitText("section.queues tbody", "kyc")
	if row := b.cells("section.queues tbody tr"); len(row) != 10 || row[0] != "kyc" || row[1] != "1" || row[2] != "0" || row[4] != "0" || row[7] != "0" {
		t.Fatalf("the kyc queue's row: %q", row)
	}
	if nav := b.text("#nav"); strings.Contains(nav, "Processes") || strings.Contains(nav, "Instances") {
		t.Fatalf("a reviewer's menu: %q", nav)
	}
	// "Take next" claims the queue's first open review and opens it.
	b.open("/inbox?queue=kyc", "main > table", "business_kyc")
	b.clickText("main button", "Take next")
	b.waitText("main h1", "Review: customer-onboarding / business_kyc")
	b.waitText("main .card", "claimed by reviewer-1")
	b.waitText("pre.text", `<img src=x onerror="document.title='owned'">`)
	if n, err := chromedp.Run(b.ctx, chromedp.Evaluate[int](`document.querySelectorAll("main img").length`)); err != nil || n != 0 {
		t.Fatalf("the message's markup became %d element(s) (%v)", n, err)
	}
	b.waitText("main", "Similar past cases")

	b.clickText("main button", "Release")
	b.waitText("#flash", "Released.")
	b.waitText("main .card", "open")
	b.clickText("main button", "Claim")
	b.waitText("main .card", "claimed by reviewer-1")
	// The reviewer corrects the model: a sole trader, not a company.
	b.do("correct the label with a comment",
		chromedp.Click(chromedp.CSS(`input[name=verdict][value=correct]`)),
		chromedp.SetValue(chromedp.CSS(`select[name=label]`), "personal_account"),
		chromedp.SendKeys(chromedp.CSS(`textarea[name=comment]`), "sole trader"))
	b.clickText("main button", "Submit decision")
	b.waitText("#flash", "the classifier learned “personal_account” from it")
	b.waitText("main .card", "approve by reviewer-1: corrected to personal_account. sole trader")
	inst := d.waitStatus(id, "completed")
	if r := inst["reviews"].([]any)[0].(map[string]any); r["reviewer"] != "reviewer-1" || !strings.HasSuffix(r["comment"].(string), "sole trader") {
		t.Fatalf("the instance's review: %v", r)
	}
	b.open("/inbox?queue=kyc", "main h1", "Inbox")
	b.clickText("main button", "Take next")
	b.waitText("#flash", "Nothing open to take here.")
	if row := b.cells("section.queues tbody tr"); len(row) != 10 || row[0] != "kyc" || row[1] != "0" || row[5] != "—" || row[7] != "1" || row[9] == "—" {
		t.Fatalf("the kyc queue's row after the verdict: %q", row)
	}
	ex := d.expect(d.call("GET", "/v1/classifiers/onboarding-requests/examples", reviewer, ""), http.StatusOK)
	if xs := ex.body["examples"].([]any); len(xs) != 1 || xs[0].(map[string]any)["label"] != "personal_account" || xs[0].(map[string]any)["source"] != "review:reviewer-1" {
		t.Fatalf("the correction is no example: %s", ex.raw)
	}
	if title, _ := chromedp.Run(b.ctx, chromedp.Title()); title == "owned" {
		t.Fatal("the message's markup ran")
	}

	// Two reconciliations stopped for the same late stock take: the
	// reviewer ticks both in the inbox and approves them at once.
	var bulk, bulkReviews []string
	for i := range 2 {
		bid := d.start("inventory-reconciliation", fmt.Sprint("ui-bulk-", i), map[string]any{"store_id": fmt.Sprint("u", i), "sku": "U", "pos_count": 5, "erp_count": 50})
		d.waitStatus(bid, "waiting_review")
		bulk, bulkReviews = append(bulk, bid), append(bulkReviews, d.reviewOf(reviewer, bid))
	}
	b.open("/inbox?queue=inventory", "main > table", "inventory-reconciliation")
	for _, rid := range bulkReviews {
		b.do("tick a review", chromedp.Click(chromedp.CSS(`input[name=pick][value="`+rid+`"]`)))
	}
	b.do("give a reason", chromedp.SendKeys(chromedp.CSS(`input[name=bulk-reason]`), "late stock take"))
	b.clickText("main button", "Approve selected")
	b.waitText("#flash", "2 approved.")
	b.waitText("main > table", "Nothing here.")
	for _, bid := range bulk {
		if r := d.waitStatus(bid, "completed")["reviews"].([]any)[0].(map[string]any); r["reviewer"] != "reviewer-1" || r["comment"] != "late stock take" {
			t.Fatalf("a review approved in bulk: %v", r)
		}
	}

	// A review that belongs to another desk moves to its queue.
	mid := d.start("inventory-reconciliation", "ui-move", map[string]any{"store_id": "m1", "sku": "M", "pos_count": 5, "erp_count": 50})
	d.waitStatus(mid, "waiting_review")
	rid := d.reviewOf(reviewer, mid)
	b.open("/reviews/"+rid, "main h1", "Review")
	b.do("name the queue", chromedp.SendKeys(chromedp.CSS(`input[name=queue]`), "loss-prevention"))
	b.do("say why", chromedp.SendKeys(chromedp.CSS(`input[name=note]`), "shrinkage pattern"))
	b.clickText("main button", "Move")
	b.waitText("#flash", "Moved to queue loss-prevention.")
	b.waitText("main .card", "from inventory to loss-prevention by reviewer-1")
	b.waitText("main .card", ": shrinkage pattern")
	b.open("/inbox?queue=loss-prevention", "main > table", "inventory-reconciliation")

	// An engineer lands on the processes, and follows the instance's
	// decisions, the KPIs and a policy.
	b.clickText("#who button", "Sign out")
	b.waitText("main h1", "Sign in")
	b.signIn(engineer)
	b.waitText("main h1", "Processes")
	b.waitText("main table", "customer-onboarding")
	if nav := b.text("#nav"); strings.Contains(nav, "Inbox") {
		t.Fatalf("an engineer's menu: %q", nav)
	}

	b.open("/instances?process=customer-onboarding&status=finished", "main table", "ui-1")
	b.clickText("main tbody a", "ui-1")
	b.waitText("main h1", "customer-onboarding — ui-1")
	b.waitText("main .card", "completed")
	b.waitText("main", "add business_kyc before open_account (business-account-kyc)")
	b.clickText("main details summary", firstLine(b, "main details:nth-of-type(2) summary"))
	b.waitText("main details[open] pre", "business-account-kyc")

	// An engineer cancels an instance stuck in review.
	stuck := d.start("inventory-reconciliation", "ui-stuck", map[string]any{"store_id": "s1", "sku": "Q", "pos_count": 1, "erp_count": 80})
	d.waitStatus(stuck, "waiting_review")
	b.open("/instances/"+stuck, "main h1", "inventory-reconciliation — ui-stuck")
	b.do("cancel it", chromedp.SendKeys(chromedp.CSS(`input[name=reason]`), "recount scheduled"),
		chromedp.Evaluate[chromedp.Void](`window.confirm = () => true`))
	b.clickText("main button", "Cancel instance")
	b.waitText("#flash", "ui-stuck is canceled.")
	b.waitText("main .card", "canceled by engineer-1: recount scheduled")
	if inst := d.waitStatus(stuck, "canceled"); inst["reviews"].([]any)[0].(map[string]any)["status"] != "canceled" {
		t.Fatalf("after the cancel: %v", inst)
	}

	// An engineer retries an instance whose call to a partner failed, once
	// the partner is back.
	partnerDown, partner := flakyPartner(t)
	d.expect(call(t, d.base, "POST", "/v1/processes", adminKey, "application/yaml", `
name: partner-sync
version: 1
input: {properties: {amount: {type: number}}}
signals: [{name: amount, kind: value, field: amount}]
steps:
  - {id: push, kind: http, retries: 0, http: {method: POST, url: "`+partner+`"}}
`), http.StatusCreated)
	failed := d.start("partner-sync", "ui-sync", map[string]any{"amount": 120})
	d.waitStatus(failed, "failed")
	b.open("/instances/"+failed, "main .card", "partner is down")
	partnerDown.Store(false)
	b.do("retry it", chromedp.SendKeys(chromedp.CSS(`input[name=reason]`), "partner is back"),
		chromedp.Evaluate[chromedp.Void](`window.confirm = () => true`))
	b.clickText("main button", "Retry from the failed step")
	b.waitText("#flash", "ui-sync runs again")
	d.waitStatus(failed, "completed")
	b.open("/instances/"+failed, "main .card", "completed")
	// After another outage, the failed ones are retried from their list.
	partnerDown.Store(true)
	more := []string{d.start("partner-sync", "ui-sync-2", map[string]any{"amount": 80}), d.start("partner-sync", "ui-sync-3", map[string]any{"amount": 95})}
	for _, id := range more {
		d.waitStatus(id, "failed")
	}
	partnerDown.Store(false)
	b.open("/instances?process=partner-sync&status=failed", "main table", "ui-sync-3")
	b.do("confirm", chromedp.Evaluate[chromedp.Void](`window.confirm = () => true`))
	b.clickText("main button", "Retry these 2 from their failed steps")
	b.waitText("#flash", "Retried 2 of 2.")
	for _, id := range more {
		d.waitStatus(id, "completed")
	}
	// Under a concurrency limit with no slot free, a retry is queued; the
	// page says so, and withdraws it.
	d.expect(call(t, d.base, "POST", "/v1/processes", adminKey, "application/yaml", `
name: partner-queue
version: 1
concurrency: 1
steps:
  - {id: push, kind: http, retries: 0, http: {method: POST, url: "`+partner+`"}}
  - {id: check, kind: review, review: {queue: ops}}
`), http.StatusCreated)
	partnerDown.Store(true)
	waiting := d.start("partner-queue", "ui-queue-1", map[string]any{})
	d.waitStatus(waiting, "failed")
	partnerDown.Store(false)
	d.waitStatus(d.start("partner-queue", "ui-queue-2", map[string]any{}), "waiting_review")
	b.open("/instances/"+waiting, "main .card", "partner is down")
	b.do("retry it", chromedp.Evaluate[chromedp.Void](`window.confirm = () => true`))
	b.clickText("main button", "Retry from the failed step")
	b.waitText("#flash", "The retry of ui-queue-1 is queued")
	b.waitText("main .card", "its retry (retried by engineer-1) is queued")
	b.clickText("main button", "Withdraw the queued retry")
	b.waitText("#flash", "The retry of ui-queue-1 is withdrawn.")
	if inst := d.call("GET", "/v1/instances/"+waiting, adminKey, ""); inst.body["status"] != "failed" || inst.body["held"] != nil {
		t.Fatalf("after the queued retry was withdrawn: %s", inst.raw)
	}
	// The list filters by a field of the input.
	b.open("/instances?process=partner-sync", "main table", "ui-sync-2")
	b.do("filter by amount", chromedp.SetValue(chromedp.CSS(`input[name=input]`), "amount=95"))
	b.clickText("main form button", "List")
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		txt := b.text("main table")
		if strings.Contains(txt, "ui-sync-3") && !strings.Contains(txt, "ui-sync-2") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("filtered by amount=95:\n%s", txt)
		}
	}

	// A process with an SLA: the list filters by where instances stand
	// against it, an instance says when it is due, and the process's page
	// how many met it.
	d.expect(call(t, d.base, "POST", "/v1/processes", engineer, "application/yaml", "name: quick\nversion: 1\nsla: 1h\nsteps: [{id: a, kind: task, task: noop}]\n"), http.StatusCreated)
	quick := d.start("quick", "ui-quick", map[string]any{})
	d.waitStatus(quick, "completed")
	b.open("/instances?process=quick", "main table", "ui-quick")
	b.do("filter by the SLA", chromedp.SetValue(chromedp.CSS(`select[name=sla]`), "met"))
	b.clickText("main form button", "List")
	b.waitText("main table", "met")
	b.open("/instances/"+quick, "main .card", "Due")
	b.clickText("main details.timeline summary", "5 moments, in the order they happened") // started, decision, step started and done, ended
	b.waitText("main details.timeline[open] table", "ended completed after")
	b.waitText("main .card", "met")
	b.open("/processes/quick", "main .tiles", "met the SLA (0 running late)")
	b.waitText("main .tiles", "100")

	// The process's page pauses it (its new instances held) and resumes it.
	b.open("/processes/quick", "main .tiles", "started")
	b.do("accept the confirmation", chromedp.Evaluate[chromedp.Void](`window.confirm = () => true`))
	b.clickText("main button", "Pause the process")
	b.waitText("#flash", "quick is paused")
	b.waitText("main .card.paused", "Its new instances are stored and held")
	b.open("/processes", "main table", "quick")
	if row := b.text("main table"); !strings.Contains(row, "quick paused") {
		t.Fatalf("the processes list while quick is paused:\n%s", row)
	}
	b.open("/processes/quick", "main .card.paused", "held")
	held := d.call("POST", "/v1/processes/quick/instances", d.newKey("system"), `{"business_key":"ui-held","input":{}}`)
	if held.status != http.StatusCreated || held.body["held"] == nil {
		t.Fatalf("a start while paused: %s", held.raw)
	}
	// Its page says why it has not started.
	b.open("/instances/"+held.body["id"].(string), "main .card", "process quick is paused")
	// Going on from the instance's page before it has loaded: that page
	// neither renders over the process's nor leaves its periodic refresh
	// (every 5 s while the instance runs) running on it, which drew the
	// page again and lost what was on it (an evaluation's results, say).
	b.open("/processes", "main table", "quick")
	b.do("leave the instance's page at once", chromedp.Evaluate[chromedp.Void](`location.hash = "#/instances/`+held.body["id"].(string)+`"; setTimeout(() => { location.hash = "#/processes/quick"; }, 0)`))
	b.waitText("main .card.paused", "held")
	b.do("mark the page", chromedp.Evaluate[chromedp.Void](`document.querySelector("main .card.paused").dataset.mark = "kept"`))
	time.Sleep(7 * time.Second)
	if mark, err := chromedp.Run(b.ctx, chromedp.Evaluate[string](`document.querySelector("main .card.paused")?.dataset.mark ?? "gone"`)); err != nil || mark != "kept" || !strings.Contains(b.text("main"), "held") {
		t.Fatalf("the process's page was drawn again (%q, %v):\n%s", mark, err, b.text("main"))
	}
	b.open("/processes/quick", "main .card.paused", "held")
	b.clickText("main button", "Resume the process")
	b.waitText("#flash", "quick runs again")
	d.waitStatus(held.body["id"].(string), "completed")

	// A process with a concurrency limit shows its queue, a link away.
	d.expect(call(t, d.base, "POST", "/v1/processes", engineer, "application/yaml", "name: desk\nversion: 1\nconcurrency: 1\nsteps: [{id: look, kind: review, review: {queue: desk}}]\n"), http.StatusCreated)
	d.waitStatus(d.start("desk", "ui-desk-1", map[string]any{}), "waiting_review")
	d.start("desk", "ui-desk-2", map[string]any{})
	b.open("/processes/desk", "main .concurrency", "Runs at most 1 at once; 1 queued.")
	b.clickText("main .concurrency a", "1 queued")
	b.waitText("main table", "ui-desk-2")
	// The list of processes says where each one's instances stand, and
	// its counts lead to them.
	b.open("/processes", "main table", "desk")
	row, err := chromedp.Run(b.ctx, chromedp.Evaluate[[]string](`[...[...document.querySelectorAll("main tbody tr")].find((r) => r.cells[0].innerText.trim() === "desk")?.cells ?? []].map((c) => c.innerText.trim())`))
	if err != nil || len(row) < 6 || !slices.Equal(row[1:6], []string{"1", "1", "1", "0", "1"}) {
		t.Fatalf("desk's row in the processes (version, in progress, waiting for review, failed, queued): %q %v", row, err)
	}
	b.clickText("main tbody a[href*='process=desk&status=waiting_review']", "1")
	b.waitText("main table", "ui-desk-1")

	// A process step's instance of the other process is a link away, and
	// links back.
	d.expect(call(t, d.base, "POST", "/v1/processes", engineer, "application/yaml", "name: check\nversion: 1\nsteps: [{id: a, kind: task, task: noop}]\n"), http.StatusCreated)
	d.expect(call(t, d.base, "POST", "/v1/processes", engineer, "application/yaml", "name: outer\nversion: 1\nsteps: [{id: run-check, kind: process, process: {name: check}}]\n"), http.StatusCreated)
	outer := d.start("outer", "ui-outer", map[string]any{})
	d.waitStatus(outer, "completed")
	b.open("/instances/"+outer, "main table", "run-check")
	b.clickText("main table a", "check instance")
	b.waitText("main h1", "check — sub:"+outer+":run-check")
	b.waitText("main .card", "step run-check of "+outer)

	// The process's page shows its signal: each instance's amount observed
	// once, retried or not, and the detector still warming up.
	b.open("/processes/partner-sync", "section.signal", "amount")
	if sig := b.text("section.signal"); !strings.Contains(sig, "warming up") || !strings.Contains(sig, "0 anomalous of 3 observations in the last 7d") || !strings.Contains(sig, "more observations") {
		t.Fatalf("the amount signal:\n%s", sig)
	}
	if n, err := chromedp.Run(b.ctx, chromedp.Evaluate[int](`document.querySelectorAll("section.signal svg.chart circle").length`)); err != nil || n < 1 {
		t.Fatalf("the signal's chart has %d points (%v)", n, err)
	}
	// The chart's scale keeps to the usual values: one spike among forty
	// periods is drawn at the edge rather than flatten the rest; a steady
	// trend, or a spike among two periods, keeps the whole range.
	scale := func(periods string) string {
		t.Helper()
		got, err := chromedp.Run(b.ctx, chromedp.Evaluate[string](`import("/ui/chart.js").then((m) => JSON.stringify(m.chartScale(`+periods+`)))`, chromedp.EvalAwaitPromise))
		if err != nil {
			t.Fatalf("chartScale(%s): %v", periods, err)
		}
		return got
	}
	const usual = `Array.from({length: 40}, (_, i) => ({mean: 100 + i % 5, min: 95, max: 110, baseline: {low: 90, high: 115}}))`
	for periods, want := range map[string]string{
		usual: `{"lo":90,"hi":115,"clipped":false}`,
		`[...` + usual + `, {mean: 1e6, min: 1e6, max: 1e6}]`:                                    `{"lo":90,"hi":140,"clipped":true}`,
		`[...` + usual + `, {mean: -5000, min: -5000, max: 90}]`:                                 `{"lo":65,"hi":115,"clipped":true}`,
		`Array.from({length: 40}, (_, i) => ({mean: i * 10, min: i * 10 - 5, max: i * 10 + 5}))`: `{"lo":-5,"hi":395,"clipped":false}`,
		`[{mean: 100, min: 100, max: 100}, {mean: 1e6, min: 1e6, max: 1e6}]`:                     `{"lo":100,"hi":1000000,"clipped":false}`,
		`[{mean: 5, min: 5, max: 5}]`:                                                            `{"lo":4,"hi":6,"clipped":false}`,
	} {
		if got := scale(periods); got != want {
			t.Errorf("chartScale(%s) = %s, want %s", periods, got, want)
		}
	}
	// Its observations download as CSV (the file's blob is kept to read).
	b.do("keep the download", chromedp.Evaluate[chromedp.Void](`window.__blobs = []; const make = URL.createObjectURL; URL.createObjectURL = (b) => { window.__blobs.push(b); return make(b); }`))
	b.clickText("section.signal button", "Download CSV")
	b.waitText("#flash", "Downloaded 3 observations of amount.")
	csv, err := chromedp.Run(b.ctx, chromedp.Evaluate[string](`window.__blobs[0].text()`, chromedp.EvalAwaitPromise))
	if lines := strings.Split(strings.TrimSpace(csv), "\n"); err != nil || len(lines) != 4 || lines[0] != "at,value,instance_id,score,anomalous,warming_up,recurring,expected,low,high,reason" || !strings.Contains(csv, ",120,") {
		t.Fatalf("the CSV (%v):\n%s", err, csv)
	}

	// While the process is paused a retry waits: the page says so, the
	// process's page links to it, and the resume runs it.
	partnerDown.Store(true)
	paused := d.start("partner-sync", "ui-sync-4", map[string]any{"amount": 110})
	d.waitStatus(paused, "failed")
	partnerDown.Store(false)
	d.expect(d.call("POST", "/v1/processes/partner-sync/pause", engineer, `{"note":"partner maintenance"}`), http.StatusOK)
	b.open("/instances/"+paused, "main .card", "partner is down")
	b.do("retry it", chromedp.Evaluate[chromedp.Void](`window.confirm = () => true`))
	b.clickText("main button", "Retry from the failed step")
	b.waitText("#flash", "The retry of ui-sync-4 is queued: process partner-sync is paused")
	b.open("/processes/partner-sync", "main .card.paused", "retries of its failed ones wait")
	b.clickText("main .card.paused a", "1 retry waits")
	b.waitText("main table", "ui-sync-4")
	b.open("/processes/partner-sync", "main .card.paused", "partner maintenance")
	b.clickText("main button", "Resume the process")
	d.waitStatus(paused, "completed")

	// A process with a schedule shows it, and when it next starts.
	d.expect(call(t, d.base, "POST", "/v1/processes", engineer, "application/yaml",
		"name: stocktake\nversion: 1\ninput: {properties: {region: {type: string}}}\nsteps: [{id: count, kind: task, task: noop}]\nschedules: [{id: weekly, cron: \"0 6 * * 1\", timezone: Europe/Berlin, input: {region: north}}]\n"), http.StatusCreated)
	b.open("/processes/stocktake", "main", "Next start")
	if txt := b.text("main"); !strings.Contains(txt, "Schedules") || !strings.Contains(txt, "0 6 * * 1") || !strings.Contains(txt, "Europe/Berlin") {
		t.Fatalf("the process page's schedules:\n%s", txt)
	}
	b.clickText("main button", "Pause")
	b.waitText("#flash", "Schedule weekly paused.")
	b.waitText("main", "paused by ")
	b.clickText("main button", "Resume")
	b.waitText("#flash", "Schedule weekly resumed.")

	b.open("/processes/customer-onboarding", "main .tiles", "started")
	if tiles := b.text("main .tiles"); !strings.Contains(tiles, "1\ncompleted") || !strings.Contains(tiles, "100.0%\ninstances reviewed") {
		t.Fatalf("KPI tiles:\n%s", tiles)
	}
	// How each step fared: a policy added the KYC review, which a
	// reviewer decided; then the mandatory account opening ran.
	b.waitText("main", "Over the 1 instances started in the last 7d")
	if n, err := chromedp.Run(b.ctx, chromedp.Evaluate[string](`[...document.querySelectorAll("main table")].map((t) => t.innerText).find((t) => t.startsWith("Step\tKind\tMandatory\tIn plan"))`)); err != nil || !strings.Contains(n, "business_kyc\treview\t\t1\t1\t0\t1\t0\t1\t") || !strings.Contains(n, "open_account\ttask\tyes\t1\t0\t0\t1\t0\t0\t") {
		t.Fatalf("the steps table: %q (%v)", n, err)
	}
	// What each policy in force did in the window: business-account-kyc
	// matched once and had its step added.
	if n, err := chromedp.Run(b.ctx, chromedp.Evaluate[string](`[...document.querySelectorAll("main table")].map((t) => t.innerText).find((t) => t.startsWith("Policy\tVersion\tMode"))`)); err != nil || !strings.Contains(n, "add ×1") || !strings.Contains(n, "1 of ") {
		t.Fatalf("the policies table: %q (%v)", n, err)
	}
	// Its classifier can be tried on a text.
	b.clickText("section.classify-try button", "Classify")
	b.waitText("#flash", "Write a text to classify first.")
	b.do("write a text", chromedp.SendKeys(chromedp.CSS(`section.classify-try textarea`), "our company needs a business account with two directors"))
	b.clickText("section.classify-try button", "Classify")
	b.waitText("section.classify-try .classified", "business_account")
	if got := b.text("section.classify-try .classified"); !strings.Contains(got, "Confidence") || !strings.Contains(got, "Reviewed") || !strings.Contains(got, "Or else") || !strings.Contains(got, "embedded:") {
		t.Fatalf("the classifier's answer:\n%s", got)
	}
	// The classifier is evaluated on its own examples, among them
	// complaints that read as requests for a personal account; one of
	// those, a mistake, is relabeled as the model read it.
	var confusable []string
	for i := range 40 {
		confusable = append(confusable, fmt.Sprintf(`{"text":"personal account request number %d","label":"%s"}`, i, []string{"complaint", "personal_account"}[i%2]))
	}
	d.expect(d.call("POST", "/v1/classifiers/onboarding-requests/examples/batch", engineer, `{"examples":[`+strings.Join(confusable, ",")+`]}`), http.StatusCreated)
	// This server has no LLM to evaluate: it says so.
	b.do("pick the LLM", chromedp.SetValue(chromedp.CSS(`section.classify-evaluate select[name=evaluate-model]`), "llm"))
	b.clickText("section.classify-evaluate button", "Evaluate")
	b.waitText("#flash", "no LLM is configured")
	b.do("pick the embedded classifier", chromedp.SetValue(chromedp.CSS(`section.classify-evaluate select[name=evaluate-model]`), "embedded"))
	b.do("cross-validate", chromedp.SetValue(chromedp.CSS(`section.classify-evaluate select[name=holdout]`), "folds:5"))
	b.clickText("section.classify-evaluate button", "Evaluate")
	b.waitText("section.classify-evaluate .evaluated", "cross-validated over 5 folds")
	b.waitText("section.classify-evaluate .evaluated", "The weakest labels")
	if got := b.text("section.classify-evaluate .evaluated"); !strings.Contains(got, "Macro-F1") || !strings.Contains(got, "The surest mistakes") {
		t.Fatalf("the evaluation:\n%s", got)
	}
	relabeled, err := chromedp.Run(b.ctx, chromedp.Evaluate[string](`(() => {
		const b = [...document.querySelectorAll("section.classify-evaluate .evaluated button")].find((e) => e.innerText.startsWith("Relabel as "));
		if (!b) return "";
		const row = b.closest("tr");
		b.click();
		return row.cells[0].innerText + "\t" + b.innerText.slice("Relabel as ".length);
	})()`))
	text, label, ok := strings.Cut(relabeled, "\t")
	if err != nil || !ok {
		t.Fatalf("no stored example among the mistakes to relabel (%v):\n%s", err, b.text("section.classify-evaluate"))
	}
	b.waitText("section.classify-evaluate .evaluated", "relabeled "+label)
	found := false
	for _, e := range d.expect(d.call("GET", "/v1/classifiers/onboarding-requests/examples?limit=1000&q="+url.QueryEscape(text), engineer, ""), http.StatusOK).body["examples"].([]any) {
		e := e.(map[string]any)
		if e["text"] == text {
			if found || e["label"] != label {
				t.Fatalf("the relabeled example %q: %v", text, e)
			}
			found = true
		}
	}
	if !found {
		t.Fatalf("the relabeled example %q is gone", text)
	}
	// The text is taught as another label, listed with the examples, and
	// deleted again.
	b.do("pick the label to teach", chromedp.SetValue(chromedp.CSS(`section.classify-try select[name=label]`), "account_transfer"))
	b.clickText("section.classify-try button", "Add as an example")
	b.waitText("#flash", "Added as an example of account_transfer")
	b.waitText("section.examples > table > tbody", "our company needs a business account with two directors")
	stored := d.expect(d.call("GET", "/v1/classifiers/onboarding-requests/examples", engineer, ""), http.StatusOK)
	var taught string
	for _, e := range stored.body["examples"].([]any) {
		if e := e.(map[string]any); e["text"] == "our company needs a business account with two directors" && e["label"] == "account_transfer" {
			taught = e["id"].(string)
		}
	}
	if taught == "" {
		t.Fatalf("the taught example is not stored: %s", stored.raw)
	}
	b.do("delete it", chromedp.Evaluate[chromedp.Void](`window.confirm = () => true`),
		chromedp.Click(chromedp.CSS(`button[aria-label="Delete the example `+taught+`"]`)))
	b.waitText("#flash", "Example deleted")
	for _, e := range d.expect(d.call("GET", "/v1/classifiers/onboarding-requests/examples", engineer, ""), http.StatusOK).body["examples"].([]any) {
		if e.(map[string]any)["id"] == taught {
			t.Fatal("the deleted example is still stored")
		}
	}
	// A CSV of labeled texts is imported (a text named twice takes its
	// last label); one naming a label the classifier lacks stops before
	// anything is sent.
	examplesCSV := filepath.Join(t.TempDir(), "examples.csv")
	csvText := "text,category\n\"we are a shop, two owners\",business_account\nmove my savings over,account_transfer\n\"we are a shop, two owners\",personal_account\n"
	for i := range 55 {
		csvText += fmt.Sprintf("note %d about my own account,personal_account\n", i)
	}
	if err := os.WriteFile(examplesCSV, []byte(csvText), 0o600); err != nil {
		t.Fatal(err)
	}
	b.do("pick the CSV", chromedp.SetUploadFiles(chromedp.CSS(`input[name=examples-file]`), []string{examplesCSV}))
	b.clickText("section.examples button", "Import")
	b.waitText("#flash", "Imported 57 examples")
	all := d.expect(d.call("GET", "/v1/classifiers/onboarding-requests/examples?limit=1000", engineer, ""), http.StatusOK)
	imported := map[string]string{}
	for _, e := range all.body["examples"].([]any) {
		e := e.(map[string]any)
		imported[e["text"].(string)] = e["label"].(string)
	}
	if imported["we are a shop, two owners"] != "personal_account" || imported["move my savings over"] != "account_transfer" || imported["note 54 about my own account"] != "personal_account" {
		t.Fatalf("the imported examples: %v", imported)
	}
	// The examples are shown 50 a page, newest first, with how many each
	// label has, and by label or a piece of their text.
	rows := func() int {
		n, err := chromedp.Run(b.ctx, chromedp.Evaluate[int](`document.querySelectorAll("section.examples > table > tbody > tr").length`))
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	// waitRows waits until the examples' table shows n rows, the newer
	// pages' button or not: the page's answer has come.
	waitRows := func(n int, newer bool) {
		t.Helper()
		for deadline := time.Now().Add(10 * time.Second); rows() != n || strings.Contains(b.text("section.examples"), "← Newer") != newer; time.Sleep(50 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("the examples show %d rows, want %d (newer pages: %v)\n%s", rows(), n, newer, b.text("section.examples"))
			}
		}
	}
	total := int(all.body["total"].(float64))
	b.waitText("section.examples", fmt.Sprintf("%d stored examples", total))
	b.waitText("section.examples details", "Examples per label")
	waitRows(50, false)
	b.clickText("section.examples button", "Older →")
	waitRows(total-50, true)
	b.do("pick a label", chromedp.SetValue(chromedp.CSS(`select[name=examples-label]`), "account_transfer"))
	b.clickText("section.examples button", "Show")
	waitRows(1, false)
	b.waitText("section.examples > table > tbody", "move my savings over")
	b.do("search the texts", chromedp.SetValue(chromedp.CSS(`select[name=examples-label]`), ""),
		chromedp.SendKeys(chromedp.CSS(`input[name=examples-q]`), "A SHOP"))
	b.clickText("section.examples button", "Show")
	b.waitText("section.examples > table > tbody", "we are a shop, two owners")
	waitRows(1, false)
	// What a filter shows is deleted in one go.
	b.do("confirm deletions", chromedp.Evaluate[chromedp.Void](`window.confirm = () => true`))
	b.clickText("section.examples button", "Delete every example shown")
	b.waitText("#flash", "Deleted 1 example:")
	if left := d.expect(d.call("GET", "/v1/classifiers/onboarding-requests/examples?q=shop", engineer, ""), http.StatusOK); len(left.body["examples"].([]any)) != 0 || left.body["total"] != float64(total-1) {
		t.Fatalf("after deleting the shop's example: %s", left.raw)
	}
	if err := os.WriteFile(examplesCSV, []byte("text,category\nhello,greeting\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	b.do("pick a CSV with an unknown label", chromedp.SetUploadFiles(chromedp.CSS(`input[name=examples-file]`), []string{examplesCSV}))
	b.clickText("section.examples button", "Import")
	b.waitText("#flash", `"greeting" is not one of the classifier's labels`)
	// The page shows the last evaluation until the next one, and that the
	// examples changed since.
	b.open("/processes/customer-onboarding", "section.classify-evaluate .evaluated", "Last evaluated")
	if got := b.text("section.classify-evaluate .evaluated"); !strings.Contains(got, "examples have changed since") || !strings.Contains(got, "cross-validated over 5 folds") {
		t.Fatalf("the last evaluation:\n%s", got)
	}
	b.clickText("main a", "business-account-kyc")
	b.waitText("main h1", "Policy business-account-kyc")
	b.do("note the change", chromedp.SendKeys(chromedp.CSS(`input[name=note]`), "paused from the UI"))
	b.clickText("main button", "Disable")
	b.waitText("#flash", "business-account-kyc is disabled")
	p := d.expect(d.call("GET", "/v1/policies/business-account-kyc", engineer, ""), http.StatusOK)
	if p.body["mode"] != "disabled" || p.body["changed_by"] != "engineer-1" {
		t.Fatalf("after Disable: %s", p.raw)
	}
	b.waitText("main table", "v1")
	b.clickText("main button", "Activate")
	b.waitText("#flash", "business-account-kyc v1 is active")
	if p := d.expect(d.call("GET", "/v1/policies/business-account-kyc", engineer, ""), http.StatusOK); p.body["mode"] != "active" || p.body["active_version"] != 1.0 {
		t.Fatalf("after Activate: %s", p.raw)
	}

	// A second version, registered in shadow from files, goes to a
	// quarter of the instances from the policy's page.
	v2, err := os.ReadFile(filepath.Join("..", "..", "examples", "policies", "onboarding-business-kyc.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	v2 = []byte(strings.Replace(string(v2), "priority: 10", "priority: 11", 1))
	d.expect(call(t, d.base, "POST", "/v1/policies?mode=shadow", engineer, "application/yaml", string(v2)), http.StatusCreated)
	b.open("/policies/business-account-kyc", "main table", "v2")
	b.do("set the share and the guard",
		chromedp.SetValue(chromedp.CSS(`input[name=percent]`), "25"),
		chromedp.SetValue(chromedp.CSS(`input[name=max_error_rate_increase]`), "5"),
		chromedp.SetValue(chromedp.CSS(`input[name=promote_after]`), "3d"),
		chromedp.SetValue(chromedp.CSS(`input[name=max_cycle_time_increase]`), "25"),
		chromedp.SetValue(chromedp.CSS(`input[name=confidence]`), "95"),
		chromedp.SetValue(chromedp.CSS(`input[name=decide_after]`), "10d"))
	b.clickText("main button", "Canary")
	b.waitText("#flash", "business-account-kyc v2 applies to 25% of the instances")
	if p := d.expect(d.call("GET", "/v1/policies/business-account-kyc", engineer, ""), http.StatusOK); p.body["mode"] != "active" || p.body["shadow_version"] != 2.0 || p.body["shadow_percent"] != 25.0 ||
		fmt.Sprint(p.body["canary_guard"]) != "map[confidence:0.95 decide_after:10d max_cycle_time_increase:0.25 max_error_rate_increase:0.05 min_instances:20 promote_after:3d]" {
		t.Fatalf("after Canary: %s", p.raw)
	}
	b.waitText("main .card", "canary 25%")
	b.waitText("main .card", "watching 0 of its instances have finished; it is judged once 20 have; rolled back if still unjudged in ")
	b.waitText("main .card", ", 10d after it began")
	b.waitText("main .card", "roll back if its error rate exceeds the rest's by over 5 points; roll back if its median cycle time exceeds the rest's by over 25%; promote after 3d; roll back if still unjudged after 10d (judged once 20 of its instances have finished, at 95% confidence)")

	// The next version is drafted on the page: simulated against the
	// recorded decisions, then saved in shadow.
	b.do("edit the draft", chromedp.Evaluate[chromedp.Void](`(() => {
		const t = document.querySelector("textarea[name=policy]");
		t.value = t.value.replace("priority: 11", "priority: 12");
	})()`))
	b.clickText("main button", "Simulate")
	b.waitText("#simulation", "recorded decisions replayed")
	b.do("note the change", chromedp.SetValue(chromedp.CSS(`input[name=note]`), "priority 12"))
	b.clickText("main button", "Save as shadow version")
	b.waitText("#flash", "business-account-kyc v3 is saved and runs in shadow.")
	if p := d.expect(d.call("GET", "/v1/policies/business-account-kyc/versions/3", engineer, ""), http.StatusOK); !strings.Contains(p.raw, `"priority":12`) || p.body["note"] != "priority 12" {
		t.Fatalf("the saved draft: %s", p.raw)
	}
	b.do("break the draft", chromedp.Evaluate[chromedp.Void](`document.querySelector("textarea[name=policy]").value = "id: business-account-kyc\nprocess: customer-onboarding\nwhen: classification.label ==\nactions: [{skip: welcome}]\n"`))
	b.clickText("main button", "Save as shadow version")
	b.waitText("#flash", "when")

	// The process page shows what reviewers made of the classifier.
	b.open("/processes/customer-onboarding", "main", "Classifier onboarding-requests")
	b.waitText("main", "model agreed with reviewers")
	b.waitText("main", "personal_account ×1")

	// An admin makes a key for a new reviewer, rotates and revokes it, and
	// finds it all in the audit log.
	b.clickText("#who button", "Sign out")
	b.signIn(adminKey)
	b.waitText("#nav", "Keys")
	b.open("/keys", "main h1", "API keys")
	b.do("fill in a key",
		chromedp.SendKeys(chromedp.CSS(`input[name=name]`), "ann"),
		chromedp.SetValue(chromedp.CSS(`select[name=role]`), "reviewer"),
		chromedp.SendKeys(chromedp.CSS(`input[name=processes]`), "customer-onboarding"))
	b.clickText("main button", "Create key")
	b.waitText("#flash", "Key ann created.")
	secret := b.text("#new-secret")
	who := d.expect(d.call("GET", "/v1/whoami", secret, ""), http.StatusOK)
	if who.body["name"] != "ann" || who.body["role"] != "reviewer" {
		t.Fatalf("the new key: %s", who.raw)
	}
	b.waitText("main table", "customer-onboarding")
	b.do("rotate ann's key", chromedp.Click(chromedp.CSS(`button[aria-label="Rotate ann"]`)))
	b.waitText("#flash", "ann has a new secret")
	rotated := b.text("#new-secret")
	d.expect(d.call("GET", "/v1/whoami", secret, ""), http.StatusUnauthorized)
	d.expect(d.call("GET", "/v1/whoami", rotated, ""), http.StatusOK)
	b.do("revoke ann's key", chromedp.Evaluate[chromedp.Void](`window.confirm = () => true`),
		chromedp.Click(chromedp.CSS(`button[aria-label="Revoke ann"]`)))
	b.waitText("#flash", "ann is revoked.")
	d.expect(d.call("GET", "/v1/whoami", rotated, ""), http.StatusUnauthorized)
	b.open("/audit?action=POST /v1/keys/:id/revoke", "main table", "POST /v1/keys/:id/revoke")
	if log := b.text("main tbody"); strings.Count(log, "\n") != 0 || !strings.Contains(log, "admin (admin)") {
		t.Fatalf("the audit log of revocations:\n%s", log)
	}

	// An instance waiting for an event says so, and shows the event once
	// another system sent it.
	const paid = "name: paid-orders\nversion: 1\nsteps:\n  - {id: await_payment, kind: event, event: {name: payment_received}}\n  - {id: ship, kind: task, task: noop}\n"
	d.expect(call(t, d.base, "POST", "/v1/processes", engineer, "application/yaml", paid), http.StatusCreated)
	eid := d.start("paid-orders", "ui-event", map[string]any{})
	b.open("/instances/"+eid, "main table", "waiting_event")
	// An operator confirms it by hand: the data must be a JSON object.
	b.do("write bad data", chromedp.Evaluate[chromedp.Void](`window.confirm = () => true`),
		chromedp.SendKeys(chromedp.CSS(`textarea[name=data]`), `["TX-9"]`))
	b.clickText("main form button", "Send event")
	b.waitText("#flash", "The event's data must be a JSON object.")
	b.do("write the data", chromedp.SetValue(chromedp.CSS(`textarea[name=data]`), `{"ref": "TX-9"}`))
	b.clickText("main form button", "Send event")
	b.waitText("#flash", "Sent payment_received to ui-event.")
	d.waitStatus(eid, "completed")
	b.open("/instances/"+eid, "main", "Events received")
	if got := b.text("main"); !strings.Contains(got, "payment_received") || !strings.Contains(got, `{"ref":"TX-9"}`) {
		t.Fatalf("the instance's events:\n%s", got)
	}

	// A callback its receiver refused is shown on the instance, and sent
	// again from there once the receiver is fixed.
	var mu sync.Mutex
	fixed := false
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		if !fixed {
			w.WriteHeader(http.StatusGone)
		}
	}))
	defer hook.Close()
	hooked := "name: ui-hooked\nversion: 1\ncallback: {url: '" + hook.URL + "', events: [completed]}\nsteps: [{id: a, kind: task, task: noop}]\n"
	d.expect(call(t, d.base, "POST", "/v1/processes", engineer, "application/yaml", hooked), http.StatusCreated)
	hid := d.start("ui-hooked", "ui-hook", map[string]any{})
	d.waitStatus(hid, "completed")
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		kept := d.expect(d.call("GET", "/v1/webhooks/undelivered?instance_id="+hid, engineer, ""), http.StatusOK).body["webhooks"].([]any)
		if len(kept) == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the refused callback was not kept: %v", kept)
		}
	}
	b.open("/instances/"+hid, "main", "Webhooks not delivered")
	b.waitText("main", "410 Gone")
	b.clickText("main button", "Redeliver")
	b.waitText("#flash", "was not delivered again, and stays pending")
	b.waitText("main", "\t2\twebhook "+hook.URL) // one more attempt, and its error
	mu.Lock()
	fixed = true
	mu.Unlock()
	b.clickText("main button", "Redeliver")
	b.waitText("#flash", "instance.completed was delivered to "+hook.URL)
	b.waitText("main", "redelivered by admin")

	// The webhooks page lists those pending, and sends them again, oldest
	// first, stopping at the first the receiver refuses.
	mu.Lock()
	fixed = false
	mu.Unlock()
	for _, key := range []string{"ui-hook-2", "ui-hook-3"} {
		d.waitStatus(d.start("ui-hooked", key, map[string]any{}), "completed")
	}
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		kept := d.expect(d.call("GET", "/v1/webhooks/undelivered?process=ui-hooked", engineer, ""), http.StatusOK).body["webhooks"].([]any)
		if len(kept) == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the refused callbacks were not kept: %v", kept)
		}
	}
	if nav := b.text("#nav"); !strings.Contains(nav, "Webhooks") {
		t.Fatalf("an admin's menu: %q", nav)
	}
	b.open("/webhooks?process=ui-hooked", "main h1", "Webhooks not delivered")
	b.waitText("main table", "ui-hooked")
	b.do("confirm", chromedp.Evaluate[chromedp.Void](`window.confirm = () => true`))
	b.clickText("main button", "Redeliver these 2, oldest first")
	b.waitText("#flash", "Redelivered 0 of 2; instance.completed of ")
	mu.Lock()
	fixed = true
	mu.Unlock()
	b.clickText("main button", "Redeliver these 2, oldest first")
	b.waitText("#flash", "Redelivered 2 of 2.")
	b.waitText("main", "None pending.")
}

func firstLine(b *browser, css string) string {
	line, _, _ := strings.Cut(b.text(css), "\n")
	return strings.TrimSpace(line)
}

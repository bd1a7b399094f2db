// adaptflow web UI: the reviewers' inbox, instances with their decisions
// explained, and the engineers' processes, KPIs and policies. It is a thin
// client of the REST API (/v1): it holds the API key for the tab's session
// and every call carries it, so each screen is allowed exactly what the
// key's role is allowed. Text from instances is shown as text, never as
// markup.

import { chartScale } from "./chart.js";

const keyStore = "adaptflow.key";
const main = document.getElementById("main");
let me = null; // {id, name, role} of the signed-in key

// ---- the API -------------------------------------------------------------

class APIError extends Error {
  constructor(status, body) {
    const e = (body && body.error) || {};
    let msg = e.message || `HTTP ${status}`;
    if (e.field && !msg.includes(e.field)) msg = `${e.field}: ${msg}`;
    for (const d of e.details || []) if (!msg.includes(d.message)) msg += `; ${d.field}: ${d.message}`;
    super(msg);
    this.status = status;
    this.code = e.code;
  }
}

// api calls the API with the signed-in key. A body is sent as JSON, or as
// it is with raw: {contentType, headers}.
// Superseded stops a view whose route another has replaced (the user
// went on before it loaded): a read it made answers after the new route
// began, and the view neither renders over the new one nor sets its
// periodic refresh on it.
class Superseded extends Error {
  constructor() { super(superseded); }
}
const superseded = "\u0000superseded";

// routeSeq counts the routes taken; a read belongs to the route it began in.
let routeSeq = 0;

async function api(method, path, body, raw) {
  const began = routeSeq;
  const headers = { Authorization: "Bearer " + sessionStorage.getItem(keyStore), ...(raw?.headers || {}) };
  const init = { method, headers };
  if (raw) {
    headers["Content-Type"] = raw.contentType;
    init.body = body;
  } else if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const res = await fetch(path, init);
  let data = null;
  const text = await res.text();
  if (text) {
    try { data = JSON.parse(text); } catch { data = null; }
  }
  if (method === "GET" && began !== routeSeq) throw new Superseded();
  if (!res.ok) {
    if (res.status === 401 && path !== "/v1/whoami") signOut("Your API key is no longer accepted: sign in again.");
    const err = new APIError(res.status, data);
    err.retryAfter = Number(res.headers.get("Retry-After")) || 0;
    throw err;
  }
  return data;
}

// ---- small DOM helpers ---------------------------------------------------

// h builds an element. attrs: on* are listeners, class/for/value set as
// properties, the rest as attributes. Children are nodes or text.
function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "class") el.className = v;
    else if (k === "for") el.htmlFor = v;
    else if (k === "value" || k === "checked" || k === "selected") el[k] = v;
    else el.setAttribute(k, v === true ? "" : v);
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children.flat(Infinity)) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

function render(...children) {
  main.replaceChildren();
  append(main, children);
}

function flash(msg, kind = "error") {
  if (msg === superseded) return; // the page it was for is gone
  const el = document.getElementById("flash");
  el.className = kind;
  el.textContent = msg || "";
  if (msg && kind === "info") setTimeout(() => { if (el.textContent === msg) el.textContent = ""; }, 5000);
}

const badge = (s) => h("span", { class: "badge " + (s || "") }, s || "—");
const json = (v) => h("pre", {}, JSON.stringify(v, null, 2));
const link = (href, text) => h("a", { href }, text);

function facts(pairs) {
  return h("dl", { class: "facts" }, pairs.filter(([, v]) => v !== undefined && v !== null && v !== "")
    .map(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]));
}

function table(columns, rows, onRow) {
  return h("table", {},
    h("thead", {}, h("tr", {}, columns.map((c) => h("th", { class: c.num ? "num" : "" }, c.title)))),
    h("tbody", {}, rows.length === 0
      ? h("tr", {}, h("td", { colspan: columns.length, class: "muted" }, "Nothing here."))
      : rows.map((r) => h("tr", onRow ? { class: "link", onclick: () => onRow(r) } : {},
        columns.map((c) => h("td", { class: c.num ? "num" : "" }, c.cell(r)))))));
}

// actionButton runs fn on a click, disabled meanwhile; a failure is
// flashed and the button can be pressed again.
function actionButton(text, fn, attrs = {}) {
  return h("button", {
    type: "button", ...attrs,
    onclick: async (ev) => {
      const button = ev.currentTarget;
      button.disabled = true;
      try { await fn(); } catch (e) { flash(e.message); } finally { button.disabled = false; }
    },
  }, text);
}

// filterForm is a row of named fields whose values, on submit, become the
// query of #/view.
function filterForm(view, ...children) {
  const form = h("form", {
    class: "filters",
    onsubmit: (ev) => {
      ev.preventDefault();
      const p = new URLSearchParams();
      for (const el of form.elements) if (el.name && el.value) p.set(el.name, el.value);
      location.hash = `#/${view}?${p}`;
    },
  }, children);
  return form;
}

// ---- formatting ----------------------------------------------------------

function duration(seconds) {
  if (seconds === undefined || seconds === null) return "—";
  const s = Math.abs(seconds);
  if (s < 1) return `${Math.round(s * 1000)} ms`;
  if (s < 90) return `${Math.round(s)} s`;
  if (s < 90 * 60) return `${Math.round(s / 60)} min`;
  const unit = (n, u) => `${n < 10 ? n.toFixed(1).replace(/\.0$/, "") : Math.round(n)} ${u}`;
  if (s < 48 * 3600) return unit(s / 3600, "h");
  return unit(s / 86400, "d");
}

function when(t) {
  if (!t) return "—";
  const d = new Date(t);
  const secs = (d.getTime() - Date.now()) / 1000;
  const rel = secs >= 0 ? `in ${duration(secs)}` : `${duration(-secs)} ago`;
  return h("time", { datetime: t, title: d.toLocaleString() }, rel);
}

function due(t) {
  if (!t) return "—";
  const late = new Date(t).getTime() < Date.now();
  return h("span", { class: late ? "overdue" : "" }, when(t), late ? " (overdue)" : "");
}

const pct = (x) => (x === undefined || x === null ? "—" : `${(x * 100).toFixed(1)}%`);
const num = (x) => (x === undefined || x === null ? "—" : Number(x).toLocaleString());

// ---- session and navigation ----------------------------------------------

const can = {
  review: () => ["reviewer", "admin"].includes(me.role),
  instances: () => ["system", "engineer", "admin"].includes(me.role),
  engineer: () => ["engineer", "admin"].includes(me.role),
  admin: () => me.role === "admin",
};

function signOut(msg) {
  sessionStorage.removeItem(keyStore);
  me = null;
  location.hash = "#/";
  route();
  if (msg) flash(msg);
}

function chrome() {
  const nav = document.getElementById("nav");
  const who = document.getElementById("who");
  nav.replaceChildren();
  who.replaceChildren();
  if (!me) return;
  const items = [];
  if (can.review()) items.push(["#/inbox", "Inbox"]);
  if (can.instances()) items.push(["#/instances", "Instances"], ["#/webhooks", "Webhooks"]);
  if (can.engineer()) items.push(["#/processes", "Processes"]);
  if (can.admin()) items.push(["#/keys", "Keys"], ["#/audit", "Audit"]);
  const here = location.hash.split("?")[0];
  for (const [href, text] of items) {
    nav.append(h("a", { href, class: here.startsWith(href) ? "current" : "" }, text));
  }
  who.append(h("span", {}, `${me.name} (${me.role})`), h("button", { onclick: () => signOut() }, "Sign out"));
}

function loginView(msg) {
  const input = h("input", { type: "password", id: "api-key", autocomplete: "off", placeholder: "the key adaptflow printed, or one made for you", required: true });
  const form = h("form", {
    class: "card login",
    onsubmit: async (ev) => {
      ev.preventDefault();
      sessionStorage.setItem(keyStore, input.value.trim());
      try {
        me = await api("GET", "/v1/whoami");
        flash("");
        if (location.hash === "" || location.hash === "#/") location.hash = home();
        route();
      } catch (e) {
        sessionStorage.removeItem(keyStore);
        flash(e.status === 401 ? "That API key is not accepted." : e.message);
      }
    },
  },
  h("h1", {}, "Sign in"),
  h("p", { class: "muted" }, "Use an API key. The screens you see follow its role: reviewers get the inbox, engineers the processes and policies."),
  h("label", { for: "api-key" }, "API key", input),
  h("p", {}, h("button", { type: "submit" }, "Sign in")));
  render(form);
  if (msg) flash(msg);
  input.focus();
}

function home() {
  if (can.review()) return "#/inbox";
  if (can.engineer()) return "#/processes";
  return "#/instances";
}

// parse "#/a/b?x=1" into {parts: ["a","b"], q: URLSearchParams}
function parseHash() {
  const [path, query] = location.hash.replace(/^#\/?/, "").split("?");
  return { parts: path.split("/").filter(Boolean).map(decodeURIComponent), q: new URLSearchParams(query || "") };
}

let refresh = null; // the current view's periodic refresh

async function route() {
  routeSeq++;
  clearInterval(refresh);
  refresh = null;
  if (!sessionStorage.getItem(keyStore)) {
    me = null;
    chrome();
    return loginView();
  }
  if (!me) {
    try {
      me = await api("GET", "/v1/whoami");
    } catch (e) {
      if (e instanceof Superseded) return;
      sessionStorage.removeItem(keyStore);
      chrome();
      return loginView(e.status === 401 ? "Your API key is no longer accepted: sign in again." : e.message);
    }
  }
  chrome();
  const { parts, q } = parseHash();
  const views = {
    inbox: () => inboxView(q),
    reviews: () => reviewView(parts[1]),
    instances: () => (parts[1] ? instanceView(parts[1]) : instancesView(q)),
    processes: () => (parts[1] ? processView(parts[1], q) : processesView()),
    policies: () => policyView(parts[1]),
    keys: () => keysView(),
    audit: () => auditView(q),
    webhooks: () => webhooksView(q),
  };
  const view = views[parts[0]];
  if (!view) {
    location.replace(home());
    return;
  }
  try {
    await view();
  } catch (e) {
    if (e instanceof Superseded) return;
    render(h("h1", {}, "Something went wrong"), h("p", {}, e.message));
  }
}

// ---- inbox -----------------------------------------------------------------

async function inboxView(q) {
  if (!can.review()) return render(h("p", {}, "The inbox is for reviewer keys."));
  const status = q.get("status") || "open";
  const filter = { status, queue: q.get("queue") || "", process: q.get("process") || "", assignee: q.get("assignee") || "" };
  const params = new URLSearchParams(Object.entries(filter).filter(([, v]) => v));
  params.set("limit", "50");
  if (q.get("after")) params.set("after", q.get("after"));
  const [page, queues] = await Promise.all([
    api("GET", "/v1/reviews?" + params),
    api("GET", "/v1/queues" + (filter.process ? "?" + new URLSearchParams({ process: filter.process }) : "")),
  ]);

  const field = (name, el) => h("label", {}, name, el);
  const statusSel = h("select", { name: "status" },
    ["open", "claimed", "escalated", "decided", "expired", "canceled", "all"].map((s) => h("option", { value: s, selected: s === status }, s)));
  const text = (name) => h("input", { name, value: filter[name], size: 14 });
  const form = filterForm("inbox",
  field("Status", statusSel), field("Queue", text("queue")), field("Process", text("process")), field("Claimed by", text("assignee")),
  h("button", { type: "submit" }, "Filter"),
  h("button", { type: "button", class: "secondary", onclick: () => { location.hash = `#/inbox?status=claimed&assignee=${encodeURIComponent(me.name)}`; } }, "Mine"),
  actionButton("Take next", () => takeNext(filter), { class: "secondary" }));

  // Reviews still waiting can be decided together: tick them, then
  // approve, or reject with a reason.
  const waiting = (r) => ["open", "claimed", "escalated"].includes(r.status);
  const picked = new Set();
  const reason = h("input", { name: "bulk-reason", size: 24, placeholder: "Reason (needed to reject)" });
  const bulk = async (verdict) => {
    if (picked.size === 0) throw new Error("Tick the reviews to decide first.");
    const res = await api("POST", "/v1/reviews/decisions", { ids: [...picked], verdict, comment: reason.value || undefined });
    const failed = res.results.filter((x) => x.status !== 200).map((x) => `${x.id}: ${x.error.message}`);
    await route();
    flash(`${res.decided} ${verdict === "approve" ? "approved" : "rejected"}` + (failed.length ? `; ${failed.length} not decided: ${failed.join("; ")}` : "."), failed.length ? "error" : "info");
  };
  const bulkBar = page.reviews.some(waiting) ? h("p", { class: "bulk" },
    actionButton("Approve selected", () => bulk("approve")), " ",
    actionButton("Reject selected", () => bulk("reject"), { class: "secondary" }), " ", reason) : null;
  const cols = [
    { title: "", cell: (r) => (waiting(r) ? h("input", {
      type: "checkbox", name: "pick", value: r.id, "aria-label": "Select " + r.id,
      onclick: (ev) => { ev.stopPropagation(); if (ev.currentTarget.checked) picked.add(r.id); else picked.delete(r.id); },
    }) : "") },
    { title: "Priority", num: true, cell: (r) => r.priority },
    { title: "Process", cell: (r) => r.process },
    { title: "Step", cell: (r) => link("#/reviews/" + encodeURIComponent(r.id), r.step) }, // reachable by keyboard
    { title: "Queue", cell: (r) => r.queue },
    { title: "Why", cell: (r) => r.reason || "—" },
    { title: "Raised", cell: (r) => when(r.created_at) },
    { title: "Due", cell: (r) => (["decided", "expired", "canceled"].includes(r.status) ? "—" : due(r.due_at)) },
    { title: "Status", cell: (r) => [badge(r.status), r.claimed_by ? ` ${r.claimed_by}` : ""] },
  ];
  render(
    h("h1", {}, "Inbox"),
    queueSummary(queues),
    form,
    bulkBar,
    table(cols, page.reviews, (r) => { location.hash = "#/reviews/" + encodeURIComponent(r.id); }),
    page.next ? h("p", {}, link(`#/inbox?${new URLSearchParams({ ...Object.fromEntries(Object.entries(filter).filter(([, v]) => v)), after: page.next })}`, "Next page →")) : null,
  );
  refresh = setInterval(() => { if (!document.hidden && picked.size === 0 && !["INPUT", "TEXTAREA", "SELECT"].includes(document.activeElement?.tagName)) route(); }, 15000);
}

// queueSummary is where each queue stands: what waits in it now, and what
// was closed in it over the last day. A row filters the inbox to its queue.
function queueSummary({ queues }) {
  if (queues.length === 0) return null;
  const cols = [
    { title: "Queue", cell: (q) => link(`#/inbox?queue=${encodeURIComponent(q.queue)}`, q.queue) },
    { title: "Open", num: true, cell: (q) => num(q.open) },
    { title: "Claimed", num: true, cell: (q) => num(q.claimed) },
    { title: "Escalated", num: true, cell: (q) => num(q.escalated) },
    { title: "Overdue", num: true, cell: (q) => h("span", { class: q.overdue ? "overdue" : "" }, num(q.overdue)) },
    { title: "Oldest waiting", cell: (q) => when(q.oldest_at) },
    { title: "Next due", cell: (q) => due(q.next_due_at) },
    { title: "Decided (24 h)", num: true, cell: (q) => num(q.decided) },
    { title: "Expired (24 h)", num: true, cell: (q) => num(q.expired) },
    { title: "Mean time to verdict", cell: (q) => (q.decided ? duration(q.mean_decision_seconds) : "—") },
  ];
  return h("section", { class: "queues", "aria-label": "Queues" }, h("h2", {}, "Queues"),
    table(cols, queues, (q) => { location.hash = `#/inbox?queue=${encodeURIComponent(q.queue)}`; }));
}

// takeNext claims the first open review of the inbox's queue and process
// (highest priority, earliest due) that nobody else claims first, and
// opens it.
async function takeNext(filter) {
  const params = new URLSearchParams({ status: "open", limit: "20" });
  for (const k of ["queue", "process"]) if (filter[k]) params.set(k, filter[k]);
  const { reviews } = await api("GET", "/v1/reviews?" + params);
  for (const r of reviews) {
    try {
      await api("POST", `/v1/reviews/${encodeURIComponent(r.id)}/claim`, { lease: "30m" });
    } catch (e) {
      if (e.status === 409) continue; // another reviewer was quicker
      throw e;
    }
    location.hash = "#/reviews/" + encodeURIComponent(r.id);
    return;
  }
  flash("Nothing open to take here.", "info");
}

// ---- one review ----------------------------------------------------------

async function reviewView(id) {
  const r = await api("GET", "/v1/reviews/" + encodeURIComponent(id));
  const open = ["open", "claimed", "escalated"].includes(r.status);
  const mine = r.status === "claimed" && r.claimed_by === me.name;
  const takenByOther = r.status === "claimed" && !mine;
  const act = (label, fn, cls) => actionButton(label, fn, { class: cls });

  const cls = r.classification;
  const answer = cls?.answer || {};
  const sections = [
    h("h1", {}, `Review: ${r.process} / ${r.step}`),
    h("div", { class: "card" }, facts([
      ["Status", [badge(r.status), r.status === "claimed" ? [` by ${r.claimed_by}, claim ends `, when(r.claim_expires_at)] : ""]],
      ["Why", r.reason],
      ["Queue", r.queue],
      ["Priority", String(r.priority)],
      ["Raised", when(r.created_at)],
      ["Due", open ? due(r.due_at) : null],
      ["Escalated", r.escalated_at ? when(r.escalated_at) : null],
      ["Moved", r.moves?.length ? r.moves.map((m) => h("div", { class: "move" }, `from ${m.from} to ${m.to} ${m.by === "sla" ? "(its SLA ran out)" : "by " + m.by}, `, when(m.at), m.note ? `: ${m.note}` : "")) : null],
      ["Policy", r.policy_id],
      ["Instance", can.instances() ? link("#/instances/" + encodeURIComponent(r.instance_id), r.instance_id) : r.instance_id],
      ["Verdict", r.verdict ? `${r.verdict} by ${r.reviewer}${r.comment ? ": " + r.comment : ""}` : null],
    ])),
  ];

  if (open) sections.push(decisionForm(r, { mine, takenByOther, act }));
  if (open) sections.push(reassignForm(r));

  if (cls) {
    sections.push(h("h2", {}, `What the classifier read (${cls.field.split(",").join(", ")})`), h("pre", { class: "text" }, cls.text));
    sections.push(h("div", { class: "card" }, facts([
      ["Label", answer.label],
      ["Confidence", answer.confidence !== undefined ? pct(answer.confidence) : null],
      ["Answered by", answer.model || answer.source],
      ["Rationale", answer.rationale],
      ["Fields", answer.fields && Object.keys(answer.fields).length ? json(answer.fields) : null],
    ])));
  }
  if (r.similar?.length) {
    sections.push(h("h2", {}, "Similar past cases"), table([
      { title: "Text", cell: (s) => s.text },
      { title: "Label", cell: (s) => s.label },
      { title: "Source", cell: (s) => s.source },
      { title: "Distance", num: true, cell: (s) => s.distance.toFixed(3) },
    ], r.similar));
  }
  if (r.explanation?.text) sections.push(h("h2", {}, "The decision before this step"), h("pre", {}, r.explanation.text));
  if (r.input) sections.push(h("h2", {}, "Input"), json(r.input));
  render(h("p", {}, link("#/inbox", "← Inbox")), sections);
}

function decisionForm(r, { mine, takenByOther, act }) {
  const labels = r.classification?.labels || [];
  const comment = h("textarea", { name: "comment", maxlength: 4000, placeholder: "Why (required to reject)" });
  const label = labels.length ? h("select", { name: "label" }, h("option", { value: "" }, "— keep the model's label —"),
    labels.map((l) => h("option", { value: l, selected: l === r.classification?.answer?.label }, l))) : null;
  const verdicts = ["approve", "reject"].concat(labels.length ? ["correct"] : []);
  const choice = (v) => h("label", { class: "choice" }, h("input", { type: "radio", name: "verdict", value: v, checked: v === "approve" }), v);
  const form = h("form", {
    class: "card",
    onsubmit: async (ev) => {
      ev.preventDefault();
      const verdict = form.elements.verdict.value;
      const body = { verdict };
      if (comment.value.trim()) body.comment = comment.value.trim();
      if (verdict === "correct" || (label && label.value && label.value !== r.classification?.answer?.label)) {
        if (!label?.value) return flash("Pick the right label to correct the classification.");
        body.verdict = "correct";
        body.label = label.value;
      }
      const button = form.querySelector("button[type=submit]");
      button.disabled = true;
      try {
        const out = await api("POST", `/v1/reviews/${encodeURIComponent(r.id)}/decision`, body);
        await route();
        flash(`Decided: ${out.verdict}${out.example ? `; the classifier learned “${out.example.label}” from it` : ""}.`, "info");
      } catch (e) {
        flash(e.message);
        button.disabled = false;
      }
    },
  },
  h("h2", {}, "Your decision"),
  takenByOther ? h("p", { class: "muted" }, `${r.claimed_by} holds this review; you can decide it when the claim ends or is released.`) : null,
  h("div", { class: "actions" }, verdicts.map(choice)),
  label ? h("p", {}, h("label", {}, "Right label", label)) : null,
  h("p", {}, h("label", {}, "Comment", comment)),
  h("div", { class: "actions" },
    h("button", { type: "submit", disabled: takenByOther }, "Submit decision"),
    mine
      ? act("Release", async () => { await api("POST", `/v1/reviews/${encodeURIComponent(r.id)}/release`); await route(); flash("Released.", "info"); }, "secondary")
      : act("Claim", async () => { await api("POST", `/v1/reviews/${encodeURIComponent(r.id)}/claim`, { lease: "30m" }); await route(); flash("Claimed for 30 minutes.", "info"); }, "secondary")));
  if (takenByOther) form.querySelector(".actions button:last-child").disabled = true;
  return form;
}

// reassignForm moves an open review to another queue (another desk's).
function reassignForm(r) {
  const queue = h("input", { name: "queue", size: 20, placeholder: "queue", pattern: "[a-z][a-z0-9_-]*" });
  const note = h("input", { name: "note", size: 40, maxlength: 2000, placeholder: "why (optional)" });
  return h("form", {
    class: "filters",
    onsubmit: async (ev) => {
      ev.preventDefault();
      try {
        const out = await api("POST", `/v1/reviews/${encodeURIComponent(r.id)}/reassign`, { queue: queue.value.trim(), note: note.value.trim() });
        await route();
        flash(`Moved to queue ${out.queue}.`, "info");
      } catch (e) {
        flash(e.message);
      }
    },
  }, h("label", { title: "Another desk's queue: the review leaves this one, its claim released; its SLA stays" }, "Move to queue", queue),
  h("label", { title: "Said to the desk that receives it" }, "Note", note),
  h("button", { type: "submit", class: "secondary" }, "Move"));
}

// ---- instances -----------------------------------------------------------

const instanceFilters = ["", "starting", "queued", "in_progress", "waiting_review", "waiting_event", "finished", "completed", "rejected", "failed", "canceled"];
// Where an instance stands against its process's SLA.
const slaFilters = ["", "on_track", "overdue", "met", "missed"];
const slaText = { on_track: "on track", overdue: "overdue", met: "met", missed: "missed" };
const slaBadge = (s) => h("span", { class: "badge " + s }, slaText[s] || s);

// instancesView lists a process's instances, newest first, and opens one
// by id.
async function instancesView(q) {
  const { processes } = await api("GET", "/v1/processes?counts=false");
  const name = q.get("process") || processes[0]?.name || "";
  const status = instanceFilters.includes(q.get("status")) ? q.get("status") : "";
  const id = h("input", { name: "id", size: 36, placeholder: "instance id" });
  const procSel = h("select", { name: "process" }, processes.map((p) => h("option", { value: p.name, selected: p.name === name }, p.name)));
  const statusSel = h("select", { name: "status" }, instanceFilters.map((f) => h("option", { value: f, selected: f === status }, f || "all")));
  const sla = slaFilters.includes(q.get("sla")) ? q.get("sla") : "";
  const slaSel = h("select", { name: "sla", title: "Where the instances stand against their process's SLA" },
    slaFilters.map((f) => h("option", { value: f, selected: f === sla }, slaText[f] || "any")));
  const key = h("input", { name: "business_key", size: 16, value: q.get("business_key") || "" });
  const inputMatch = h("input", { name: "input", size: 20, placeholder: "field=value", value: q.get("input") || "",
    title: "Only the instances whose input has this field at this value (a string, number or boolean field)" });
  const filters = filterForm("instances", h("label", {}, "Process", procSel), h("label", {}, "Status", statusSel), h("label", {}, "SLA", slaSel), h("label", {}, "Business key", key),
    h("label", {}, "Input", inputMatch), h("button", { type: "submit" }, "List"));
  const lookup = h("form", {
    class: "filters",
    onsubmit: (ev) => { ev.preventDefault(); if (id.value.trim()) location.hash = "#/instances/" + encodeURIComponent(id.value.trim()); },
  }, h("label", {}, "Instance id", id), h("button", { type: "submit", class: "secondary" }, "Open"));

  let listing = h("p", { class: "muted" }, "No process is registered yet.");
  if (name) {
    const params = new URLSearchParams({ limit: "50" });
    for (const k of ["status", "sla", "business_key", "after"]) if (q.get(k)) params.set(k, q.get(k));
    const [field, ...value] = (q.get("input") || "").split("=");
    if (field.trim() && value.length) params.set("input." + field.trim(), value.join("="));
    let page;
    try {
      page = await api("GET", `/v1/processes/${encodeURIComponent(name)}/instances?${params}`);
    } catch (e) {
      page = null;
      listing = h("p", {}, e.message); // a key limited to other processes, say
    }
    const more = new URLSearchParams(q);
    if (page?.next) more.set("after", page.next);
    if (page) listing = [
      table([
        { title: "Business key", cell: (i) => link("#/instances/" + encodeURIComponent(i.id), i.business_key) },
        { title: "Status", cell: (i) => badge(i.status) },
        { title: "Version", num: true, cell: (i) => `v${i.version}` },
        { title: "Started", cell: (i) => when(i.created_at) },
        { title: "Took", num: true, cell: (i) => (i.finished_at ? duration((new Date(i.finished_at) - new Date(i.created_at)) / 1000) : "—") },
        { title: "SLA", cell: (i) => (i.sla_status ? slaBadge(i.sla_status) : "—") },
        { title: "Started by", cell: (i) => i.created_by },
      ], page.instances, (i) => { location.hash = "#/instances/" + encodeURIComponent(i.id); }),
      page.next ? h("p", {}, link("#/instances?" + more, "Next page →")) : null,
      status === "failed" && page.instances.length ? retryAll(page.instances) : null,
    ];
  }
  render(h("h1", {}, "Instances"), filters, listing, h("h2", {}, "Open one by id"), lookup);
}

// retryAll is a button that retries the failed instances listed, one
// after the other (after an outage of a partner, say), and says how it went.
function retryAll(instances) {
  return h("p", {}, actionButton(`Retry these ${instances.length} from their failed steps`, async () => {
    if (!confirm(`Run ${instances.length} failed instance(s) again from the step that failed?`)) return;
    const refused = [];
    let queued = 0;
    for (const i of instances) {
      try {
        const out = await api("POST", `/v1/instances/${encodeURIComponent(i.id)}/retry`, { reason: "retried from the instance list" });
        if (out.held) queued++; // waits for a slot under the concurrency limit, or for the process's resume
      } catch (e) { refused.push(`${i.business_key}: ${e.message}`); }
    }
    await route();
    flash(`Retried ${instances.length - refused.length} of ${instances.length}.${queued ? ` ${queued} wait: queued under the concurrency limit, or held by a pause.` : ""}${refused.length ? " Not retried: " + refused.join("; ") : ""}`, refused.length ? "error" : "info");
  }));
}

// undeliveredTable lists webhooks given up (the receiver refused them, or
// never answered), each pending one with a button that sends it again;
// withInstance adds a column linking each to its instance.
function undeliveredTable(hooks, withInstance) {
  return table([
    ...(withInstance ? [{ title: "Instance", cell: (w) => link("#/instances/" + encodeURIComponent(w.instance_id), `${w.process} ${w.instance_id}`) }] : []),
    { title: "Event", cell: (w) => w.event },
    { title: "To", cell: (w) => w.url },
    { title: "Attempts", num: true, cell: (w) => w.attempts },
    { title: "Last error", cell: (w) => [w.error, " (", when(w.failed_at), ")"] },
    { title: "", cell: (w) => (w.redelivered_at ? `redelivered by ${w.redelivered_by}, ${when(w.redelivered_at)}`
      : actionButton("Redeliver", async () => {
        // Refused, it stays pending with one more attempt: show that too.
        try { await api("POST", `/v1/webhooks/undelivered/${w.id}/redeliver`); } catch (e) { await route(); throw e; }
        await route();
        flash(`${w.event} was delivered to ${w.url}.`, "info");
      }, { class: "secondary", "aria-label": `Redeliver ${w.event}` })) },
  ], hooks);
}

// webhooksView lists the webhooks given up, pending ones by default, and
// sends them again: one, or those listed, oldest first (the order the
// receiver should have had them in), stopping at the first it refuses.
async function webhooksView(q) {
  if (!can.instances()) return render(h("p", {}, "Webhooks are for system and engineer keys."));
  const status = q.get("status") || "pending";
  const params = new URLSearchParams({ status, limit: "100" });
  for (const k of ["process", "after"]) if (q.get(k)) params.set(k, q.get(k));
  const page = await api("GET", "/v1/webhooks/undelivered?" + params);
  const statusSel = h("select", { name: "status" }, ["pending", "redelivered", "all"].map((v) => h("option", { value: v, selected: v === status }, v)));
  const form = filterForm("webhooks", h("label", {}, "Process", h("input", { name: "process", size: 16, value: q.get("process") || "" })),
    h("label", {}, "Status", statusSel), h("button", { type: "submit" }, "Filter"));
  const pending = page.webhooks.filter((w) => !w.redelivered_at);
  const more = new URLSearchParams(q);
  if (page.next) more.set("after", page.next);
  render(
    h("h1", {}, "Webhooks not delivered"),
    h("p", { class: "muted" }, "Callbacks and escalation notices the receiver refused (4xx), or did not take within its attempts (about an hour). Fix the receiver, then send them again: the same body and Idempotency-Key."),
    form,
    page.webhooks.length ? undeliveredTable(page.webhooks, true) : h("p", { class: "muted" }, status === "pending" ? "None pending." : "None."),
    page.next ? h("p", {}, link("#/webhooks?" + more, "Next page →")) : null,
    pending.length > 1 ? h("p", {}, actionButton(`Redeliver these ${pending.length}, oldest first`, async () => {
      if (!confirm(`Send ${pending.length} webhook(s) again, oldest first?`)) return;
      let sent = 0;
      for (const w of [...pending].reverse()) { // listed newest first
        try {
          await api("POST", `/v1/webhooks/undelivered/${w.id}/redeliver`);
          sent++;
        } catch (e) {
          if (e.status === 409) continue; // redelivered meanwhile
          await route();
          flash(`Redelivered ${sent} of ${pending.length}; ${w.event} of ${w.instance_id} was refused, so the ones after it were not sent: ${e.message}`);
          return;
        }
      }
      await route();
      flash(`Redelivered ${sent} of ${pending.length}.`, "info");
    })) : null,
  );
}

// instanceActionForm is a reason and a button that posts it to one of an
// instance's actions (cancel, retry), after the user confirms.
function instanceActionForm(path, { action, label, kind, placeholder, ask, done }) {
  const reason = h("input", { name: "reason", size: 40, maxlength: 1000, placeholder });
  return h("form", {
    class: "filters",
    onsubmit: async (ev) => {
      ev.preventDefault();
      if (!confirm(ask)) return;
      try {
        const out = await api("POST", `${path}/${action}`, reason.value.trim() ? { reason: reason.value.trim() } : undefined);
        await route();
        flash(done(out), "info");
      } catch (e) { flash(e.message); }
    },
  }, h("label", {}, "Reason", reason), h("button", { type: "submit", class: kind }, label));
}

// eventForm sends an instance one of the events its definition's event
// steps wait for, with data: what the other system would have sent, when
// an operator confirms it by hand.
function eventForm(path, key, names) {
  const name = h("select", { name: "event", "aria-label": "Event" }, names.map((n) => h("option", { value: n }, n)));
  const data = h("textarea", { name: "data", rows: 2, placeholder: '{"ref": "…"} (optional)', "aria-label": "Event data (JSON)" });
  const eventID = h("input", { name: "event-id", size: 12, placeholder: "optional", "aria-label": "Event id (tells apart events of one name)" });
  return h("form", {
    class: "filters",
    onsubmit: async (ev) => {
      ev.preventDefault();
      try {
        let body;
        try { body = data.value.trim() ? JSON.parse(data.value) : undefined; } catch { throw new Error("The event's data is not JSON."); }
        if (body !== undefined && (typeof body !== "object" || body === null || Array.isArray(body))) throw new Error("The event's data must be a JSON object.");
        if (!confirm(`Send ${name.value} to ${key}, as the other system would?`)) return;
        await api("POST", `${path}/events`, { name: name.value, id: eventID.value.trim() || undefined, data: body });
        await route();
        flash(`Sent ${name.value} to ${key}.`, "info");
      } catch (e) { flash(e.message); }
    },
  }, h("label", {}, "Event", name), h("label", { title: "Tells apart events of one name, for a step that waits for several (shipment numbers)" }, "Id", eventID),
  h("label", {}, "Data", data), h("button", { type: "submit" }, "Send event"));
}

async function instanceView(id) {
  const path = "/v1/instances/" + encodeURIComponent(id);
  const [inst, dec, life, hooks] = await Promise.all([api("GET", path), api("GET", path + "/decisions"), api("GET", path + "/timeline"),
    api("GET", "/v1/webhooks/undelivered?" + new URLSearchParams({ instance_id: id, status: "all" }))]);
  const decisions = dec.decisions || [];
  // Every event received by name (a state saved before the log was kept
  // has the first of each only).
  const eventLog = inst.event_log || Object.fromEntries(Object.entries(inst.events || {}).map(([n, e]) => [n, [e]]));
  // The events its event steps wait for that have not come yet.
  let waitingFor = [];
  if (["starting", "running", "waiting_review", "waiting_event"].includes(inst.status) && (inst.plan || []).some((p) => p.kind === "event")) {
    const def = await api("GET", `/v1/processes/${encodeURIComponent(inst.process)}?version=${inst.version}`);
    const steps = [...(def.definition.steps || []), ...(def.definition.catalog || [])];
    // A name is still awaited while fewer of its events came than a step counts.
    const want = {};
    for (const s of steps) if (s.kind === "event" && s.event) want[s.event.name] = Math.max(want[s.event.name] || 0, s.event.count || 1);
    waitingFor = Object.keys(want).filter((n) => (eventLog[n] || []).length < want[n]);
  }
  const planCols = [
    { title: "Step", cell: (p) => p.id },
    { title: "Kind", cell: (p) => p.kind },
    { title: "State", cell: (p) => badge(p.state) },
    { title: "Note", cell: (p) => [p.origin === "added" ? `added by ${p.added_by || "a policy"} ` : "", p.origin === "compensation" ? `undoes ${p.compensates} ` : "", p.skipped_by ? `skipped by ${p.skipped_by} ` : "", p.mandatory ? "mandatory " : "", p.error || "",
      // A process step's instance of the other process.
      inst.results?.[p.id]?.instance_id && p.kind === "process" ? link("#/instances/" + encodeURIComponent(inst.results[p.id].instance_id), `${inst.results[p.id].process} instance`) : ""] },
    { title: "Took", num: true, cell: (p) => (p.started_at && p.finished_at ? duration((new Date(p.finished_at) - new Date(p.started_at)) / 1000) : "—") },
  ];
  const key = inst.business_key;
  const running = ["starting", "running", "waiting_review", "waiting_event"].includes(inst.status);
  const cancelForm = running ? instanceActionForm(path, {
    action: "cancel", label: "Cancel instance", kind: "danger", placeholder: "why (kept as the instance's error)",
    ask: `Cancel ${key}? Its remaining steps will not run.`,
    done: (out) => (out.status === "canceled" ? `${key} is canceled.` : `${key} is being canceled.`),
  }) : inst.status === "failed" && inst.held ? instanceActionForm(path, {
    // Its retry waits for a slot under the process's concurrency limit,
    // or for its paused process to be resumed.
    action: "cancel", label: "Withdraw the queued retry", kind: "danger", placeholder: "why",
    ask: `Withdraw the queued retry of ${key}? It stays failed.`,
    done: () => `The retry of ${key} is withdrawn.`,
  }) : null;
  const retryForm = inst.status === "failed" && !inst.held ? instanceActionForm(path, {
    action: "retry", label: "Retry from the failed step", kind: "", placeholder: "why (kept with the retry)",
    ask: `Run ${key} again from the step that failed? The steps before it will not run again.`,
    done: (out) => (out.held ? `The retry of ${key} is queued: ${out.held}` : out.status === "failed" ? `${key} is being retried.` : `${key} runs again (${out.status}).`),
  }) : null;
  render(
    h("p", {}, link("#/instances?process=" + encodeURIComponent(inst.process), `← ${inst.process} instances`)),
    h("h1", {}, `${inst.process} — ${inst.business_key}`),
    h("div", { class: "card" }, facts([
      ["Status", badge(inst.status)],
      ["Held", inst.held],
      ["Instance", inst.id],
      ["Definition", `${inst.process} v${inst.version}`],
      ["Started", when(inst.created_at)],
      ["Due", inst.due_at ? [when(inst.due_at), inst.sla_status ? [" ", slaBadge(inst.sla_status)] : null] : null],
      ["Started by", inst.created_by?.startsWith("parent:")
        ? ["step ", inst.created_by.split("/").pop(), " of ", link("#/instances/" + encodeURIComponent(inst.created_by.slice(7).split("/")[0]), inst.created_by.slice(7).split("/")[0])]
        : inst.created_by],
      ["Error", inst.error],
      ["Classification", inst.classification ? `${inst.classification.label} (${pct(inst.classification.confidence)})` : null],
    ])),
    waitingFor.length ? eventForm(path, key, waitingFor) : null,
    cancelForm,
    retryForm,
    h("h2", {}, "Plan"),
    table(planCols, inst.plan || []),
    Object.keys(eventLog).length ? [h("h2", {}, "Events received"), table([
      { title: "Event", cell: ([name]) => name },
      { title: "Id", cell: ([, e]) => e.id || "—" },
      { title: "When", cell: ([, e]) => when(e.at) },
      { title: "From", cell: ([, e]) => e.by },
      { title: "Data", cell: ([, e]) => (e.data ? JSON.stringify(e.data) : "—") },
    ], Object.entries(eventLog).flatMap(([name, es]) => es.map((e) => [name, e])))] : null,
    inst.reviews?.length ? [h("h2", {}, "Reviews"), table([
      { title: "Step", cell: (v) => v.step },
      { title: "Queue", cell: (v) => v.queue },
      { title: "Why", cell: (v) => v.reason || "—" },
      { title: "Status", cell: (v) => badge(v.status) },
      { title: "Verdict", cell: (v) => (v.verdict ? `${v.verdict} by ${v.reviewer}` : "—") },
    ], inst.reviews, can.review() ? (v) => { location.hash = "#/reviews/" + encodeURIComponent(v.id); } : null)] : null,
    hooks.webhooks.length ? [h("h2", {}, "Webhooks not delivered"), undeliveredTable(hooks.webhooks)] : null,
    h("h2", {}, `Decisions (${decisions.length})`),
    decisions.length ? decisions.map(decisionDetails) : h("p", { class: "muted" }, "No decision yet."),
    h("h2", {}, "Timeline"),
    h("details", { class: "timeline" }, h("summary", {}, `${life.timeline.length} moments, in the order they happened`), table([
      { title: "When", cell: (e) => when(e.at) },
      { title: "", cell: (e) => badge(e.kind) },
      { title: "What", cell: (e) => e.what },
    ], life.timeline)),
    h("h2", {}, "Input"), json(inst.input),
    inst.results && Object.keys(inst.results).length ? [h("h2", {}, "Results"), json(inst.results)] : null,
  );
  if (["starting", "running", "waiting_review", "waiting_event"].includes(inst.status)) {
    refresh = setInterval(() => { if (!document.hidden && !["INPUT", "TEXTAREA", "SELECT"].includes(document.activeElement?.tagName)) route(); }, 5000);
  }
}

function actionText(applied) {
  const a = applied.action || {};
  let text = "";
  if (a.skip) text = `skip ${a.skip}`;
  else if (a.add) text = `add ${a.add}${a.before ? " before " + a.before : ""}${a.after ? " after " + a.after : ""}`;
  else if (a.review) text = `review in ${a.review.queue || "a queue"}`;
  else if (a.set) text = `set ${a.set.name}`;
  return applied.policy_id ? `${text} (${applied.policy_id})` : text;
}

function decisionDetails(d) {
  const applied = (d.applied || []).map(actionText);
  const body = h("div", {}, h("p", { class: "muted" }, "Loading the explanation…"));
  const el = h("details", {
    ontoggle: async () => {
      if (!el.open || el.dataset.loaded) return;
      el.dataset.loaded = "1";
      try {
        const x = await api("GET", `/v1/decisions/${encodeURIComponent(d.id)}/explanation`);
        body.replaceChildren(h("pre", {}, x.text), h("p", { class: "muted" }, `record hash ${x.hash}`));
      } catch (e) {
        body.replaceChildren(h("p", {}, e.message));
      }
    },
  },
  h("summary", {}, `#${d.seq} before ${d.step} — `, applied.length ? applied.join("; ") : "no action", " · ", when(d.time)),
  body);
  return el;
}

// ---- processes, KPIs and policies ----------------------------------------

async function processesView() {
  const { processes } = await api("GET", "/v1/processes");
  // A count links to the instances it counts (without opening the process).
  const count = (p, n, status, warn) => n
    ? h("a", { href: `#/instances?process=${encodeURIComponent(p.name)}&status=${status}`, class: warn ? "warn" : "", onclick: (ev) => ev.stopPropagation() }, String(n))
    : h("span", { class: "muted" }, "0");
  render(h("h1", {}, "Processes"), table([
    { title: "Process", cell: (p) => [link("#/processes/" + encodeURIComponent(p.name), p.name), p.paused ? [" ", badge("paused")] : null] },
    { title: "Latest version", num: true, cell: (p) => p.version },
    { title: "In progress", num: true, cell: (p) => count(p, p.in_progress, "in_progress") },
    { title: "Waiting for review", num: true, cell: (p) => count(p, p.waiting_review, "waiting_review") },
    { title: "Failed (24 h)", num: true, cell: (p) => count(p, p.failed_24h, "failed", true) },
    { title: "Queued", num: true, cell: (p) => count(p, p.queued || 0, "queued") },
    { title: "By", cell: (p) => p.author },
    { title: "Registered", cell: (p) => when(p.created_at) },
  ], processes, (p) => { location.hash = "#/processes/" + encodeURIComponent(p.name); }));
}

const windows = { "1d": "6h", "7d": "1d", "30d": "1d", "90d": "7d" };

async function processView(name, q) {
  const since = windows[q.get("since")] ? q.get("since") : "7d";
  const enc = encodeURIComponent(name);
  const [def, k, pol, shadow, figures, activity] = await Promise.all([
    api("GET", "/v1/processes/" + enc),
    api("GET", `/v1/processes/${enc}/kpis?since=${since}&bucket=${windows[since]}`),
    api("GET", "/v1/policies?process=" + enc),
    api("GET", `/v1/policies/shadow-report?process=${enc}&since=${since}`),
    api("GET", `/v1/processes/${enc}/steps?since=${since}`),
    api("GET", `/v1/policies/activity?process=${enc}&since=${since}`),
  ]);
  // What each live policy version did in the window.
  const did = (p) => activity.policies.find((a) => a.id === p.id && a.version === p.version && (a.mode === "shadow") === (p.mode === "shadow"));
  const sig = def.definition?.signals?.length ? await api("GET", `/v1/processes/${enc}/signals?since=${since}&bucket=${chartBuckets[since]}&flagged=5`) : null;
  const classifier = def.definition?.classify?.name;
  const quality = classifier ? await api("GET", `/v1/classifiers/${encodeURIComponent(classifier)}/quality?since=${since}&bucket=${windows[since]}`) : null;
  const o = k.overall;
  const tile = (v, label) => h("div", { class: "tile" }, h("div", { class: "v" }, v), h("div", { class: "k" }, label));
  const sinceSel = h("select", { onchange: (ev) => { location.hash = `#/processes/${enc}?since=${ev.target.value}`; } },
    Object.keys(windows).map((w) => h("option", { value: w, selected: w === since }, `last ${w}`)));
  const kpiCols = (first) => [first,
    { title: "Started", num: true, cell: (x) => num(x.started) },
    { title: "Completed", num: true, cell: (x) => num(x.completed) },
    { title: "Rejected", num: true, cell: (x) => num(x.rejected) },
    { title: "Failed", num: true, cell: (x) => num(x.failed) },
    { title: "Canceled", num: true, cell: (x) => num(x.canceled) },
    { title: "Error rate", num: true, cell: (x) => pct(x.error_rate) },
    { title: "Cycle p50", num: true, cell: (x) => duration(x.cycle_time_seconds?.p50) },
    { title: "Cycle p90", num: true, cell: (x) => duration(x.cycle_time_seconds?.p90) },
    { title: "Reviewed", num: true, cell: (x) => pct(x.review_rate) },
  ];
  // The steps as they ran in the window (those policies added among
  // them), else as the definition lists them.
  const mandatory = new Set((def.definition?.steps || []).filter((s) => s.mandatory).map((s) => s.id));
  const steps = figures.steps.length ? figures.steps : (def.definition?.steps || []).map((s) => ({ id: s.id, kind: s.kind }));
  const byPolicy = (m) => Object.entries(m || {}).map(([p, n]) => `${p} ×${n}`).join(", ");
  render(
    h("p", {}, link("#/processes", "← Processes")),
    h("h1", {}, `${name} v${def.version}`),
    // A paused process holds its new instances until it is resumed.
    def.paused ? h("div", { class: "card paused" }, h("p", {}, badge("paused"), ` by ${def.paused.changed_by} `, when(def.paused.changed_at),
      def.paused.note ? `: ${def.paused.note}` : "", ". Its new instances are stored and held, and retries of its failed ones wait; they start when it is resumed.",
      // Without a limit, what is queued is the retries the pause holds.
      def.queued && !def.definition?.concurrency ? [" ", link(`#/instances?process=${enc}&status=queued`, `${def.queued} ${def.queued === 1 ? "retry waits" : "retries wait"}`), "."] : null)) : null,
    // A concurrency limit queues the starts beyond it.
    def.definition?.concurrency ? h("p", { class: "concurrency" }, `Runs at most ${def.definition.concurrency} at once; `,
      def.queued ? link(`#/instances?process=${enc}&status=queued`, `${def.queued} queued`) : "none queued", ".") : null,
    h("div", { class: "actions" }, actionButton(def.paused ? "Resume the process" : "Pause the process", async () => {
      const verb = def.paused ? "resume" : "pause";
      if (!def.paused && !confirm(`Pause ${name}? Its new instances will be held, not started, until it is resumed.`)) return;
      await api("POST", `/v1/processes/${enc}/${verb}`, {});
      await route();
      flash(def.paused ? `${name} runs again; its held instances are starting.` : `${name} is paused: its new instances are held.`, "info");
    }, { class: def.paused ? "" : "secondary" })),
    h("div", { class: "filters" }, h("label", {}, "Window", sinceSel),
      link(`#/instances?process=${enc}&status=failed`, "Failed instances"),
      link(`#/instances?process=${enc}&status=waiting_review`, "Waiting for review"),
      def.definition?.sla ? link(`#/instances?process=${enc}&sla=overdue`, "Running late") : null,
      link(`#/instances?process=${enc}`, "All instances")),
    h("p", { class: "muted" }, k.note || ""),
    h("div", { class: "tiles" },
      tile(num(o.started), "started"),
      tile(num(o.in_progress), `in progress (${num(o.waiting_review)} waiting for review${o.waiting_event ? `, ${num(o.waiting_event)} for an event` : ""})`),
      tile(num(o.completed), "completed"),
      tile(pct(o.error_rate), "error rate"),
      tile(duration(o.cycle_time_seconds?.p50), "cycle time p50"),
      tile(duration(o.cycle_time_seconds?.p90), "cycle time p90"),
      tile(pct(o.review_rate), "instances reviewed"),
      tile(o.reviews_decided ? duration(o.review_wait_seconds) : "—", "mean review wait"),
      o.sla ? tile(o.sla.met + o.sla.missed ? pct(o.sla.met_rate) : "—", `met the SLA (${num(o.sla.overdue)} running late)`) : null),
    h("h2", {}, "By period"),
    table(kpiCols({ title: "From", cell: (x) => new Date(x.start).toLocaleString() }), k.periods.filter((p) => p.started > 0).reverse()),
    k.versions.length > 1 ? [h("h2", {}, "By definition version"), table(kpiCols({ title: "Version", cell: (x) => `v${x.version}` }), k.versions)] : null,
    k.canaries.length ? [h("h2", {}, "Canaries"), k.canaries.map((c) => h("div", { class: "card" },
      h("p", {}, `${c.policy_id}: v${c.canary_version} on ${c.percent}% against v${c.active_version ?? "—"}, since `, when(c.since)),
      table(kpiCols({ title: "Cohort", cell: (x) => x.cohort }), [{ cohort: "canary", ...c.canary }, { cohort: "rest", ...c.rest }])))] : null,
    sig ? signalsSection(sig, since) : null,
    def.schedules?.length ? [h("h2", {}, "Schedules"), table([
      { title: "Schedule", cell: (x) => x.id },
      { title: "When", cell: (x) => h("code", {}, x.cron) },
      { title: "Time zone", cell: (x) => x.timezone },
      { title: "Next start", cell: (x) => (x.paused ? [badge("paused"), ` by ${x.changed_by}`, x.note ? `: ${x.note}` : ""] : when(x.next_run)) },
      { title: "Instances", cell: (x) => link(`#/instances?process=${enc}`, "list") },
      { title: "", cell: (x) => actionButton(x.paused ? "Resume" : "Pause", async () => {
        const verb = x.paused ? "resume" : "pause";
        await api("POST", `/v1/processes/${enc}/schedules/${encodeURIComponent(x.id)}/${verb}`, {});
        await route();
        flash(`Schedule ${x.id} ${x.paused ? "resumed" : "paused"}.`, "info");
      }, { class: "secondary" }) },
    ], def.schedules)] : null,
    h("h2", {}, "Policies in force"),
    table([
      { title: "Policy", cell: (p) => link("#/policies/" + encodeURIComponent(p.id), p.id) },
      { title: "Version", num: true, cell: (p) => p.version },
      { title: "Mode", cell: (p) => [badge(p.mode), p.percent ? ` ${p.percent}%` : ""] },
      { title: "By", cell: (p) => p.author },
      { title: "Since", cell: (p) => when(p.created_at) },
      { title: "Matched", num: true, cell: (p) => (did(p) ? `${num(did(p).matched)} of ${num(did(p).evaluated)}` : "—") },
      { title: "Applied", cell: (p) => Object.entries(did(p)?.applied || {}).map(([kind, n]) => `${kind} ×${n}`).join(", ") || "—" },
      { title: "Refused", num: true, cell: (p) => (did(p)?.rejected ? num(did(p).rejected) : "—") },
      { title: "Errors", cell: (p) => (did(p)?.errors ? h("span", { title: did(p).last_error }, `${num(did(p).errors)}: ${did(p).last_error}`) : "—") },
    ], pol.policies),
    k.policy_changes.length ? [h("h2", {}, "Policy changes in the window"), table([
      { title: "When", cell: (c) => when(c.at) },
      { title: "Policy", cell: (c) => link("#/policies/" + encodeURIComponent(c.policy_id), c.policy_id) },
      { title: "Change", cell: (c) => `${c.mode}${c.version ? " v" + c.version : ""}${c.percent ? " " + c.percent + "%" : ""}` },
      { title: "By", cell: (c) => c.author },
      { title: "Note", cell: (c) => c.note || "" },
    ], k.policy_changes.slice().reverse())] : null,
    shadow.policies?.length ? [h("h2", {}, "Shadows and canaries against what was applied"),
      h("p", { class: "muted" }, `${num(shadow.with_shadow)} of ${num(shadow.decisions)} decisions evaluated a shadow; ${num(shadow.disagreements)} would have gone otherwise.`),
      table([
        { title: "Policy", cell: (x) => link("#/policies/" + encodeURIComponent(x.id), x.id) },
        { title: "Version", cell: (x) => (x.versions || []).map((v) => "v" + v).join(", ") },
        { title: "Evaluated", num: true, cell: (x) => num(x.evaluated) },
        { title: "Matched", num: true, cell: (x) => num(x.matched) },
        { title: "Disagreed", num: true, cell: (x) => num(x.disagreed) },
        { title: "Rate", num: true, cell: (x) => pct(x.disagreement_rate) },
        { title: "For example", cell: (x) => (x.examples || []).slice(0, 3).map((e) => h("div", {}, link("#/instances/" + encodeURIComponent(e.instance_id), e.step), `: ${(e.before || []).join(", ") || "nothing"} → ${(e.after || []).join(", ") || "nothing"}`)) },
      ], shadow.policies)] : null,
    classifier ? classifyTry(name, def.version, def.definition.classify) : null,
    quality ? [h("h2", {}, `Classifier ${classifier}: reviewers' verdicts`),
      quality.overall.verdicts === 0
        ? h("p", { class: "muted" }, "No verdict on a classification in the window yet.")
        : [h("div", { class: "tiles" },
          tile(num(quality.overall.verdicts), "verdicts"),
          tile(pct(quality.overall.accuracy), "model agreed with reviewers"),
          tile(pct(quality.overall.mean_confidence), "mean confidence"),
          tile(quality.overall.ece.toFixed(3), "calibration error (ECE)")),
        table([
          { title: "Model's label", cell: (x) => x.label },
          { title: "Verdicts", num: true, cell: (x) => num(x.verdicts) },
          { title: "Agreed", num: true, cell: (x) => pct(x.accuracy) },
          { title: "Confidence", num: true, cell: (x) => pct(x.mean_confidence) },
          { title: "Corrected to", cell: (x) => Object.entries(x.corrected_to || {}).map(([l, n]) => `${l} ×${n}`).join(", ") },
        ], quality.labels)]] : null,
    h("h2", {}, "Steps"),
    figures.instances ? h("p", { class: "muted" }, `Over the ${num(figures.instances)} instances started in the last ${since}: policies added steps to ${num(figures.adapted.added)} and skipped steps of ${num(figures.adapted.skipped)}.`) : null,
    table([
      { title: "Step", cell: (s) => s.id },
      { title: "Kind", cell: (s) => s.kind || "task" },
      { title: "Mandatory", cell: (s) => (mandatory.has(s.id) ? "yes" : "") },
      { title: "In plan", num: true, cell: (s) => (s.in_plan === undefined ? "—" : num(s.in_plan)) },
      { title: "Added", num: true, cell: (s) => (s.added ? h("span", { title: "by " + byPolicy(s.added_by) }, num(s.added)) : s.in_plan === undefined ? "—" : "0") },
      { title: "Skipped", num: true, cell: (s) => (s.skipped ? h("span", { title: "by " + byPolicy(s.skipped_by) }, num(s.skipped)) : s.in_plan === undefined ? "—" : "0") },
      { title: "Done", num: true, cell: (s) => (s.in_plan === undefined ? "—" : num(s.done)) },
      { title: "Failed", num: true, cell: (s) => (s.in_plan === undefined ? "—" : num(s.failed)) },
      { title: "Reviews", num: true, cell: (s) => (s.in_plan === undefined ? "—" : num(s.reviews)) },
      { title: "Took p50", num: true, cell: (s) => duration(s.duration_seconds?.p50) },
      { title: "Took p90", num: true, cell: (s) => duration(s.duration_seconds?.p90) },
    ], steps),
  );
}

// classifyTry lets an engineer see how the process's classifier reads a
// text before any instance does: the label, the confidence, whether an
// instance would be reviewed, the fields, the runners-up.
function classifyTry(name, version, spec) {
  const text = h("textarea", { name: "text", rows: 3, placeholder: `A ${(spec.fields || [spec.field]).join(" or ")} as it would arrive`, "aria-label": "Text to classify" });
  const out = h("div", { class: "classified" });
  const examples = examplesSection(spec);
  const go = actionButton("Classify", async () => {
    if (!text.value.trim()) throw new Error("Write a text to classify first.");
    const said = text.value;
    const r = await awaited(() => api("POST", `/v1/processes/${encodeURIComponent(name)}/classify?version=${version}`, { text: said }));
    const c = r.classification;
    const review = c.fallback ? `yes: the LLM failed (${c.fallback})` : c.review ? `yes: confidence under ${pct(r.review_below)}` : "no";
    const fields = Object.entries(c.fields || {}).map(([k, v]) => `${k} = ${v === null ? "—" : v}`).join(", ");
    // Teach it: the text, labeled as it should be, becomes an example.
    const label = h("select", { name: "label", "aria-label": "Label to teach" }, spec.labels.map((l) => h("option", { value: l, selected: l === c.label }, l)));
    const teach = actionButton("Add as an example", async () => {
      const added = await api("POST", `/v1/classifiers/${encodeURIComponent(spec.name)}/examples`, { text: said, label: label.value });
      const later = added.embedding_pending ? " The embeddings provider did not answer: it becomes a similar case once the server has embedded it." : "";
      flash(`Added as an example of ${label.value}: the classifier learns it at its next classification.${later}`, "info");
      await examples.reload();
    }, { class: "secondary" });
    out.replaceChildren(facts([
      ["Label", h("b", {}, c.label)],
      ["Confidence", pct(c.confidence)],
      ["Reviewed", review],
      ["Fields", fields],
      ["Or else", (c.alternatives || []).filter((a) => a.label !== c.label).map((a) => `${a.label} ${pct(a.probability)}`).join(", ")],
      ["Answered by", c.model],
    ]), h("div", { class: "actions teach" }, h("label", {}, "Should be ", label), teach));
  });
  return [h("h2", {}, `Classifier ${spec.name}: try it`),
    h("section", { class: "card classify-try" },
      h("p", { class: "muted" }, "How the classifier reads a text, as it would an instance's; nothing is stored unless you add it as an example."),
      text, h("div", { class: "actions" }, go), out),
    h("h2", {}, `Classifier ${spec.name}: how well it learns its examples`),
    evaluateSection(name, version, spec, examples),
    h("h2", {}, `Classifier ${spec.name}: examples`),
    examples];
}

// awaited calls the API again while it answers that the work asked for
// goes on (a preview or an evaluation past the request's time): the same
// request again waits for it.
async function awaited(call) {
  for (let asks = 0; ; asks++) {
    try {
      return await call();
    } catch (e) {
      if (e.status !== 503 || !/goes on/.test(e.message) || asks === 30) throw e;
    }
  }
}

// evaluateSection evaluates the classifier on its own examples: a model
// trained on all but a share of each label's, measured on those; the
// weakest labels and the surest mistakes are where examples are missing
// or wrong.
function evaluateSection(name, version, spec, examples) {
  const path = `/v1/classifiers/${encodeURIComponent(spec.name)}/examples`;
  // A stored example among the mistakes is relabeled (as the model read
  // it: the text added with that label, then the old one deleted unless
  // the same) or deleted, there and then.
  const fix = (m) => {
    if (!m.id) return h("span", { class: "muted", title: "Seed examples change with a new version of the definition" }, "seed");
    const done = h("span", { class: "muted" });
    const relabel = actionButton(`Relabel as ${m.predicted}`, async () => {
      const added = await api("POST", path, { text: m.text, label: m.predicted });
      if (added.id !== m.id) await api("DELETE", `${path}/${encodeURIComponent(m.id)}`);
      done.replaceChildren(`relabeled ${m.predicted}`);
      cell.replaceChildren(done);
      await examples.reload();
    }, { class: "secondary" });
    const del = actionButton("Delete", async () => {
      if (!confirm(`Delete the example "${m.text.slice(0, 60)}" (${m.label})? The classifier retrains without it.`)) return;
      await api("DELETE", `${path}/${encodeURIComponent(m.id)}`);
      done.replaceChildren("deleted");
      cell.replaceChildren(done);
      await examples.reload();
    }, { class: "secondary", "aria-label": `Delete the example ${m.id}` });
    const cell = h("span", { class: "actions" }, relabel, del);
    return cell;
  };
  const holdout = h("select", { name: "holdout", "aria-label": "How the examples are tested" },
    [0.1, 0.2, 0.3].map((v) => h("option", { value: v, selected: v === 0.2 }, `${v * 100}% of each label's examples held out`)),
    h("option", { value: "folds:5" }, "5-fold cross-validation: every example tested once (few examples)"));
  // The LLM (when the server has one) is asked about the held-out texts,
  // a request each, at most 200.
  const model = h("select", { name: "evaluate-model", "aria-label": "What is evaluated" },
    h("option", { value: "embedded" }, "the embedded classifier"),
    h("option", { value: "llm" }, "the LLM (a request per held-out text, at most 200)"));
  const out = h("div", { class: "evaluated" });
  const base = `/v1/processes/${encodeURIComponent(name)}/classify`;
  const go = actionButton("Evaluate", async () => {
    const llm = model.value === "llm";
    out.replaceChildren(h("p", { class: "muted" }, llm ? "Asking the LLM about the held-out texts…" : "Training a model on the other examples…"));
    const how = holdout.value.startsWith("folds:") ? { folds: Number(holdout.value.slice(6)) } : { holdout: Number(holdout.value) };
    if (llm) how.model = "llm";
    let r;
    try {
      r = await awaited(() => api("POST", `${base}/evaluate?version=${version}`, how));
    } catch (e) {
      out.replaceChildren();
      throw e;
    }
    show(r.evaluation, null);
  });
  // The last evaluation of the model picked is shown until the next one.
  const loadLast = () => {
    const picked = model.value;
    api("GET", `${base}/evaluation?version=${version}&model=${picked}`).then((r) => {
      if (!out.childNodes.length && model.value === picked) show(r.evaluation, h("p", { class: "muted last-evaluation" }, `Last evaluated ${when(r.evaluated_at)}${changedSince(r)}.`));
    }, (e) => { if (e.status !== 404) flash(e.message); });
  };
  model.addEventListener("change", () => { out.replaceChildren(); loadLast(); });
  loadLast();
  const changedSince = (r) => {
    const what = r.definition_changed && r.examples_changed ? "the classifier's definition and its examples have"
      : r.definition_changed ? "the classifier's definition has" : r.examples_changed ? "examples have" : "";
    return what ? `; ${what} changed since: evaluate again to see where it stands` : "";
  };
  const show = (e, note) => {
    out.replaceChildren(
      note || "",
      facts([
        ["Examples", e.folds ? `${num(e.examples)}, cross-validated over ${e.folds} folds: each tested once by a model that learned from ${num(e.train_examples)} others`
          : `${num(e.examples)}: ${num(e.train_examples)} learned from, ${num(e.test_examples)} held out`],
        ["Accuracy", pct(e.accuracy)],
        ["Macro-F1", pct(e.macro_f1)],
        ["On the surest 80%", pct(e.selective_accuracy_80)],
        ["Calibration error", pct(e.ece)],
        ["Model", e.model],
        ...(e.llm ? [["Asked", `${num(e.llm.asked)} held-out texts: ${num(e.llm.failed)} unanswered (counted wrong), ${num(e.llm.cached)} from its cache; ${num(e.llm.prompt_tokens + e.llm.completion_tokens)} tokens, p99 ${num(Math.round(e.p99_latency_ms))} ms${e.llm.shots_by_hashing ? `; ${num(e.llm.shots_by_hashing)} with few-shot examples by the hashing embedding (the embeddings provider failed)` : ""}`]] : []),
      ]),
      h("h3", {}, "The weakest labels"),
      table([
        { title: "Label", cell: (l) => l.label },
        { title: "Tested", num: true, cell: (l) => num(l.test) },
        { title: "Precision", num: true, cell: (l) => pct(l.precision) },
        { title: "Recall", num: true, cell: (l) => pct(l.recall) },
        { title: "F1", num: true, cell: (l) => pct(l.f1) },
        { title: "Taken for", cell: (l) => l.confused_with.map((c) => `${c.label} ×${c.count}`).join(", ") },
      ], e.labels.slice(0, 10)),
      h("h3", {}, "The surest mistakes"),
      h("p", { class: "muted" }, "An example labeled wrong, or two labels that read alike: relabel a stored one as the model read it, or delete it; the classifier retrains at its next classification."),
      table([
        { title: "Text", cell: (m) => (m.text.length > 120 ? m.text.slice(0, 117) + "…" : m.text) },
        { title: "Labeled", cell: (m) => m.label },
        { title: "Taken for", cell: (m) => m.predicted },
        { title: "Confidence", num: true, cell: (m) => pct(m.confidence) },
        { title: "", cell: fix },
      ], e.mistakes));
  };
  return h("section", { class: "card classify-evaluate" },
    h("p", { class: "muted" }, "A model is trained on the seed and stored examples less a share of each label's, and tried on those; the classifier that answers instances is not touched."),
    h("div", { class: "actions" }, model, holdout, go), out);
}

// examplesSection lists a classifier's stored examples (reviewers'
// corrections and those added here), newest first, 50 a page, by label
// and a piece of their text, with how many each label has; an engineer may
// delete one; reload fetches the page again.
function examplesSection(spec) {
  const box = h("section", { class: "card examples" }, h("p", { class: "muted" }, "Loading the examples…"));
  const path = `/v1/classifiers/${encodeURIComponent(spec.name)}/examples`;
  // A CSV of labeled texts (text,category, as adaptflow examples import
  // and ml eval read it) is added in batches.
  const file = h("input", { type: "file", name: "examples-file", accept: ".csv,text/csv", "aria-label": "CSV of labeled examples" });
  const importForm = h("div", { class: "actions import" }, h("label", {}, "Import a CSV (columns text and category) ", file),
    actionButton("Import", async () => {
      if (!file.files.length) throw new Error("Pick a CSV file first.");
      const examples = examplesFromCSV(await file.files[0].text(), spec.labels);
      let added = 0, pending = 0;
      // Batches of 200: within a key's burst at the default rate limit.
      for (let i = 0; i < examples.length; i += 200) {
        const r = await paced(() => api("POST", `${path}/batch`, { examples: examples.slice(i, i + 200) }));
        added += r.examples;
        if (r.embedding_pending) pending += r.examples;
        flash(`Importing: ${num(added)} of ${num(examples.length)} examples added…`, "info");
      }
      flash(`Imported ${num(added)} examples${pending ? ` (${num(pending)} wait for their embedding: the embeddings provider did not answer)` : ""}: the classifier learns them at its next classification.`, "info");
      file.value = "";
      await load();
    }, { class: "secondary" }));
  // A page of 50 at a time, newest first, by label and a piece of text;
  // pages holds the cursors of the pages before this one.
  const labelPick = h("select", { name: "examples-label", "aria-label": "Label of the examples" },
    h("option", { value: "" }, "every label"), spec.labels.map((l) => h("option", { value: l }, l)));
  const search = h("input", { type: "search", name: "examples-q", placeholder: "text holds…", "aria-label": "Text the examples hold" });
  let after = "", pages = [];
  const filters = h("form", { class: "actions filter", onsubmit: (ev) => {
    ev.preventDefault();
    after = ""; pages = [];
    load().catch((e) => flash(e.message));
  } }, labelPick, search, h("button", { type: "submit", class: "secondary" }, "Show"));
  const turn = (text, to, back) => actionButton(text, async () => {
    pages = back ? pages.slice(0, -1) : [...pages, after];
    after = to;
    await load();
  }, { class: "secondary" });
  const load = async () => {
    const q = new URLSearchParams({ limit: "50" });
    if (labelPick.value) q.set("label", labelPick.value);
    if (search.value.trim()) q.set("q", search.value.trim());
    if (after) q.set("after", after);
    const r = await api("GET", `${path}?${q}`);
    const list = r.examples || [];
    const seeds = (spec.examples || []).length;
    const counts = Object.entries(r.labels || {}).sort(([a, x], [b, y]) => y - x || (a < b ? -1 : 1));
    const filtered = labelPick.value || search.value.trim();
    box.replaceChildren(
      can.engineer() ? importForm : "",
      h("p", { class: "muted" }, `${num(r.total)} stored example${r.total === 1 ? "" : "s"} besides the definition's ${num(seeds)} seed example${seeds === 1 ? "" : "s"}.`),
      counts.length ? h("details", { class: "label-counts" }, h("summary", {}, `Examples per label (${counts.length} labels)`),
        table([{ title: "Label", cell: ([l]) => l }, { title: "Examples", num: true, cell: ([, n]) => num(n) }], counts)) : "",
      filters,
      table([
        { title: "Text", cell: (e) => (e.text.length > 120 ? e.text.slice(0, 117) + "…" : e.text) },
        { title: "Label", cell: (e) => e.label },
        { title: "From", cell: (e) => e.source },
        { title: "Added", cell: (e) => when(e.created_at) },
        { title: "", cell: (e) => actionButton("Delete", async () => {
          if (!confirm(`Delete the example "${e.text.slice(0, 60)}" (${e.label})? The classifier retrains without it.`)) return;
          await api("DELETE", `${path}/${encodeURIComponent(e.id)}`);
          flash("Example deleted: the classifier retrains without it.", "info");
          await load();
        }, { class: "secondary", "aria-label": `Delete the example ${e.id}` }) },
      ], list),
      h("div", { class: "actions" },
        pages.length ? turn("← Newer", pages[pages.length - 1], true) : "",
        r.next ? turn("Older →", r.next, false) : "",
        filtered && !list.length && !pages.length ? h("span", { class: "muted" }, "No example matches.") : "",
        filtered && list.length && can.engineer() ? actionButton("Delete every example shown", async () => {
          const what = [labelPick.value && `of ${labelPick.value}`, search.value.trim() && `holding "${search.value.trim()}"`].filter(Boolean).join(" ");
          if (!confirm(`Delete every stored example ${what}${r.next || pages.length ? " (on every page)" : ""}? The classifier retrains without them.`)) return;
          const q = new URLSearchParams();
          if (labelPick.value) q.set("label", labelPick.value);
          if (search.value.trim()) q.set("q", search.value.trim());
          const d = await api("DELETE", `${path}?${q}`);
          flash(`Deleted ${num(d.deleted)} example${d.deleted === 1 ? "" : "s"}: the classifier retrains without them.`, "info");
          after = ""; pages = [];
          await load();
        }, { class: "secondary" }) : ""));
  };
  box.reload = load;
  load().catch((e) => flash(e.message));
  return box;
}

// examplesFromCSV reads the labeled examples of a CSV whose header names
// the columns text and category (or label), as RFC 4180 quotes them; a
// text named twice takes its last label. A label the classifier lacks, or
// a row without its text, stops it before anything is sent.
function examplesFromCSV(csv, labels) {
  const rows = [];
  let row = [], field = "", quoted = false;
  csv = csv.replace(/^\uFEFF/, "");
  for (let i = 0; i < csv.length; i++) {
    const ch = csv[i];
    if (quoted) {
      if (ch === '"' && csv[i + 1] === '"') { field += '"'; i++; } else if (ch === '"') quoted = false; else field += ch;
    } else if (ch === '"') quoted = true;
    else if (ch === ",") { row.push(field); field = ""; } else if (ch === "\n" || ch === "\r") {
      if (ch === "\r" && csv[i + 1] === "\n") i++;
      row.push(field); field = "";
      if (row.some((f) => f !== "")) rows.push(row);
      row = [];
    } else field += ch;
  }
  row.push(field);
  if (row.some((f) => f !== "")) rows.push(row);
  const header = (rows.shift() || []).map((c) => c.trim().toLowerCase());
  const ti = header.indexOf("text"), li = header.indexOf("category") >= 0 ? header.indexOf("category") : header.indexOf("label");
  if (ti < 0 || li < 0) throw new Error(`The CSV needs the columns text and category (its header: ${header.join(",")}).`);
  const byText = new Map();
  rows.forEach((r, n) => {
    const text = r[ti] || "", label = (r[li] || "").trim();
    if (!text.trim()) throw new Error(`Row ${n + 2} has no text.`);
    if (!labels.includes(label)) throw new Error(`Row ${n + 2}: "${label}" is not one of the classifier's labels.`);
    byText.delete(text);
    byText.set(text, { text, label });
  });
  if (!byText.size) throw new Error("The CSV holds no examples.");
  return [...byText.values()];
}

// paced runs call, and again after the wait the server asks for while the
// key's rate limit refuses it (429), up to ten times.
async function paced(call) {
  for (let waits = 0; ; waits++) {
    try {
      return await call();
    } catch (e) {
      if (e.status !== 429 || waits === 10) throw e;
      await new Promise((ok) => setTimeout(ok, 1000 * (e.retryAfter || 1)));
    }
  }
}

// ---- signals ---------------------------------------------------------------

// chartBuckets are the periods of a signal's chart for each window: about
// a hundred points.
const chartBuckets = { "1d": "15m", "7d": "2h", "30d": "6h", "90d": "1d" };

function signalState(v) {
  if (!v) return ["no verdict", ""];
  if (v.warming_up) return ["warming up", "shadow"];
  if (v.anomalous) return ["anomalous", "failed"];
  if (v.recurring) return ["far off, recurring", "canary"];
  if (v.score >= 0.5) return ["off, not flagged", "canary"];
  return ["usual", "completed"];
}

const fmt = (x) => (x === undefined || x === null ? "—" : Number(x).toLocaleString(undefined, { maximumSignificantDigits: 4 }));

// signalsSection shows where each of the process's signals stands, a chart
// of the window, and when it fired.
function signalsSection(rep, since) {
  return [h("h2", {}, "Signals"), rep.signals.map((s) => {
    const p = s.latest;
    const [state, cls] = p ? signalState(p.verdict) : ["no observation yet", ""];
    const of = s.field ? ` of ${s.field}` : s.step ? ` of step ${s.step}` : "";
    return h("section", { class: "card signal", "data-signal": s.name },
      h("h3", {}, s.name, " ", h("span", { class: "muted" }, `${s.kind}${of}`), " ", h("span", { class: "badge " + cls }, state)),
      p ? h("p", {}, h("b", {}, fmt(p.value)), " ", when(p.at), p.verdict ? ` — ${p.verdict.reason}` : "") : h("p", { class: "muted" }, "Not observed yet: a value or duration is observed at an instance's decisions, an arrival rate once a ten-minute period with starts has passed."),
      h("div", { class: "actions" },
        h("span", { class: "muted" }, `${num(s.anomalous)} anomalous of ${num(s.observations)} observations in the last ${since}.`),
        s.observations ? actionButton("Download CSV", () => downloadObservations(rep.process, rep.version, s.name, since), { class: "secondary" }) : null),
      s.periods.length ? signalChart(s, rep) : null,
      s.flagged.length ? table([
        { title: "Flagged", cell: (f) => when(f.at) },
        { title: "Value", num: true, cell: (f) => fmt(f.value) },
        { title: "Instance", cell: (f) => (f.instance_id ? link("#/instances/" + encodeURIComponent(f.instance_id), f.instance_id) : "—") },
        { title: "Why", cell: (f) => f.verdict?.reason || "" },
      ], s.flagged) : null);
  })];
}

// downloadObservations saves a signal's observations in the window as a
// CSV file, fetched a page at a time through the API.
async function downloadObservations(processName, version, signal, since) {
  const cols = ["at", "value", "instance_id", "score", "anomalous", "warming_up", "recurring", "expected", "low", "high", "reason"];
  const cell = (v) => (v === undefined || v === null ? "" : /[",\n]/.test(String(v)) ? `"${String(v).replaceAll('"', '""')}"` : String(v));
  const lines = [cols.join(",")];
  let after = "";
  do {
    const page = await api("GET", `/v1/processes/${encodeURIComponent(processName)}/signals/${encodeURIComponent(signal)}/observations?since=${since}&version=${version}&limit=5000` + (after ? "&after=" + encodeURIComponent(after) : ""));
    for (const o of page.observations) {
      const v = o.verdict || {};
      lines.push([o.at, o.value, o.instance_id, v.score, v.anomalous, v.warming_up, v.recurring, v.expected, v.low, v.high, v.reason].map(cell).join(","));
    }
    after = page.next || "";
  } while (after);
  const a = h("a", { href: URL.createObjectURL(new Blob([lines.join("\n") + "\n"], { type: "text/csv" })), download: `${processName}-${signal}-${since}.csv` });
  document.body.append(a);
  a.click();
  a.remove();
  flash(`Downloaded ${num(lines.length - 1)} observations of ${signal}.`, "info");
}

// signalChart draws a signal's periods: the usual range (the mean
// baseline's band), the spread of values, their mean, and the periods with
// an anomaly in red.
function signalChart(s, rep) {
  const W = 720, H = 150, pad = 6;
  const t0 = new Date(rep.since).getTime(), t1 = new Date(rep.until).getTime(), step = rep.bucket_seconds * 1000;
  const { lo, hi, clipped } = chartScale(s.periods);
  const x = (p) => pad + ((new Date(p.start).getTime() + step / 2 - t0) / (t1 - t0)) * (W - 2 * pad);
  const y = (v) => H - pad - ((Math.min(hi, Math.max(lo, v)) - lo) / (hi - lo)) * (H - 2 * pad);
  const ns = "http://www.w3.org/2000/svg";
  const el = (tag, attrs, ...kids) => {
    const e = document.createElementNS(ns, tag);
    for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
    for (const c of kids) e.append(c);
    return e;
  };
  const title = (text) => el("title", {}, text);
  const svg = el("svg", { viewBox: `0 0 ${W} ${H}`, class: "chart", role: "img", "aria-label": `${s.name} over the window` });
  const width = Math.max(2, (step / (t1 - t0)) * (W - 2 * pad));
  for (const p of s.periods.filter((p) => p.baseline)) {
    svg.append(el("rect", { x: x(p) - width / 2, width, y: y(p.baseline.high), height: Math.max(1, y(p.baseline.low) - y(p.baseline.high)), class: "usual" }));
  }
  for (const p of s.periods) {
    svg.append(el("line", { x1: x(p), x2: x(p), y1: y(p.min), y2: y(p.max), class: "spread" }));
  }
  svg.append(el("polyline", { points: s.periods.map((p) => `${x(p)},${y(p.mean)}`).join(" "), class: "mean" }));
  for (const p of s.periods) {
    const label = `${new Date(p.start).toLocaleString()}: ${num(p.observations)} observed, mean ${fmt(p.mean)} (${fmt(p.min)} to ${fmt(p.max)})` +
      (p.baseline ? `, usual ${fmt(p.baseline.low)} to ${fmt(p.baseline.high)}` : "") + (p.anomalous ? `, ${p.anomalous} anomalous` : "");
    svg.append(el("circle", { cx: x(p), cy: y(p.anomalous ? p.max : p.mean), r: p.anomalous ? 4 : 2.5, class: p.anomalous ? "anomalous" : "point" }, title(label)));
    // A value off the scale: a mark at the edge it went past.
    if (p.max > hi) svg.append(el("path", { d: `M${x(p) - 5},${pad} L${x(p) + 5},${pad} L${x(p)},${pad - 6} Z`, class: "offscale" }, title(`${label}; ${fmt(p.max)} is above the scale`)));
    if (p.min < lo) svg.append(el("path", { d: `M${x(p) - 5},${H - pad} L${x(p) + 5},${H - pad} L${x(p)},${H - pad + 6} Z`, class: "offscale" }, title(`${label}; ${fmt(p.min)} is below the scale`)));
  }
  return h("figure", { class: "chart" }, svg,
    h("figcaption", { class: "muted" }, `${fmt(lo)} to ${fmt(hi)}; a dot per ${duration(rep.bucket_seconds)}: the mean (red: a period with an anomaly, at its greatest value), the line its spread, green the usual range.` +
      (clipped ? " Values far off the usual are drawn at the edge, marked by a triangle (hover for them), so that they do not flatten the rest." : "")));
}

async function policyView(id) {
  const enc = encodeURIComponent(id);
  const [st, vs] = await Promise.all([api("GET", "/v1/policies/" + enc), api("GET", `/v1/policies/${enc}/versions`)]);
  const latestDoc = await api("GET", `/v1/policies/${enc}/versions/${st.latest_version}`);
  const note = h("input", { name: "note", size: 40, placeholder: "note for the change log" });
  const percent = h("input", { name: "percent", type: "number", min: 1, max: 99, value: st.shadow_percent || 10, size: 4 });
  // A canary's guard: roll it back when its error rate rises too far
  // above the rest's, promote it when its time is up.
  const maxRise = h("input", { name: "max_error_rate_increase", type: "number", min: 0, max: 100, step: "any", size: 4, placeholder: "points" });
  const maxCycle = h("input", { name: "max_cycle_time_increase", type: "number", min: 0, step: "any", size: 4, placeholder: "%" });
  const promoteAfter = h("input", { name: "promote_after", size: 6, placeholder: "e.g. 24h" });
  const confidence = h("input", { name: "confidence", type: "number", min: 50, max: 99.9, step: "any", size: 4, placeholder: "%" });
  const decideAfter = h("input", { name: "decide_after", size: 6, placeholder: "e.g. 7d" });
  const canaryBody = (v) => {
    const body = { version: v.version, mode: "canary", percent: Number(percent.value) };
    const guard = {};
    if (maxRise.value !== "") guard.max_error_rate_increase = Number(maxRise.value) / 100;
    if (maxCycle.value !== "") guard.max_cycle_time_increase = Number(maxCycle.value) / 100;
    if (promoteAfter.value.trim()) guard.promote_after = promoteAfter.value.trim();
    if (confidence.value !== "") guard.confidence = Number(confidence.value) / 100;
    if (decideAfter.value.trim()) guard.decide_after = decideAfter.value.trim();
    if (Object.keys(guard).length) body.guard = guard;
    return body;
  };
  const g = st.canary_guard;
  const guardText = g ? [
    g.max_error_rate_increase !== undefined ? `roll back if its error rate exceeds the rest's by over ${Math.round(g.max_error_rate_increase * 1000) / 10} points` : null,
    g.max_review_rate_increase !== undefined ? `roll back if its review rate exceeds the rest's by over ${Math.round(g.max_review_rate_increase * 1000) / 10} points` : null,
    g.max_cycle_time_increase !== undefined ? `roll back if its median cycle time exceeds the rest's by over ${Math.round(g.max_cycle_time_increase * 1000) / 10}%` : null,
    g.promote_after ? `promote after ${g.promote_after}` : null,
    g.decide_after ? `roll back if still unjudged after ${g.decide_after}` : null,
  ].filter(Boolean).join("; ") + ` (judged once ${g.min_instances} of its instances have finished` +
    (g.confidence ? `, at ${Math.round(g.confidence * 1000) / 10}% confidence)` : ")") : null;
  const change = async (path, body, msg) => {
    if (note.value.trim()) body.note = note.value.trim();
    await api("POST", `/v1/policies/${enc}/${path}`, body);
    await route();
    flash(msg, "info");
  };
  const button = (text, fn, cls) => actionButton(text, fn, { class: cls });
  const versionActions = (v) => {
    if (v.version === st.active_version) return h("span", { class: "muted" }, "in force");
    return h("div", { class: "actions" },
      button(v.version < (st.active_version || 0) ? "Roll back to this" : "Activate", () => change("activate", { version: v.version }, `${id} v${v.version} is active.`)),
      v.version === st.shadow_version && !st.shadow_percent ? null : button("Shadow", () => change("activate", { version: v.version, mode: "shadow" }, `${id} v${v.version} runs in shadow.`), "secondary"),
      st.active_version ? button("Canary", () => change("activate", canaryBody(v), `${id} v${v.version} applies to ${percent.value}% of the instances.`), "secondary") : null);
  };
  const latest = st.latest?.policy || {};
  render(
    h("p", {}, link("#/processes/" + encodeURIComponent(st.process), "← " + st.process)),
    h("h1", {}, `Policy ${id}`),
    h("div", { class: "card" }, facts([
      ["Mode", [badge(st.mode), st.shadow_percent ? ` canary ${st.shadow_percent}%` : ""]],
      ["Active version", st.active_version ? `v${st.active_version}` : "none"],
      ["Shadow version", st.shadow_version ? `v${st.shadow_version}` : null],
      ["Canary guard", guardText],
      ["Guard now", st.canary_judgment ? [badge({ watching: "watching", rolling_back: "rolling back", promoting: "promoting" }[st.canary_judgment.verdict] || st.canary_judgment.verdict), " ", st.canary_judgment.why] : null],
      ["Latest version", `v${st.latest_version}`],
      ["Last change", st.changed_by ? [st.changed_by, " ", when(st.changed_at)] : null],
      ["Description", latest.description],
    ])),
    h("div", { class: "actions" }, h("label", {}, "Note", note), h("label", {}, "Canary share (%)", percent),
      h("label", { title: "Optional: the canary is rolled back on its own when its error rate exceeds the rest's by more than this" }, "Roll back at error rate + (points)", maxRise),
      h("label", { title: "Optional: the canary is rolled back on its own when its median cycle time exceeds the rest's by more than this" }, "Roll back at cycle time + (%)", maxCycle),
      h("label", { title: "Optional: the canary is promoted on its own after this long without a breach" }, "Promote after", promoteAfter),
      h("label", { title: "Optional: judge the rates as samples; roll back, or promote, only when the figures show it with this confidence" }, "Confidence (%)", confidence),
      h("label", { title: "Optional: roll the canary back if by then too few of its instances have finished, or its figures show neither a breach nor that it is within bounds" }, "Decide after", decideAfter),
      st.mode !== "disabled" ? button("Disable", () => change("disable", {}, `${id} is disabled.`), "danger") : null),
    h("h2", {}, "Versions"),
    table([
      { title: "Version", num: true, cell: (v) => `v${v.version}` },
      { title: "Mode", cell: (v) => (v.mode ? badge(v.mode) : "") },
      { title: "By", cell: (v) => v.author },
      { title: "Note", cell: (v) => v.note || "" },
      { title: "Created", cell: (v) => when(v.created_at) },
      { title: "", cell: versionActions },
    ], vs.versions.slice().reverse()),
    draftSection(id, st.process, latestDoc.yaml, note),
  );
}

// draftSection edits a policy's next version: simulate it against the
// decisions recorded for its process, then save it as a shadow version
// (its test cases must pass) to watch it, canary it or activate it.
function draftSection(id, processName, yaml, note) {
  const text = h("textarea", { name: "policy", rows: Math.min(30, yaml.split("\n").length + 2), spellcheck: "false" });
  text.value = yaml;
  text.className = "code";
  const since = h("select", { name: "since" }, ["7d", "30d", "90d"].map((w) => h("option", { value: w, selected: w === "30d" }, `last ${w}`)));
  const report = h("div", { id: "simulation" });
  const simulate = async () => {
    const r = await api("POST", "/v1/policies/simulate", { process: processName, since: since.value, policies: [text.value], examples: 10 });
    const delta = (d) => `${num(d.before)} → ${num(d.after)}`;
    report.replaceChildren(
      h("h3", {}, "What would have changed"),
      h("p", {}, `${num(r.decisions)} recorded decisions replayed; ${num(r.changed)} would have gone otherwise, in ${num(r.instances_affected)} instance(s). Reviews ${delta(r.reviews)}, steps run ${delta(r.steps_run)}.`,
        r.evaluation_errors ? ` ${num(r.evaluation_errors)} evaluation error(s).` : ""),
      r.actions.length ? table([
        { title: "Action", cell: (a) => a.action },
        { title: "Before", num: true, cell: (a) => num(a.before) },
        { title: "After", num: true, cell: (a) => num(a.after) },
        { title: "Change", num: true, cell: (a) => (a.delta > 0 ? "+" : "") + a.delta },
      ], r.actions) : null,
      (r.examples || []).length ? [h("h3", {}, "For example"), table([
        { title: "Instance", cell: (e) => link("#/instances/" + encodeURIComponent(e.instance_id), e.instance_id) },
        { title: "Before step", cell: (e) => e.step },
        { title: "Was", cell: (e) => (e.before || []).join(", ") || "nothing" },
        { title: "Would be", cell: (e) => (e.after || []).join(", ") || "nothing" },
      ], r.examples)] : null,
      r.note ? h("p", { class: "muted" }, r.note) : null,
    );
  };
  const save = async () => {
    const headers = note.value.trim() ? { "X-Change-Note": note.value.trim() } : {};
    const out = await api("POST", "/v1/policies?mode=shadow", text.value, { contentType: "application/yaml", headers });
    await route();
    flash(out.created ? `${id} v${out.version} is saved and runs in shadow.` : `No change: it is v${out.version}.`, "info");
  };
  return h("div", {},
    h("h2", {}, "Next version"),
    h("p", { class: "muted" }, "Edit the latest version, replay the decisions recorded for the process through it, then save it in shadow: its test cases must pass."),
    text,
    h("div", { class: "actions" }, h("label", {}, "Replay", since),
      actionButton("Simulate", simulate, { class: "secondary" }),
      actionButton("Save as shadow version", save)),
    report);
}

// ---- administration ------------------------------------------------------

const roles = ["system", "reviewer", "engineer", "admin"];

// showSecret shows a new key's secret, the one time the API gives it out.
function showSecret(k) {
  return h("div", { class: "card secret" },
    h("p", {}, `The secret of ${k.name} (${k.role}). Copy it now: it is stored hashed and never shown again.`),
    h("pre", { id: "new-secret" }, k.key));
}

async function keysView(fresh) {
  if (!can.admin()) return render(h("p", {}, "Keys are for admin keys."));
  const { keys } = await api("GET", "/v1/keys");
  const name = h("input", { name: "name", size: 18, required: true, placeholder: "ann, erp-prod" });
  const role = h("select", { name: "role" }, roles.map((r) => h("option", { value: r }, r)));
  const procs = h("input", { name: "processes", size: 22, placeholder: "all, or returns, payroll" });
  const expires = h("input", { name: "expires_in", size: 10, placeholder: "never, or 90d" });
  const form = h("form", {
    class: "filters",
    onsubmit: async (ev) => {
      ev.preventDefault();
      const body = { name: name.value.trim(), role: role.value };
      const p = procs.value.split(",").map((x) => x.trim()).filter(Boolean);
      if (p.length) body.processes = p;
      if (expires.value.trim()) body.expires_in = expires.value.trim();
      try {
        const k = await api("POST", "/v1/keys", body);
        await keysView(k);
        flash(`Key ${k.name} created.`, "info");
      } catch (e) { flash(e.message); }
    },
  }, h("label", {}, "Name", name), h("label", {}, "Role", role), h("label", {}, "Processes", procs), h("label", {}, "Expires in", expires),
  h("button", { type: "submit" }, "Create key"));
  const act = (text, label, fn, cls) => actionButton(text, fn, { class: cls, "aria-label": label });
  const state = (k) => (k.revoked_at ? badge("revoked") : k.expires_at && new Date(k.expires_at) < new Date() ? badge("expired") : badge("active"));
  render(
    h("h1", {}, "API keys"),
    fresh ? showSecret(fresh) : null,
    form,
    table([
      { title: "Name", cell: (k) => k.name },
      { title: "Role", cell: (k) => k.role },
      { title: "Processes", cell: (k) => (k.processes?.length ? k.processes.join(", ") : "all") },
      { title: "State", cell: state },
      { title: "Created", cell: (k) => when(k.created_at) },
      { title: "Expires", cell: (k) => (k.expires_at ? when(k.expires_at) : "never") },
      { title: "", cell: (k) => (k.revoked_at || k.id === me.id ? "" : h("div", { class: "actions" },
        act("Rotate", `Rotate ${k.name}`, async () => { const r = await api("POST", `/v1/keys/${encodeURIComponent(k.id)}/rotate`); await keysView(r); flash(`${k.name} has a new secret; the old one no longer works.`, "info"); }, "secondary"),
        act("Revoke", `Revoke ${k.name}`, async () => {
          if (!confirm(`Revoke ${k.name} for good?`)) return;
          await api("POST", `/v1/keys/${encodeURIComponent(k.id)}/revoke`);
          await keysView();
          flash(`${k.name} is revoked.`, "info");
        }, "danger"))) },
    ], keys),
  );
}

async function auditView(q) {
  if (!can.admin()) return render(h("p", {}, "The audit log is for admin keys."));
  const since = q.get("since") || "7d";
  const params = new URLSearchParams({ since, limit: "200" });
  for (const k of ["actor", "action", "after"]) if (q.get(k)) params.set(k, q.get(k));
  const { entries } = await api("GET", "/v1/audit?" + params);
  const input = (name, size) => h("input", { name, size, value: q.get(name) || (name === "since" ? since : "") });
  const form = filterForm("audit", h("label", {}, "Since", input("since", 6)), h("label", {}, "Who", input("actor", 14)), h("label", {}, "Route", input("action", 30)),
  h("button", { type: "submit" }, "Filter"));
  const more = new URLSearchParams(q);
  if (entries.length === 200) more.set("after", entries[entries.length - 1].seq);
  render(
    h("h1", {}, "Audit log"),
    h("p", { class: "muted" }, "Every change made through the API, oldest first: processes, policies, keys, claims, verdicts, examples."),
    form,
    table([
      { title: "#", num: true, cell: (e) => e.seq },
      { title: "When", cell: (e) => when(e.at) },
      { title: "Who", cell: (e) => `${e.actor} (${e.role})` },
      { title: "Route", cell: (e) => e.action },
      { title: "Target", cell: (e) => e.target },
      { title: "Status", num: true, cell: (e) => e.status || h("span", { title: "The server stopped, or could not record the end, after the change began" }, "not known") },
      { title: "From", cell: (e) => e.remote },
    ], entries),
    entries.length === 200 ? h("p", {}, link("#/audit?" + more, "Next page →")) : null,
  );
}

window.addEventListener("hashchange", () => { flash(""); route(); });
route();

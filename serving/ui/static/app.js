// distilserve operator page: polls /ui/api/state and /metrics every 2 s and draws them.
// No framework, no build step, no third-party code. Everything rendered goes through
// textContent or setAttribute (never innerHTML), so data from the server cannot inject markup.
"use strict";

const POLL_MS = 2000;
const KEEP_SAMPLES = 150;      // 5 minutes of /metrics samples at 2 s
const RATE_WINDOW = 5;         // rates and percentiles over the last 5 samples (~10 s)
const TOKEN_KEY = "distilserve.adminToken";
const PALETTE = ["#5b9bd5", "#f0a030", "#6cc070", "#e05c5c", "#a98bd8", "#4fc1c1", "#d9c245", "#e58cc0", "#a0805c", "#9aa5b1"];
const SVG_NS = "http://www.w3.org/2000/svg";

const ui = {
  state: null,
  lastOk: 0,
  samples: [],            // ring buffer: {t, data: {model: {version: {req, err, buckets: {le: count}}}}}
  forms: {},              // model -> persistent set-traffic form (keeps what the operator typed)
  busy: false,
};

// ---- DOM helpers (text only) -------------------------------------------------------------
function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "on") { for (const [ev, fn] of Object.entries(v)) el.addEventListener(ev, fn); }
    else if (k === "text") el.textContent = String(v);
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

function s(tag, attrs, ...children) {
  const el = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined) continue;
    if (k === "text") el.textContent = String(v); else el.setAttribute(k, String(v));
  }
  for (const c of children.flat()) if (c) el.append(c);
  return el;
}

const colour = (version) => PALETTE[(parseInt(version, 10) - 1 + PALETTE.length * 100) % PALETTE.length] || "#9aa5b1";
const pct = (x) => (x === null || x === undefined ? "–" : `${(+x).toFixed(x % 1 ? 1 : 0)}%`);
const num = (x, d = 1) => (x === null || x === undefined || !isFinite(x) ? "–" : (+x).toFixed(d));
const ms = (x) => (x === null || x === undefined ? "–" : `${num(x, x < 10 ? 2 : 1)} ms`);

function ago(ts) {
  if (!ts) return "–";
  const d = Math.max(0, Date.now() / 1000 - ts);
  if (d < 60) return `${Math.round(d)} s ago`;
  if (d < 3600) return `${Math.round(d / 60)} min ago`;
  if (d < 86400) return `${(d / 3600).toFixed(1)} h ago`;
  return `${Math.round(d / 86400)} d ago`;
}
const clock = (ts) => (ts ? new Date(ts * 1000).toLocaleTimeString([], { hour12: false }) : "–");
const when = (ts) => h("span", { title: ts ? new Date(ts * 1000).toISOString() : "" }, `${clock(ts)} · ${ago(ts)}`);
const bytes = (n) => (n >= 1e9 ? `${(n / 1e9).toFixed(1)} GB` : n >= 1e6 ? `${(n / 1e6).toFixed(1)} MB` : `${(n / 1e3).toFixed(0)} kB`);
const count = (n) => (n >= 1e6 ? `${(n / 1e6).toFixed(1)} M` : n >= 1e3 ? `${(n / 1e3).toFixed(0)} k` : String(n));
const short = (x, n = 10) => (x ? String(x).replace(/^[a-z0-9]+:/, "").slice(0, n) : "–"); // "sha256:ab…" -> "ab…"

// ---- token and admin API ------------------------------------------------------------------
const token = () => sessionStorage.getItem(TOKEN_KEY) || "";

function showBanner(kind, text) {
  const b = document.getElementById("banner");
  b.hidden = false;
  b.className = `banner banner-${kind}`;
  b.replaceChildren(h("span", { text }), h("button", { type: "button", class: "link", on: { click: () => { b.hidden = true; } } }, "dismiss"));
}

async function admin(method, path, body, what) {
  if (!token()) { showBanner("error", "Enter the admin token first: the page is read-only without it."); return null; }
  ui.busy = true;
  try {
    const r = await fetch(path, {
      method,
      headers: { "Authorization": `Bearer ${token()}`, "Content-Type": "application/json" },
      body: body === undefined ? undefined : JSON.stringify(body),
      cache: "no-store",
    });
    let payload = null;
    try { payload = await r.json(); } catch { payload = null; }
    if (!r.ok) {
      const msg = payload && payload.error ? payload.error : r.statusText;
      showBanner("error", `${what} refused: HTTP ${r.status}: ${msg}`);
      return null;
    }
    showBanner("ok", `${what}: done`);
    return payload;
  } catch (e) {
    showBanner("error", `${what} failed: ${e}`);
    return null;
  } finally {
    ui.busy = false;
    refresh();
  }
}

function setupToken() {
  const form = document.getElementById("token-form");
  const input = document.getElementById("token-input");
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    if (input.value) sessionStorage.setItem(TOKEN_KEY, input.value);
    input.value = "";
    drawTokenState();
    render();
  });
  document.getElementById("token-forget").addEventListener("click", () => {
    sessionStorage.removeItem(TOKEN_KEY);
    drawTokenState();
    render();
  });
  drawTokenState();
}

function drawTokenState() {
  const has = !!token();
  document.getElementById("token-state").textContent = has ? "actions unlocked (this tab only)" : "read-only";
  document.getElementById("token-state").className = has ? "unlocked" : "dim";
  document.getElementById("token-input").hidden = has;
  document.getElementById("token-set").hidden = has;
  document.getElementById("token-forget").hidden = !has;
}

function actionButton(label, action, onClick, opts = {}) {
  const locked = !token();
  return h("button", {
    type: "button",
    class: `act ${opts.danger ? "danger" : ""} ${opts.primary ? "primary" : ""}`,
    "data-action": action,
    disabled: locked || opts.disabled ? true : null,
    title: locked ? "enter the admin token (top right) to act" : opts.title || null,
    on: { click: () => {
      if (opts.confirm && !window.confirm(opts.confirm)) return;
      onClick();
    } },
  }, label);
}

// ---- /metrics: parse, keep a ring buffer, derive rates and percentiles -----------------------
function parseMetrics(text) {
  const data = {};
  const re = /(\w+)="((?:[^"\\]|\\.)*)"/g;
  for (const line of text.split("\n")) {
    if (!line || line[0] === "#") continue;
    const m = line.match(/^([a-zA-Z_:][\w:]*)(\{([^}]*)\})?\s+(\S+)/);
    if (!m) continue;
    const name = m[1];
    if (!name.startsWith("distilserve_requests_total") && !name.startsWith("distilserve_errors_total")
        && !name.startsWith("distilserve_request_latency_seconds_bucket")) continue;
    const labels = {};
    for (const [, k, v] of (m[3] || "").matchAll(re)) labels[k] = v;
    if (!labels.model || !labels.version) continue;
    const value = parseFloat(m[4]);
    const v = ((data[labels.model] ||= {})[labels.version] ||= { req: 0, err: 0, buckets: {} });
    if (name === "distilserve_requests_total") v.req += value;
    else if (name === "distilserve_errors_total") v.err += value;
    else v.buckets[labels.le] = (v.buckets[labels.le] || 0) + value;
  }
  return data;
}

function quantile(q, buckets) {
  // Prometheus' histogram_quantile: linear inside the bucket that holds the rank.
  const les = Object.keys(buckets).sort((a, b) => parseFloat(a) - parseFloat(b));
  const total = buckets["+Inf"];
  if (!total || total <= 0) return null;
  const rank = q * total;
  let prevLe = 0, prevCount = 0;
  for (const le of les) {
    const c = buckets[le];
    if (c >= rank) {
      if (le === "+Inf") return prevLe * 1000;
      const upper = parseFloat(le);
      const inBucket = c - prevCount;
      return 1000 * (prevLe + (upper - prevLe) * (inBucket > 0 ? (rank - prevCount) / inBucket : 0));
    }
    if (le !== "+Inf") prevLe = parseFloat(le);
    prevCount = c;
  }
  return null;
}

function series(model, version) {
  // One point per sample: rates and percentiles over the RATE_WINDOW samples before it.
  const out = [];
  const S = ui.samples;
  for (let i = RATE_WINDOW; i < S.length; i++) {
    const a = S[i - RATE_WINDOW], b = S[i];
    const va = a.data[model]?.[version], vb = b.data[model]?.[version];
    const dt = b.t - a.t;
    if (!vb || dt <= 0) { out.push({ t: b.t, rps: 0, eps: 0, p50: null, p99: null }); continue; }
    const base = va || { req: 0, err: 0, buckets: {} };
    const dreq = vb.req - base.req, derr = vb.err - base.err;
    if (dreq < 0) continue; // counters reset (ingress restarted): skip the point
    const db = {};
    for (const le of Object.keys(vb.buckets)) db[le] = vb.buckets[le] - (base.buckets[le] || 0);
    out.push({ t: b.t, rps: dreq / dt, eps: Math.max(0, derr) / dt, p50: quantile(0.5, db), p99: quantile(0.99, db) });
  }
  return out;
}

async function pollMetrics() {
  try {
    const r = await fetch("/metrics", { cache: "no-store" });
    if (!r.ok) return;
    ui.samples.push({ t: Date.now() / 1000, data: parseMetrics(await r.text()) });
    if (ui.samples.length > KEEP_SAMPLES) ui.samples.splice(0, ui.samples.length - KEEP_SAMPLES);
  } catch { /* the state poll reports the connection */ }
}

// ---- charts (SVG) -------------------------------------------------------------------------
function lineChart(title, lines, unit, opts = {}) {
  const W = 300, H = 96, L = 34, B = 14, T = 6;
  const all = lines.flatMap((l) => l.points.map((p) => p.y)).filter((y) => y !== null && isFinite(y));
  const ymax = Math.max(opts.minMax || 1e-9, ...all) * 1.1;
  const ts = lines.flatMap((l) => l.points.map((p) => p.t));
  const t1 = ts.length ? Math.max(...ts) : Date.now() / 1000;
  // The last 5 minutes, or since the page opened (at least a minute) so early points spread out.
  const span = Math.min((KEEP_SAMPLES * POLL_MS) / 1000, Math.max(60, t1 - (ts.length ? Math.min(...ts) : t1)));
  const t0 = t1 - span;
  const x = (t) => L + ((t - t0) / (t1 - t0)) * (W - L - 4);
  const y = (v) => T + (1 - v / ymax) * (H - T - B);
  const svg = s("svg", { viewBox: `0 0 ${W} ${H}`, class: "chart", role: "img", "aria-label": title });
  svg.append(s("line", { x1: L, y1: y(0), x2: W - 4, y2: y(0), class: "axis" }));
  svg.append(s("text", { x: L - 4, y: T + 8, class: "tick", "text-anchor": "end", text: num(ymax / 1.1, ymax < 10 ? 1 : 0) }));
  svg.append(s("text", { x: L - 4, y: y(0), class: "tick", "text-anchor": "end", text: "0" }));
  svg.append(s("text", { x: L, y: H - 2, class: "tick", text: span >= 120 ? `-${Math.round(span / 60)} min` : `-${Math.round(span)} s` }));
  svg.append(s("text", { x: W - 4, y: H - 2, class: "tick", "text-anchor": "end", text: "now" }));
  for (const l of lines) {
    const pts = l.points.filter((p) => p.y !== null && isFinite(p.y)).map((p) => `${x(p.t).toFixed(1)},${y(p.y).toFixed(1)}`);
    if (pts.length > 1) svg.append(s("polyline", { points: pts.join(" "), fill: "none", stroke: l.colour, "stroke-width": l.width || 1.8, "stroke-dasharray": l.dash || null }));
  }
  return h("figure", { class: "chart-box" }, h("figcaption", {}, title, h("span", { class: "dim" }, ` ${unit}`)), svg);
}

function tradeoffChart(m) {
  const vs = m.versions.filter((v) => v.card.p50_b1_ms !== null);
  const W = 360, H = 220, L = 44, B = 30, T = 12, R = 16;
  const svg = s("svg", { viewBox: `0 0 ${W} ${H}`, class: "chart scatter", role: "img", "aria-label": "accuracy vs batch-1 latency" });
  if (!vs.length) return h("p", { class: "dim" }, "no versions with a measured latency");
  const xs = vs.map((v) => v.card.p50_b1_ms), ys = vs.map((v) => v.card.accuracy);
  const xmax = Math.max(...xs) * 1.15 || 1, ymin = Math.max(0, Math.min(...ys) - 0.05), ymax = Math.min(1, Math.max(...ys) + 0.05);
  const x = (v) => L + (v / xmax) * (W - L - R);
  const y = (v) => T + (1 - (v - ymin) / ((ymax - ymin) || 1)) * (H - T - B);
  svg.append(s("line", { x1: L, y1: H - B, x2: W - R, y2: H - B, class: "axis" }));
  svg.append(s("line", { x1: L, y1: T, x2: L, y2: H - B, class: "axis" }));
  svg.append(s("text", { x: (W + L) / 2, y: H - 4, class: "tick", "text-anchor": "middle", text: "batch-1 p50 latency (ms) → faster to the left" }));
  svg.append(s("text", { x: 12, y: (H - B + T) / 2, class: "tick", "text-anchor": "middle", transform: `rotate(-90 12 ${(H - B + T) / 2})`, text: "held-out accuracy" }));
  for (const f of [0, 0.5, 1]) {
    svg.append(s("text", { x: x(xmax * f), y: H - B + 12, class: "tick", "text-anchor": "middle", text: num(xmax * f, 1) }));
    const a = ymin + (ymax - ymin) * f;
    svg.append(s("text", { x: L - 4, y: y(a) + 3, class: "tick", "text-anchor": "end", text: num(a, 2) }));
  }
  for (const v of vs) {
    const cx = x(v.card.p50_b1_ms), cy = y(v.card.accuracy);
    const g = s("g", { class: `pt ${v.live ? "pt-live" : ""} ${v.role === "candidate" ? "pt-cand" : ""} ${v.status === "pruned" ? "pt-pruned" : ""}` });
    if (v.live) g.append(s("circle", { cx, cy, r: 11, class: "live-ring" }));
    g.append(s("circle", { cx, cy, r: 6, fill: colour(v.version) }));
    const label = `v${v.version} ${v.card.kind}${v.live ? " · LIVE" : v.role === "candidate" ? " · canary" : ""}`;
    const left = cx > W * 0.6; // labels of points on the right go to their left, inside the chart
    g.append(s("text", { x: left ? cx - 13 : cx + 13, y: cy + 4, class: "pt-label", "text-anchor": left ? "end" : "start", text: label }));
    g.append(s("title", { text: `v${v.version}: accuracy ${num(v.card.accuracy, 3)}, p50 ${ms(v.card.p50_b1_ms)} at batch 1` }));
    svg.append(g);
  }
  return svg;
}

function splitBar(traffic, cls = "split") {
  const bar = h("div", { class: cls });
  for (const [v, w] of Object.entries(traffic)) {
    if (w <= 0) continue;
    const seg = h("div", { class: "seg", title: `v${v}: ${pct(w)}` }, w >= 8 ? `v${v} ${pct(w)}` : "");
    seg.style.width = `${w}%`;
    seg.style.background = colour(v);
    bar.append(seg);
  }
  return bar;
}

// ---- sections -----------------------------------------------------------------------------
function pill(text, level) { return h("span", { class: `pill pill-${level}` }, text); }

const PHASE_LEVEL = { progressing: "info", pending: "info", paused: "warn", promoted: "ok", rolled_back: "bad", aborted: "bad" };

function gateValue(g) {
  if (g.value === null) return "no data";
  if (g.unit === "ratio") return `${(g.value * 100).toFixed(2)} pts`;
  if (g.unit === "ms") return ms(g.value);
  if (g.unit === "x") return `${num(g.value, 2)}×`;
  return g.name.startsWith("p-value") ? num(g.value, 4) : num(g.value, 0);
}
function gateThreshold(g) {
  if (g.unit === "ratio") return `${g.op} ${(g.threshold * 100).toFixed(2)} pts`;
  if (g.unit === "ms") return `${g.op} ${ms(g.threshold)}`;
  if (g.unit === "x") return `${g.op} ${num(g.threshold, 2)}×`;
  return `${g.op} ${g.threshold}`;
}

function rolloutCard(m) {
  const ro = m.rollout;
  const box = h("section", { class: "card rollout", "data-testid": "rollout" });
  if (!ro) {
    box.append(h("h2", {}, "Rollout"), h("p", { class: "dim" }, "No rollout yet. Start one with ",
      h("code", {}, `distilserve rollout canary --model ${m.model} --version N`), "."));
    return box;
  }
  const level = PHASE_LEVEL[ro.phase] || "info";
  box.classList.add(`edge-${level}`);
  box.append(h("h2", {}, ro.active ? "Rollout in progress" : "Last rollout", " ",
    pill((ro.phase || "unknown").replace("_", " ").toUpperCase(), level), " ",
    h("span", { class: "dim small" }, `${ro.strategy || "?"} · ${ro.rollout_id}`)));
  box.append(h("div", { class: "ro-versions" },
    h("span", { class: "vtag", style: null }, `stable v${ro.stable ?? "?"}`), " → ",
    h("span", { class: "vtag cand" }, `candidate v${ro.candidate ?? "?"}`),
    ro.started_at ? h("span", { class: "dim small" }, " · started ", when(ro.started_at)) : null,
    ro.step_started_at && ro.active ? h("span", { class: "dim small" }, " · this step since ", when(ro.step_started_at)) : null));
  if (ro.steps.length) {
    box.append(h("ol", { class: "steps", "data-testid": "steps" },
      ro.steps.map((st, i) => h("li", { class: `step step-${st.state}`, "data-state": st.state }, h("span", { class: "step-n" }, String(i + 1)), h("span", { class: "step-label" }, st.label)))));
  }
  if (Object.keys(ro.traffic).length) box.append(h("div", { class: "row" }, h("span", { class: "dim small lbl" }, "traffic now"), splitBar(m.traffic)));
  if (ro.reason) box.append(h("p", { class: "reason" }, h("b", {}, "Last decision: "), ro.reason));
  const counters = [];
  if (ro.consecutive_failures) counters.push(`${ro.consecutive_failures} failed window(s) in a row`);
  if (ro.consecutive_inconclusive) counters.push(`${ro.consecutive_inconclusive} inconclusive window(s) in a row`);
  if (counters.length) box.append(h("p", { class: "warn-text" }, counters.join(" · ")));
  if (ro.gates.length) {
    box.append(h("table", { class: "gates", "data-testid": "gates" },
      h("thead", {}, h("tr", {}, h("th", {}, "gate (last window)"), h("th", {}, "measured"), h("th", {}, "threshold"), h("th", {}, "result"))),
      h("tbody", {}, ro.gates.map((g) => h("tr", { class: `gate-${g.outcome.replace(" ", "-")}` },
        h("td", {}, g.name), h("td", { class: "num" }, gateValue(g)), h("td", { class: "num dim" }, gateThreshold(g)),
        h("td", {}, pill(g.outcome === "pass" ? "PASS" : g.outcome === "fail" ? "FAIL" : "NO DATA", g.outcome === "pass" ? "ok" : g.outcome === "fail" ? "bad" : "warn")))))));
  }
  const cmds = new Set(ro.commands);
  if (ro.active) {
    const base = `/admin/models/${encodeURIComponent(m.model)}/rollouts/`;
    const send = (c) => admin("POST", base + c, undefined, `${c} rollout ${ro.rollout_id}`);
    box.append(h("div", { class: "actions" },
      actionButton("Promote now", "promote", () => send("promote"), { primary: true, disabled: !cmds.has("promote"), confirm: `Promote v${ro.candidate} of ${m.model} to 100% now?` }),
      actionButton("Pause", "pause", () => send("pause"), { disabled: !cmds.has("pause") }),
      actionButton("Resume", "resume", () => send("resume"), { disabled: !cmds.has("resume") }),
      actionButton("Abort", "abort", () => send("abort"), { danger: true, disabled: !cmds.has("abort"), confirm: `Abort the rollout and send all traffic of ${m.model} back to v${ro.stable}?` })));
  }
  const log = h("ol", { class: "log", "data-testid": "decisions", reversed: true });
  for (const d of [...ro.decisions].reverse()) {
    log.append(h("li", { class: `ev ev-${d.kind.replace(/[^a-z_]/g, "-")}` }, h("span", { class: "ts" }, clock(d.ts)), h("code", {}, d.kind.replace("rollout.", "")), " ", d.message));
  }
  box.append(h("h3", {}, "Decision log"), log);
  return box;
}

function trafficForm(m) {
  const key = m.model;
  const versions = m.versions.filter((v) => v.status === "available").map((v) => v.version);
  const sig = versions.join(",");
  let f = ui.forms[key];
  if (!f || f.dataset.sig !== sig) {
    f = h("form", { class: "traffic-form", "data-testid": "traffic-form" });
    f.dataset.sig = sig;
    const inputs = {};
    for (const v of versions) {
      inputs[v] = h("input", { type: "number", min: 0, max: 100, step: "any", value: m.traffic[v] ?? 0, "aria-label": `percent for v${v}`, "data-version": v });
      f.append(h("label", { class: "w" }, `v${v}`, inputs[v], "%"));
    }
    f.addEventListener("input", () => { f.dataset.dirty = "1"; });
    f.inputs = inputs;
    const reason = h("input", { type: "text", placeholder: "reason (recorded)", value: "set from the operator page", "aria-label": "reason" });
    const apply = h("button", { type: "submit", class: "act", "data-action": "set-traffic" }, "Set traffic");
    f.append(reason, apply);
    f.addEventListener("submit", (ev) => {
      ev.preventDefault();
      const cur = (ui.state.models.find((x) => x.model === key) || {}).traffic || {};
      const weights = {};
      for (const [v, el] of Object.entries(inputs)) {
        const w = parseFloat(el.value || "0");
        if (w > 0 || v in cur) weights[v] = w;
      }
      const text = Object.entries(weights).map(([v, w]) => `v${v} ${w}%`).join(", ");
      if (!window.confirm(`Set traffic of ${key} to ${text}?`)) return;
      delete f.dataset.dirty; // from now on it shows the live table again
      admin("POST", `/admin/models/${encodeURIComponent(key)}/traffic`, { weights, reason: reason.value || "set from the operator page" }, `set traffic of ${key}`);
    });
    ui.forms[key] = f;
  }
  if (!f.dataset.dirty) for (const [v, el] of Object.entries(f.inputs)) el.value = m.traffic[v] ?? 0;
  const locked = !token();
  for (const el of f.querySelectorAll("input, button")) el.disabled = locked;
  f.title = locked ? "enter the admin token (top right) to act" : "";
  return f;
}

function trafficCard(m) {
  const box = h("section", { class: "card traffic", "data-testid": "traffic" });
  box.append(h("h2", {}, "Traffic"));
  box.append(splitBar(m.traffic, "split big"));
  const notes = [];
  if (m.shadow) notes.push(`shadow: ${pct(m.shadow.share)} of requests copied to v${m.shadow.version} (answers discarded)`);
  notes.push(m.rollback_target ? `rollback target: v${m.rollback_target}` : "no rollback target");
  box.append(h("p", { class: "dim small" }, notes.join(" · ")));
  const target = m.rollback_target;
  box.append(h("div", { class: "actions" },
    actionButton(target ? `Roll back to v${target}` : "Roll back", "rollback",
      () => admin("POST", `/admin/models/${encodeURIComponent(m.model)}/rollback`, { reason: "rollback from the operator page" }, `rollback of ${m.model}`),
      { danger: true, disabled: !target, confirm: `Send 100% of ${m.model} traffic to v${target}?` })));
  box.append(trafficForm(m));
  const rows = m.history.slice(0, 12).map((c) => h("tr", {},
    h("td", { class: "ts" }, when(c.ts)), h("td", {}, splitBar(c.traffic, "split mini")),
    h("td", { class: "small" }, Object.entries(c.traffic).filter(([, w]) => w > 0).map(([v, w]) => `v${v} ${pct(w)}`).join(" · ")),
    h("td", { class: "small reason-cell", title: c.reason }, c.reason), h("td", { class: "dim small" }, c.actor)));
  box.append(h("h3", {}, "History"), h("table", { class: "history", "data-testid": "history" }, h("tbody", {}, rows)));
  return box;
}

function liveCard(m) {
  const box = h("section", { class: "card live", "data-testid": "live" });
  box.append(h("h2", {}, "Live, per version ", h("span", { class: "dim small" }, "(ingress /metrics, 10 s windows, last 5 min)")));
  const versions = new Set(m.versions.filter((v) => v.live || v.role || v.shadow).map((v) => v.version));
  const last = ui.samples[ui.samples.length - 1];
  for (const v of Object.keys(last?.data[m.model] || {})) versions.add(v);
  const per = [...versions].sort((a, b) => a - b).map((v) => ({ v, pts: series(m.model, v) }));
  if (ui.samples.length <= RATE_WINDOW) {
    box.append(h("p", { class: "dim" }, "collecting samples…"));
  }
  const table = h("table", { class: "livetab" }, h("thead", {}, h("tr", {}, ["version", "req/s", "errors/s", "error %", "p50", "p99"].map((t) => h("th", {}, t)))));
  const tb = h("tbody", {});
  for (const { v, pts } of per) {
    const p = pts[pts.length - 1] || {};
    const errPct = p.rps ? (100 * p.eps) / p.rps : 0;
    tb.append(h("tr", { class: errPct > 1 ? "row-bad" : "" }, h("td", {}, h("span", { class: "dot" }, ""), `v${v}`),
      h("td", { class: "num" }, num(p.rps, 1)), h("td", { class: "num" }, num(p.eps, 2)),
      h("td", { class: `num ${errPct > 1 ? "bad-text" : ""}` }, `${num(errPct, 1)}%`), h("td", { class: "num" }, ms(p.p50)), h("td", { class: "num" }, ms(p.p99))));
    tb.lastChild.querySelector(".dot").style.background = colour(v);
  }
  table.append(tb);
  box.append(table);
  const lines = (f, extra = {}) => per.map(({ v, pts }) => ({ colour: colour(v), points: pts.map((p) => ({ t: p.t, y: f(p) })), ...extra }));
  box.append(h("div", { class: "charts" },
    lineChart("requests", lines((p) => p.rps), "req/s"),
    lineChart("errors", lines((p) => p.eps), "err/s", { minMax: 0.1 }),
    lineChart("latency p99 (solid) · p50 (dashed)", [...lines((p) => p.p99), ...lines((p) => p.p50, { dash: "3 3", width: 1.2 })], "ms")));
  return box;
}

function flagsOf(v) {
  const f = [];
  if (v.live) f.push(pill(`LIVE ${pct(v.weight)}`, "ok"));
  if (v.role === "candidate") f.push(pill("CANDIDATE", "info"));
  if (v.role === "stable") f.push(pill("STABLE", "neutral"));
  if (v.shadow) f.push(pill(`SHADOW ${pct(v.shadow)}`, "info"));
  if (v.warm && !v.live) f.push(pill("WARM", "neutral"));
  if (v.rollback_target) f.push(pill("ROLLBACK TARGET", "warn"));
  if (v.status === "pruned") f.push(pill("PRUNED", "dim"));
  return f;
}

function versionsCard(m) {
  const box = h("section", { class: "card versions", "data-testid": "versions" });
  box.append(h("h2", {}, "Versions"));
  const head = ["v", "state", "kind", "accuracy", "b1 p50 / p99", "b32 p50 / p99", "size", "teacher", "data", "commit", "created"];
  const rows = [...m.versions].reverse().map((v) => {
    const c = v.card, lin = c.lineage;
    return h("tr", { "data-version": v.version, class: v.live ? "is-live" : v.status === "pruned" ? "is-pruned" : "" },
      h("td", { class: "vcell" }, h("span", { class: "dot" }, ""), `v${v.version}`),
      h("td", { class: "flags" }, flagsOf(v)),
      h("td", {}, c.kind),
      h("td", { class: "num", title: `${c.eval_examples} held-out examples` }, num(c.accuracy, 3), c.accuracy_std ? h("span", { class: "dim" }, ` ±${num(c.accuracy_std, 3)}`) : ""),
      h("td", { class: "num" }, `${ms(c.p50_b1_ms)} / ${ms(c.p99_b1_ms)}`),
      h("td", { class: "num" }, `${ms(c.p50_b32_ms)} / ${ms(c.p99_b32_ms)}`),
      h("td", { class: "num", title: `${c.parameters} parameters, ${c.dtype}` }, `${bytes(c.bytes)} · ${count(c.parameters)} params`),
      h("td", {}, lin.teacher_version ? `v${lin.teacher_version}` : "–", lin.base_model ? h("div", { class: "dim small" }, lin.base_model) : ""),
      h("td", { class: "mono", title: lin.data_fingerprint }, short(lin.data_fingerprint)),
      h("td", { class: "mono", title: lin.code_commit }, short(lin.code_commit, 8), lin.code_dirty ? h("span", { class: "warn-text", title: "built from a dirty work tree" }, " *") : ""),
      h("td", { class: "small" }, c.created_at.replace("T", " ").slice(0, 16)));
  });
  box.append(h("div", { class: "scroll" }, h("table", { class: "vtable" }, h("thead", {}, h("tr", {}, head.map((t) => h("th", {}, t)))), h("tbody", {}, rows))));
  for (const tr of box.querySelectorAll("tr[data-version]")) tr.querySelector(".dot").style.background = colour(tr.dataset.version);
  return box;
}

function tradeoffCard(m) {
  return h("section", { class: "card tradeoff", "data-testid": "tradeoff" },
    h("h2", {}, "Distillation trade-off ", h("span", { class: "dim small" }, "(cards: offline accuracy vs batch-1 latency)")), tradeoffChart(m));
}

function eventsCard(m) {
  const list = h("ol", { class: "log" });
  for (const e of m.events) list.append(h("li", {}, h("span", { class: "ts" }, clock(e.ts)), h("code", {}, e.kind), " ", e.message));
  return h("section", { class: "card events", "data-testid": "events" }, h("h2", {}, "Events"), list);
}

function modelSection(m) {
  return h("article", { class: "model", "data-model": m.model },
    h("div", { class: `headline level-${m.health.level}`, "data-testid": "headline" },
      h("span", { class: "mname" }, m.model), h("span", { class: "htext" }, m.health.text)),
    h("div", { class: "grid" }, rolloutCard(m), trafficCard(m), liveCard(m), tradeoffCard(m), eventsCard(m), versionsCard(m)));
}

function render() {
  const root = document.getElementById("models");
  if (!ui.state) return;
  // Keep the operator's focus (e.g. typing a weight) across the redraw.
  const active = document.activeElement;
  root.replaceChildren(...ui.state.models.map(modelSection));
  if (active && active.isConnected && active !== document.body) active.focus();
  const worst = ui.state.models.map((m) => m.health.level);
  document.title = `${worst.includes("bad") ? "⛔ " : worst.includes("warn") ? "⚠ " : ""}distilserve · operator`;
}

function drawConn(ok, err) {
  const c = document.getElementById("conn");
  if (ok) {
    c.className = "conn conn-ok";
    c.textContent = `live · updated ${clock(Date.now() / 1000)}`;
  } else {
    c.className = "conn conn-bad";
    c.textContent = `SERVER UNREACHABLE (${err}) · last good update ${ui.lastOk ? ago(ui.lastOk) : "never"}`;
  }
}

async function refresh() {
  try {
    const [r] = await Promise.all([fetch("/ui/api/state", { cache: "no-store" }), pollMetrics()]);
    if (!r.ok) throw new Error(`HTTP ${r.status}`);
    ui.state = await r.json();
    ui.lastOk = Date.now() / 1000;
    drawConn(true);
  } catch (e) {
    drawConn(false, e.message || String(e));
  }
  render();
}

document.addEventListener("DOMContentLoaded", () => {
  setupToken();
  refresh();
  setInterval(() => { if (!ui.busy) refresh(); }, POLL_MS);
});

// wansteer dashboard: hand-written, no build step, no dependencies.
//
// Reads the controller's REST API with the operator's bearer token (kept in sessionStorage,
// so it ends with the tab) and redraws when the event stream says something changed.
// Every piece of text from the API goes through DOM text nodes, never innerHTML.
"use strict";

const TOKEN_KEY = "wansteer.token";
const SVG_NS = "http://www.w3.org/2000/svg";
const HEALTHS = ["up", "degraded", "down", "unknown"];

const state = { token: null, me: null, stream: null, retry: null, refreshTimer: null };

// ----- DOM helpers -----

function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  setAttrs(el, attrs);
  append(el, children);
  return el;
}

function s(tag, attrs, ...children) {
  const el = document.createElementNS(SVG_NS, tag);
  setAttrs(el, attrs);
  append(el, children);
  return el;
}

function setAttrs(el, attrs) {
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v === true ? "" : String(v));
  }
}

function append(el, children) {
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

function view() { return document.getElementById("view"); }

function show(...children) {
  const v = view();
  v.replaceChildren();
  append(v, children);
}

// ----- formatting -----

function fmtTime(ms) {
  if (!ms) return "—";
  return new Date(ms).toLocaleString();
}

function fmtAgo(ms) {
  if (!ms) return "";
  const s = Math.max(0, Math.round((Date.now() - ms) / 1000));
  if (s < 60) return s + " s ago";
  if (s < 3600) return Math.round(s / 60) + " min ago";
  return Math.round(s / 3600) + " h ago";
}

function fmtNum(v, unit, digits) {
  if (v === null || v === undefined) return "—";
  return v.toFixed(digits === undefined ? 1 : digits) + unit;
}

function fmtRate(bps) {
  if (bps >= 1e9) return (bps / 1e9).toFixed(bps % 1e9 ? 1 : 0) + " Gbit/s";
  if (bps >= 1e6) return (bps / 1e6).toFixed(bps % 1e6 ? 1 : 0) + " Mbit/s";
  return (bps / 1e3).toFixed(0) + " kbit/s";
}

function badge(health) {
  const cls = HEALTHS.includes(health) ? health : "unknown";
  return h("span", { class: "badge " + cls }, health || "unknown");
}

// ----- API -----

class ApiError extends Error {
  constructor(status, body) {
    super((body && body.error) || "HTTP " + status);
    this.status = status;
    this.body = body;
  }
}

async function api(path, options) {
  const opts = Object.assign({ method: "GET" }, options || {});
  opts.headers = Object.assign({ Authorization: "Bearer " + state.token }, opts.headers || {});
  const response = await fetch(path, opts);
  let body = null;
  const text = await response.text();
  if (text) {
    try { body = JSON.parse(text); } catch (_) { body = { error: text }; }
  }
  if (response.status === 401) {
    signOut("The token was refused; sign in again.");
    throw new ApiError(401, body);
  }
  if (!response.ok) throw new ApiError(response.status, body);
  return body;
}

// ----- sign-in -----

function signOut(message) {
  sessionStorage.removeItem(TOKEN_KEY);
  state.token = null;
  state.me = null;
  closeStream();
  document.getElementById("nav").hidden = true;
  document.getElementById("logout").hidden = true;
  document.getElementById("who").textContent = "";
  showLogin(message);
}

function showLogin(message) {
  const input = h("input", { id: "token", type: "password", autocomplete: "off",
    placeholder: "API token", "aria-label": "API token" });
  const form = h("form", { class: "card login", id: "login" },
    h("h1", {}, "Sign in"),
    h("p", { class: "muted" }, "Paste an API token from the controller's tokens file. " +
      "It is kept for this tab only."),
    input,
    message ? h("p", { class: "error", id: "login-error" }, message) : null,
    h("button", { type: "submit", id: "sign-in" }, "Sign in"));
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    const token = input.value.trim();
    if (token) signIn(token);
  });
  show(form);
  input.focus();
}

async function signIn(token) {
  state.token = token;
  try {
    state.me = await api("/api/v1/whoami");
  } catch (e) {
    if (e.status !== 401) signOut("Cannot sign in: " + e.message);
    return;
  }
  sessionStorage.setItem(TOKEN_KEY, token);
  document.getElementById("nav").hidden = false;
  document.getElementById("logout").hidden = false;
  document.getElementById("who").textContent = state.me.name + " (" + state.me.role + ")";
  openStream();
  route();
}

// ----- live updates -----
// EventSource cannot send an Authorization header, so the page trades its token for a
// single-use ticket that expires in seconds, and opens the stream with that.

function setLive(on) {
  const el = document.getElementById("live");
  el.className = "live " + (on ? "on" : "off");
  el.textContent = on ? "live" : "offline";
}

function closeStream() {
  if (state.stream) state.stream.close();
  state.stream = null;
  clearTimeout(state.retry);
  setLive(false);
}

async function openStream() {
  closeStream();
  if (!state.token) return;
  let ticket;
  try {
    ticket = (await api("/api/v1/events/ticket", { method: "POST" })).ticket;
  } catch (_) {
    state.retry = setTimeout(openStream, 3000);
    return;
  }
  const stream = new EventSource("/api/v1/events/stream?ticket=" + encodeURIComponent(ticket));
  state.stream = stream;
  stream.addEventListener("hello", () => setLive(true));
  stream.addEventListener("changed", (e) => {
    const topics = JSON.parse(e.data).topics || [];
    if (topics.some((t) => current.topics.includes(t))) scheduleRefresh();
  });
  stream.onerror = () => {
    // A ticket works once: reconnect with a fresh one rather than let EventSource retry.
    stream.close();
    if (state.stream === stream) {
      setLive(false);
      state.retry = setTimeout(openStream, 2000);
    }
  };
}

function scheduleRefresh() {
  clearTimeout(state.refreshTimer);
  state.refreshTimer = setTimeout(() => current.refresh && current.refresh(), 150);
}

// ----- routing -----

let current = { topics: [], refresh: null };

function route() {
  if (!state.token) return;
  const parts = (location.hash || "#/topology").slice(2).split("/").map(decodeURIComponent);
  const name = parts[0] || "topology";
  for (const a of document.querySelectorAll("#nav a")) {
    a.classList.toggle("active", a.dataset.view === name ||
      (name === "line" && a.dataset.view === "topology"));
  }
  const views = {
    topology: () => topologyView(),
    classes: () => classesView(),
    events: () => eventsView(),
    policy: () => policyView(),
    line: () => lineView(parts[1], parts[2]),
  };
  (views[name] || views.topology)();
}

function mount(topics, render) {
  current = { topics, refresh: null };
  const mine = current;
  const refresh = async () => {
    if (current !== mine) return;
    try {
      await render();
    } catch (e) {
      if (e.status !== 401 && current === mine) {
        show(h("p", { class: "error" }, "Could not load: " + e.message));
      }
    }
  };
  mine.refresh = refresh;
  refresh();
}

// ----- topology -----

function topologyView() {
  mount(["lines", "agents", "policy"], async () => {
    const [sites, lines] = await Promise.all([api("/api/v1/sites"), api("/api/v1/lines")]);
    show(h("h1", {}, "Topology"),
      h("div", { class: "card" }, topologySvg(sites, lines)),
      h("div", { class: "card" }, lineTable(lines)));
  });
}

function spread(count, width, margin) {
  if (count === 1) return [width / 2];
  const step = (width - 2 * margin) / (count - 1);
  return Array.from({ length: count }, (_, i) => margin + i * step);
}

// Beyond this many branches the graph draws only those with a troubled line (the table
// still lists every line): a thousand boxes in one picture help nobody.
const MAX_DRAWN_BRANCHES = 40;

function topologySvg(allSites, allLines) {
  const width = 1100, height = 520;
  const core = allSites.filter((x) => x.kind !== "branch");
  let branches = allSites.filter((x) => x.kind === "branch");
  let hidden = 0;
  if (branches.length > MAX_DRAWN_BRANCHES) {
    const troubled = new Set(allLines.filter((l) => l.health === "degraded" || l.health === "down")
      .map((l) => l.site));
    const shown = branches.filter((b) => troubled.has(b.name)).slice(0, MAX_DRAWN_BRANCHES);
    hidden = branches.length - shown.length;
    branches = shown;
  }
  const sites = core.concat(branches);
  const drawn = new Set(sites.map((x) => x.name));
  const lines = allLines.filter((l) => drawn.has(l.site));
  const transports = [...new Set(lines.map((l) => l.transport))];
  const pos = {};
  spread(core.length, width, 120).forEach((x, i) => { pos["site:" + core[i].name] = [x, 60]; });
  spread(branches.length, width, 90).forEach((x, i) => { pos["site:" + branches[i].name] = [x, 460]; });
  spread(transports.length, width, 220).forEach((x, i) => { pos["net:" + transports[i]] = [x, 260]; });

  const svg = s("svg", { id: "topology", viewBox: `0 0 ${width} ${height}`, width: "100%",
    role: "img", "aria-label": "sites and lines" });
  const edges = s("g", {});
  const labels = s("g", {});
  const bySiteTransport = {};
  for (const l of lines) {
    const key = l.site + "/" + l.transport;
    bySiteTransport[key] = (bySiteTransport[key] || 0) + 1;
  }
  const seen = {};
  const trouble = [];
  for (const l of lines) {
    const [x1, y1] = pos["site:" + l.site];
    const [x2, y2] = pos["net:" + l.transport];
    const key = l.site + "/" + l.transport;
    const nth = (seen[key] = (seen[key] || 0) + 1) - 1;
    const offset = (nth - (bySiteTransport[key] - 1) / 2) * 8;
    const health = HEALTHS.includes(l.health) ? l.health : "unknown";
    const line = s("line", {
      x1: x1 + offset, y1, x2: x2 + offset, y2,
      class: "line " + health + " " + loadClass(l.load_percent),
      "data-site": l.site, "data-line": l.line, "data-health": health,
      "data-load-bps": l.load_bps || 0,
      onclick: () => { location.hash = "#/line/" + encodeURIComponent(l.site) + "/" + encodeURIComponent(l.line); },
    }, s("title", {}, `${l.site} ${l.line}: ${health}, RTT ${fmtNum(l.rtt_ms, " ms")}, ` +
      `loss ${fmtNum(l.loss_percent, "%", 2)}, jitter ${fmtNum(l.jitter_ms, " ms")}, ` +
      `load ${fmtLoad(l)}`));
    edges.append(line);
    if (health === "degraded" || health === "down") {
      // Troubled lines are named on the graph (near their site) and listed with their
      // figures in the corner; the table below has every line's figures.
      const lx = x1 + (x2 - x1) * 0.18 + offset, ly = y1 + (y2 - y1) * 0.18;
      labels.append(s("text", { x: lx + 6, y: ly, class: "label trouble " + health }, l.line));
      trouble.push(l);
    }
  }
  svg.append(edges);
  for (const t of transports) {
    const [x, y] = pos["net:" + t];
    svg.append(s("g", { class: "cloud" }, s("ellipse", { cx: x, cy: y, rx: 70, ry: 28 }),
      s("text", { x, y: y + 4, "text-anchor": "middle" }, t)));
  }
  for (const site of sites) {
    const [x, y] = pos["site:" + site.name];
    const w = Math.max(site.name.length * 7.5, (site.kind + " · " + driftText(site)).length * 6) + 18;
    svg.append(s("g", { class: "site", "data-site": site.name },
      s("rect", { x: x - w / 2, y: y - 17, width: w, height: 34, rx: 5 }),
      s("text", { x, y: y - 1, "text-anchor": "middle" }, site.name),
      s("text", { x, y: y + 12, "text-anchor": "middle", class: "label" },
        site.kind + " · " + driftText(site))));
  }
  svg.append(labels);
  const list = s("g", { id: "trouble" });
  trouble.forEach((l, i) => {
    list.append(s("text", { x: width / 2, y: 18 + i * 15, "text-anchor": "middle",
      class: "label trouble " + l.health },
      `${l.site} ${l.line} ${l.health}: RTT ${fmtNum(l.rtt_ms, " ms", 0)}, ` +
      `loss ${fmtNum(l.loss_percent, "%", 1)}, jitter ${fmtNum(l.jitter_ms, " ms", 1)}`));
  });
  svg.append(list);
  if (hidden) {
    svg.append(s("text", { x: width - 10, y: height - 8, "text-anchor": "end", class: "label", id: "hidden-branches" },
      `${hidden} branches without a degraded or down line not drawn`));
  }
  const legend = s("g", { class: "legend" });
  HEALTHS.forEach((health, i) => {
    legend.append(s("line", { x1: 10 + i * 110, y1: height - 12, x2: 40 + i * 110, y2: height - 12, class: "swatch " + health }),
      s("text", { x: 46 + i * 110, y: height - 8, class: "label" }, health));
  });
  svg.append(legend);
  return svg;
}

// Line width on the graph follows load against the line's upstream capacity, in quarters.
function loadClass(percent) {
  return "load-" + Math.min(4, Math.floor((percent || 0) / 25));
}

function fmtLoad(l) {
  return `${fmtRate(l.load_bps || 0)} (${fmtNum(l.load_percent || 0, "%", 0)})`;
}

// How a site's agent stands against what the controller published for it.
function driftText(site) {
  const text = {
    in_sync: "in sync", behind: "behind", failed: "failed to apply",
    no_rule_set: "no rules yet", never_connected: "no agent",
  }[site.drift] || site.drift;
  const version = site.applied ? ` v${site.applied.version}` : "";
  return (site.connected ? "" : "offline, ") + text + version;
}

// Lines in trouble first (down, then degraded), the rest in the policy's order.
function byTrouble(lines) {
  const rank = { down: 0, degraded: 1 };
  return lines.map((l, i) => [l, i])
    .sort(([a, i], [b, j]) => ((rank[a.health] ?? 2) - (rank[b.health] ?? 2)) || i - j)
    .map(([l]) => l);
}

function lineTable(lines) {
  lines = byTrouble(lines);
  return h("table", { id: "lines" },
    h("thead", {}, h("tr", {}, ["Site", "Line", "Health", "RTT", "Loss", "Jitter",
      "Load", "Capacity up/down", "Measured"].map((x) => h("th", {}, x)))),
    h("tbody", {}, lines.map((l) => h("tr", { "data-site": l.site, "data-line": l.line },
      h("td", {}, l.site),
      h("td", {}, h("a", { href: "#/line/" + encodeURIComponent(l.site) + "/" + encodeURIComponent(l.line) },
        l.line), h("span", { class: "muted" }, " " + l.transport)),
      h("td", { class: "health" }, badge(l.health)),
      h("td", {}, fmtNum(l.rtt_ms, " ms")),
      h("td", {}, fmtNum(l.loss_percent, "%", 2)),
      h("td", {}, fmtNum(l.jitter_ms, " ms")),
      h("td", { class: "load" }, fmtLoad(l)),
      h("td", {}, fmtRate(l.up_bps) + " / " + fmtRate(l.down_bps)),
      h("td", { class: "muted" }, fmtAgo(l.measured_at_ms))))));
}

// ----- line detail -----

function lineView(site, line) {
  mount(["lines"], async () => {
    const [detail, lines, siteDetail] = await Promise.all([
      api("/api/v1/lines/" + encodeURIComponent(site) + "/" + encodeURIComponent(line) + "/history"),
      api("/api/v1/lines"),
      api("/api/v1/sites/" + encodeURIComponent(site)),
    ]);
    const now = lines.find((l) => l.site === site && l.line === line) || {};
    const metrics = [
      ["rtt_ms", "Round-trip time", " ms"],
      ["jitter_ms", "Jitter", " ms"],
      ["loss_percent", "Loss", "%"],
    ];
    show(h("h1", {}, `${site} · ${line} `, badge(now.health)),
      h("p", { class: "muted" }, `Last hour, ${detail.samples.length} measurements. ` +
        "Dashed lines: the tightest SLA among the classes (RTT is twice the one-way latency)."),
      metrics.map(([key, title, unit]) => h("div", { class: "card" }, h("h2", {}, title),
        chart(detail.samples, key, unit, detail.thresholds))),
      h("div", { class: "card" }, h("h2", {}, "Throughput per class"),
        throughputChart(detail.samples, now.up_bps)),
      h("div", { class: "card" }, lineClasses(siteDetail.rule_set, line)));
  });
}

// What the published rule set runs on a line: classes routed over it (first or as a
// backup) and the HTB rates it gives each class there.
function lineClasses(ruleSet, line) {
  if (!ruleSet) return h("p", { class: "muted" }, "No rule set published for this site yet.");
  const spec = (ruleSet.lines || []).find((l) => l.name === line) || { shares: [], rate_bps: 0 };
  const shares = {};
  for (const share of spec.shares || []) shares[share.class] = share;
  const rows = [];
  for (const route of ruleSet.routes || []) {
    const role = route.primary === line ? "primary" : (route.backups || []).includes(line) ? "backup" : null;
    if (!role) continue;
    const share = shares[route.class];
    rows.push(h("tr", { "data-class": route.class },
      h("td", {}, route.class), h("td", {}, route.destination), h("td", {}, role),
      h("td", {}, share ? fmtRate(share.rate_bps) + " – " + fmtRate(share.ceil_bps) : "—"),
      h("td", {}, route.reason)));
  }
  return [h("h2", {}, `Classes on this line (rule set v${ruleSet.version})`),
    h("p", { class: "muted" }, `HTB root ${spec.rate_bps ? fmtRate(spec.rate_bps) : "—"}; ` +
      "rates are what the controller allocated, following measured demand."),
    rows.length ? h("table", { id: "line-classes" },
      h("thead", {}, h("tr", {}, ["Class", "Destination", "Role", "Rate – ceiling", "Why"].map((x) => h("th", {}, x)))),
      h("tbody", {}, rows)) : h("p", { class: "muted" }, "No class is routed over this line.")];
}

function tightest(thresholds, key) {
  let best = null;
  for (const t of thresholds) {
    if (t[key] !== null && t[key] !== undefined && (best === null || t[key] < best.value)) {
      best = { value: t[key], class: t.class };
    }
  }
  return best;
}

function chart(samples, key, unit, thresholds) {
  const width = 1000, height = 200, left = 55, right = 10, top = 10, bottom = 25;
  const svg = s("svg", { class: "chart", "data-metric": key, viewBox: `0 0 ${width} ${height}`, width: "100%" });
  const limit = tightest(thresholds, key);
  const values = samples.map((p) => p[key]);
  const max = Math.max(1e-9, ...values, limit ? limit.value * 1.15 : 0) * 1.05;
  const t1 = samples.length ? samples[samples.length - 1].at_ms : Date.now();
  const t0 = samples.length ? Math.min(samples[0].at_ms, t1 - 60_000) : t1 - 60_000;
  const x = (t) => left + (width - left - right) * (t - t0) / Math.max(1, t1 - t0);
  const y = (v) => top + (height - top - bottom) * (1 - v / max);
  svg.append(s("line", { class: "axis", x1: left, y1: top, x2: left, y2: height - bottom }),
    s("line", { class: "axis", x1: left, y1: height - bottom, x2: width - right, y2: height - bottom }));
  for (const v of [0, max / 2, max]) {
    svg.append(s("text", { x: left - 6, y: y(v) + 4, "text-anchor": "end", class: "label" },
      v.toFixed(v < 10 ? 1 : 0) + unit.trim()));
  }
  svg.append(s("text", { x: left, y: height - 6, class: "label" }, new Date(t0).toLocaleTimeString()),
    s("text", { x: width - right, y: height - 6, "text-anchor": "end", class: "label" },
      new Date(t1).toLocaleTimeString()));
  if (limit) {
    svg.append(s("line", { class: "threshold", x1: left, x2: width - right, y1: y(limit.value), y2: y(limit.value) }),
      s("text", { class: "threshold-label", x: width - right - 4, y: y(limit.value) - 4, "text-anchor": "end" },
        `${limit.class} SLA ${limit.value}${unit.trim()}`));
  }
  if (samples.length) {
    svg.append(s("polyline", { class: "series",
      points: samples.map((p) => `${x(p.at_ms).toFixed(1)},${y(p[key]).toFixed(1)}`).join(" ") }));
    for (const p of samples) {
      svg.append(s("circle", { class: "point", r: 2.2, cx: x(p.at_ms).toFixed(1), cy: y(p[key]).toFixed(1) },
        s("title", {}, `${new Date(p.at_ms).toLocaleTimeString()}: ${p[key]}${unit}`)));
    }
  } else {
    svg.append(s("text", { x: width / 2, y: height / 2, "text-anchor": "middle", class: "label" },
      "no measurements yet"));
  }
  return svg;
}

// One series per class: the bits per second the agent measured on this line.
function throughputChart(samples, capacityBps) {
  const width = 1000, height = 220, left = 70, right = 10, top = 10, bottom = 40;
  const svg = s("svg", { class: "chart", id: "throughput", "data-metric": "class_bps",
    viewBox: `0 0 ${width} ${height}`, width: "100%" });
  const classes = [...new Set(samples.flatMap((p) => Object.keys(p.class_bps || {})))].sort();
  const rate = (p, c) => (p.class_bps || {})[c] || 0;
  const max = Math.max(1, ...samples.flatMap((p) => classes.map((c) => rate(p, c)))) * 1.1;
  const t1 = samples.length ? samples[samples.length - 1].at_ms : Date.now();
  const t0 = samples.length ? Math.min(samples[0].at_ms, t1 - 60_000) : t1 - 60_000;
  const x = (t) => left + (width - left - right) * (t - t0) / Math.max(1, t1 - t0);
  const y = (v) => top + (height - top - bottom) * (1 - v / max);
  svg.append(s("line", { class: "axis", x1: left, y1: top, x2: left, y2: height - bottom }),
    s("line", { class: "axis", x1: left, y1: height - bottom, x2: width - right, y2: height - bottom }));
  for (const v of [0, max / 2, max]) {
    svg.append(s("text", { x: left - 6, y: y(v) + 4, "text-anchor": "end", class: "label" }, fmtRate(v)));
  }
  svg.append(s("text", { x: left, y: height - 24, class: "label" }, new Date(t0).toLocaleTimeString()),
    s("text", { x: width - right, y: height - 24, "text-anchor": "end", class: "label" },
      new Date(t1).toLocaleTimeString()));
  if (!classes.length) {
    svg.append(s("text", { x: width / 2, y: height / 2, "text-anchor": "middle", class: "label" },
      "no per-class demand reported for this line"));
    return svg;
  }
  classes.forEach((c, i) => {
    const colour = "c" + (i % 6);
    const g = s("g", { class: "class-series " + colour, "data-class": c });
    g.append(s("polyline", { class: "series",
      points: samples.map((p) => `${x(p.at_ms).toFixed(1)},${y(rate(p, c)).toFixed(1)}`).join(" ") }));
    for (const p of samples) {
      g.append(s("circle", { class: "point", r: 2, cx: x(p.at_ms).toFixed(1), cy: y(rate(p, c)).toFixed(1) },
        s("title", {}, `${c} ${new Date(p.at_ms).toLocaleTimeString()}: ${fmtRate(rate(p, c))}`)));
    }
    svg.append(g);
    svg.append(s("g", { class: "legend-item " + colour },
      s("line", { class: "swatch", x1: left + i * 130, y1: height - 9, x2: left + 24 + i * 130, y2: height - 9 }),
      s("text", { x: left + 30 + i * 130, y: height - 5, class: "label" }, c)));
  });
  if (capacityBps) {
    svg.append(s("text", { x: width - right, y: height - 5, "text-anchor": "end", class: "label" },
      "line capacity up " + fmtRate(capacityBps)));
  }
  return svg;
}

// ----- classes -----

function sinceByPlacement(decisions) {
  const since = {};
  for (const d of decisions) since[d.site + "/" + d.class] = d;
  return since;
}

function classesView() {
  mount(["decisions", "policy"], async () => {
    const [classes, decisions] = await Promise.all([api("/api/v1/classes"),
      api("/api/v1/decisions?limit=10000")]);
    const since = sinceByPlacement(decisions);
    show(h("h1", {}, "Classes"), classes.map((c) => h("div", { class: "card class", "data-class": c.name },
      h("h2", {}, c.name, h("span", { class: "muted" }, ` priority ${c.priority}` +
        (c.sla ? " · SLA " + Object.entries(c.sla).filter(([, v]) => v !== null)
          .map(([k, v]) => `${k} ${v}`).join(", ") : ""))),
      c.placements.length === 0 ? h("p", { class: "muted" }, "Not placed at any site yet.") :
        h("table", {}, h("thead", {}, h("tr", {}, ["Site", "Destination", "Line", "Backups", "Since", "Why"]
          .map((x) => h("th", {}, x)))),
          h("tbody", {}, c.placements.map((p) => {
            const d = since[p.site + "/" + c.name];
            const fresh = d && d.to_line === p.line;
            return h("tr", { "data-site": p.site },
              h("td", {}, p.site), h("td", {}, p.destination),
              h("td", { class: "placed-line" }, p.line),
              h("td", {}, p.backups.length ? p.backups.join(", ") : "none"),
              h("td", {}, fresh ? fmtTime(d.at_ms) : h("span", { class: "muted" }, "rule set v" + p.rule_set_version)),
              h("td", {}, fresh ? d.reason : p.reason));
          }))))));
  });
}

// ----- events -----

function eventsView() {
  const filters = { site: "", line: "", class: "", kind: "" };
  let loaded = null;
  const render = () => {
    if (!loaded) return;
    const rows = loaded.events.filter((e) =>
      (!filters.kind || e.kind === filters.kind) &&
      (!filters.site || e.site === filters.site) &&
      (!filters.class || e.class === filters.class) &&
      (!filters.line || e.lines.includes(filters.line)));
    const body = document.getElementById("events-body");
    body.replaceChildren();
    append(body, rows.map((e) => h("tr", { class: "event " + e.kind },
      h("td", { class: "muted" }, fmtTime(e.at_ms)), h("td", {}, e.kind), h("td", {}, e.what), h("td", {}, e.why))));
    document.getElementById("events-count").textContent = `${rows.length} of ${loaded.events.length}`;
  };
  const select = (name, options) => h("label", {}, name + " ",
    h("select", { id: "filter-" + name, onchange: (ev) => { filters[name] = ev.target.value; render(); } },
      h("option", { value: "" }, "all"),
      options.map((o) => h("option", { value: o, selected: filters[name] === o }, o))));
  mount(["decisions", "policy"], async () => {
    const admin = state.me && state.me.role === "admin";
    const [decisions, versions, lines, classes, changes, refusals] = await Promise.all([
      api("/api/v1/decisions?limit=1000"), api("/api/v1/policy/versions"),
      api("/api/v1/lines"), api("/api/v1/classes"),
      // The audit log is for admins: who changed the policy, which tokens were refused.
      admin ? api("/api/v1/audit?kind=policy_change&limit=1000") : null,
      admin ? api("/api/v1/audit?kind=auth_refused&limit=1000") : null]);
    const policyEvents = changes ? changes.map((a) => ({
      at_ms: a.at_ms, kind: "policy", site: null, class: null, lines: [],
      what: `policy ${a.from_version ? "v" + a.from_version + " → " : ""}v${a.to_version} by ${a.by} (audit)`,
      why: a.changes.join("; "),
    })) : versions.map((v) => ({
      at_ms: v.at_ms, kind: "policy", site: null, class: null, lines: [],
      what: `policy v${v.version} by ${v.by}`, why: v.changes.join("; "),
    }));
    const refusedEvents = (refusals || []).map((a) => ({
      at_ms: a.at_ms, kind: "refused", site: null, class: null, lines: [],
      what: `token refused from ${a.peer}`, why: a.reason,
    }));
    const events = decisions.map((d) => ({
      at_ms: d.at_ms, kind: "decision", site: d.site, class: d.class,
      lines: [d.from_line, d.to_line].filter(Boolean),
      what: `${d.site}: ${d.class} ${d.from_line ? d.from_line + " → " : "→ "}${d.to_line}`,
      why: d.reason,
    })).concat(policyEvents, refusedEvents);
    events.sort((a, b) => b.at_ms - a.at_ms);
    loaded = { events };
    const uniq = (xs) => [...new Set(xs)].sort();
    show(h("h1", {}, "Events"),
      h("div", { class: "filters" },
        select("kind", admin ? ["decision", "policy", "refused"] : ["decision", "policy"]),
        select("site", uniq(lines.map((l) => l.site))),
        select("line", uniq(lines.map((l) => l.line))),
        select("class", uniq(classes.map((c) => c.name))),
        h("span", { id: "events-count", class: "muted" })),
      h("div", { class: "card" }, h("table", { id: "events" },
        h("thead", {}, h("tr", {}, ["When", "Kind", "What", "Why"].map((x) => h("th", {}, x)))),
        h("tbody", { id: "events-body" }))));
    render();
  });
}

// ----- policy -----

// A line diff (longest common subsequence) of two texts, as hunks with two lines of
// context; null when the texts are too long to compare in the page.
function lineDiff(before, after) {
  const a = before.split("\n"), b = after.split("\n");
  if (a.length * b.length > 4e6) return null;
  const n = a.length, m = b.length;
  const lcs = Array.from({ length: n + 1 }, () => new Uint32Array(m + 1));
  for (let i = n - 1; i >= 0; i--) {
    for (let j = m - 1; j >= 0; j--) {
      lcs[i][j] = a[i] === b[j] ? lcs[i + 1][j + 1] + 1 : Math.max(lcs[i + 1][j], lcs[i][j + 1]);
    }
  }
  const ops = [];
  let i = 0, j = 0;
  while (i < n || j < m) {
    if (i < n && j < m && a[i] === b[j]) { ops.push([" ", a[i], j + 1]); i++; j++; }
    else if (i < n && (j === m || lcs[i + 1][j] >= lcs[i][j + 1])) { ops.push(["-", a[i], null]); i++; }
    else { ops.push(["+", b[j], j + 1]); j++; }
  }
  const keep = ops.map((op, k) => op[0] !== " " ||
    ops.slice(Math.max(0, k - 2), k + 3).some((o) => o[0] !== " "));
  const out = [];
  ops.forEach((op, k) => {
    if (!keep[k]) {
      if (out[out.length - 1] !== "gap") out.push("gap");
      return;
    }
    out.push(op);
  });
  return out;
}

function textDiff(before, after) {
  const ops = lineDiff(before, after);
  if (ops === null) return h("p", { class: "muted" }, "Too long to show a line diff.");
  return h("pre", { id: "textdiff" }, ops.map((op) => op === "gap" ?
    h("div", { class: "gap" }, "…") :
    h("div", { class: { "+": "add", "-": "del", " ": "ctx" }[op[0]] },
      (op[2] ? String(op[2]).padStart(4) : "    ") + " " + op[0] + " " + op[1])));
}

// Puts the caret of the policy editor at a diagnostic's line and column.
function jumpTo(line, column) {
  const area = document.getElementById("policy-text");
  if (!area) return;
  const lines = area.value.split("\n");
  let at = 0;
  for (let i = 0; i < Math.min(line - 1, lines.length); i++) at += lines[i].length + 1;
  at += Math.max(0, column - 1);
  area.focus();
  area.setSelectionRange(at, at);
  const lineHeight = area.scrollHeight / Math.max(1, lines.length);
  area.scrollTop = Math.max(0, (line - 4) * lineHeight);
}

function diagnosticsList(diagnostics) {
  return h("ul", { class: "diagnostics" }, diagnostics.map((d) =>
    h("li", { class: "diag " + (d.severity || "error") },
      h("a", { href: "#/policy", class: "location-link", title: "show in the editor",
        onclick: (e) => { e.preventDefault(); jumpTo(d.line, d.column); } },
        h("code", { class: "location" }, d.location || `${d.file}:${d.line}:${d.column}`)), " ",
      h("span", { class: "severity" }, d.severity || "error"), ": ", d.message,
      d.hint ? h("span", { class: "muted" }, " (" + d.hint + ")") : null)));
}

function policyView() {
  mount(["policy"], async () => {
    const [active, versions] = await Promise.all([api("/api/v1/policy"), api("/api/v1/policy/versions")]);
    const admin = state.me && state.me.role === "admin";
    // An admin may bring back any earlier version: it is loaded into the editor with its
    // diff against the active policy, and applied only after that preview.
    const rollbackCell = (v) => admin && v.version !== active.version ?
      h("td", {}, h("button", { type: "button", class: "rollback", "data-version": v.version,
        onclick: () => document.getElementById("upload").loadVersion(v.version) }, "Roll back…")) :
      admin ? h("td", { class: "muted" }, "active") : null;
    const versionTable = h("table", { id: "versions" },
      h("thead", {}, h("tr", {}, ["Version", "When", "By", "Changes"].concat(admin ? [""] : [])
        .map((x) => h("th", {}, x)))),
      h("tbody", {}, versions.slice().reverse().map((v) => h("tr", {},
        h("td", {}, "v" + v.version), h("td", {}, fmtTime(v.at_ms)), h("td", {}, v.by),
        h("td", {}, h("ul", {}, v.changes.map((c) => h("li", {}, c)))), rollbackCell(v)))));
    const parts = [h("h1", {}, `Policy v${active.version}`),
      h("p", { class: "muted" }, `${active.file}, applied ${fmtTime(active.at_ms)} by ${active.by}`)];
    if (admin) {
      // Keep what the admin is editing across live refreshes.
      const old = document.getElementById("policy-text");
      parts.push(uploadCard(old ? old.value : active.text, active.file));
    }
    parts.push(h("div", { class: "card" }, h("h2", {}, "History"), versionTable),
      h("div", { class: "card" }, h("h2", {}, "Active policy"), h("pre", { id: "policy-active" }, active.text)));
    if (document.getElementById("policy-text")) {
      // An edit is in progress: refresh the history and active text only.
      const keep = document.getElementById("upload");
      parts[2] = keep;
    }
    show(...parts);
  });
}

function uploadCard(text, file) {
  const area = h("textarea", { id: "policy-text", spellcheck: "false", "aria-label": "new policy" });
  area.value = text;
  const result = h("div", { id: "policy-result" });
  const name = h("input", { id: "policy-file", value: file, "aria-label": "file name" });
  const apply = h("button", { id: "apply", type: "button", disabled: true }, "Apply");
  let previewed = null;
  // The earlier version loaded for a rollback, while the editor still holds its text.
  let rollback = null;
  const edited = () => {
    apply.disabled = true;
    previewed = null;
    if (rollback && area.value !== rollback.text) {
      rollback = null;
      apply.textContent = "Apply";
    }
  };
  area.addEventListener("input", edited);
  const picker = h("input", { type: "file", id: "policy-upload", accept: ".yaml,.yml,text/yaml" });
  picker.addEventListener("change", async () => {
    const f = picker.files[0];
    if (!f) return;
    area.value = await f.text();
    name.value = f.name;
    edited();
  });
  const send = async (method, path) => api(path + "?file=" + encodeURIComponent(name.value || "policy.yaml"),
    { method, body: area.value, headers: { "Content-Type": "application/yaml" } });
  const fail = (e) => {
    result.replaceChildren(h("p", { class: "error" }, e.message),
      e.body && e.body.diagnostics ? diagnosticsList(e.body.diagnostics) : "");
  };
  const validate = async () => {
    try {
      const r = await send("POST", "/api/v1/policy/validate");
      result.replaceChildren(h("p", { class: "ok" }, "Valid."), diagnosticsList(r.warnings));
    } catch (e) { fail(e); }
  };
  const diff = async () => {
    try {
      const r = await send("POST", "/api/v1/policy/diff");
      previewed = area.value;
      apply.disabled = false;
      const active = await api("/api/v1/policy");
      result.replaceChildren(h("p", {}, `Changes against v${r.current_version}:`),
        r.changes.length ? h("ul", { id: "diff" }, r.changes.map((c) => h("li", {}, c))) :
          h("p", { class: "muted" }, "No changes."),
        diagnosticsList(r.warnings),
        h("details", { open: true }, h("summary", {}, "Line diff (new line numbers)"),
          textDiff(active.text, area.value)));
    } catch (e) { fail(e); }
  };
  apply.addEventListener("click", async () => {
    if (previewed !== area.value) return;
    try {
      const back = rollback && area.value === rollback.text ? rollback.version : null;
      const r = back !== null ?
        await api(`/api/v1/policy/rollback?version=${back}`, { method: "POST" }) :
        await send("PUT", "/api/v1/policy");
      result.replaceChildren(h("p", { class: "ok" }, !r.changed ? "Unchanged." :
        back !== null ? `Rolled back to v${back}: now v${r.version}.` : `Applied: now v${r.version}.`));
      apply.disabled = true;
      rollback = null;
      apply.textContent = "Apply";
      scheduleRefresh();
    } catch (e) { fail(e); }
  });
  const card = h("div", { class: "card", id: "upload" }, h("h2", {}, "Change the policy"),
    h("p", { class: "muted" }, "Validate, preview the diff, then apply. A policy with errors changes nothing."),
    h("div", {}, "Load a file: ", picker, " name: ", name), area,
    h("div", {}, h("button", { id: "validate", type: "button", onclick: validate }, "Validate"),
      h("button", { id: "diff-button", type: "button", onclick: diff }, "Preview diff"), apply),
    result);
  card.loadVersion = async (version) => {
    try {
      const v = await api(`/api/v1/policy/versions/${version}`);
      area.value = v.text;
      name.value = v.file;
      edited();
      rollback = { version, text: v.text };
      apply.textContent = `Roll back to v${version}`;
      await diff();
      area.scrollIntoView({ block: "nearest" });
    } catch (e) { fail(e); }
  };
  return card;
}

// ----- start -----

window.addEventListener("hashchange", route);
window.addEventListener("DOMContentLoaded", () => {
  document.getElementById("logout").addEventListener("click", () => signOut());
  const token = sessionStorage.getItem(TOKEN_KEY);
  if (token) signIn(token);
  else showLogin();
});

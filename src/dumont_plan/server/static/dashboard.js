// The spot dashboard: sign in, then draw four charts as inline SVG from the
// /api/v1/spot/dashboard/* routes. No library, no CDN; text goes in with
// textContent only (reasons and names come from the server).
"use strict";

const API = "/api/v1";
const SVG = "http://www.w3.org/2000/svg";
const W = 560, H = 220, PAD = { left: 60, right: 12, top: 22, bottom: 28 };
const BAR_MAX = 60;
const COLORS = ["#2f6fdf", "#d9822b", "#2e9e5b", "#b3261e", "#7b4fc9", "#0f8b8d"];
const KEY = "dumont-dashboard-token";
const OWN = "dumont-dashboard-own"; // set when this page signed in (its token may be revoked)
let timer = null;

function token() { return sessionStorage.getItem(KEY); }

function el(name, attrs, text) {
  const node = document.createElementNS(SVG, name);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, String(v));
  if (text !== undefined) node.textContent = text;
  return node;
}

function clear(svg) { while (svg.firstChild) svg.removeChild(svg.firstChild); }

function empty(svg, message) {
  clear(svg);
  svg.dataset.points = "0";
  svg.appendChild(el("text", { x: W / 2, y: H / 2, "text-anchor": "middle", class: "empty" }, message));
}

function scale(lo, hi, a, b) {
  const span = hi - lo || 1;
  return (v) => a + ((v - lo) / span) * (b - a);
}

function axes(svg, yMax, yLabel, xLabels) {
  const x0 = PAD.left, x1 = W - PAD.right, y0 = H - PAD.bottom, y1 = PAD.top;
  svg.appendChild(el("line", { x1: x0, y1: y0, x2: x1, y2: y0, class: "axis" }));
  svg.appendChild(el("line", { x1: x0, y1: y0, x2: x0, y2: y1, class: "axis" }));
  svg.appendChild(el("text", { x: x0 - 4, y: y1 + 4, "text-anchor": "end" }, fmt(yMax)));
  svg.appendChild(el("text", { x: x0 - 4, y: y0, "text-anchor": "end" }, "0"));
  svg.appendChild(el("text", { x: x0 - 4, y: 10, "text-anchor": "end" }, yLabel));
  (xLabels || []).forEach(([x, label], i) => {
    const anchor = xLabels.length > 1 ? (i === 0 ? "start" : "end") : "middle";
    svg.appendChild(el("text", { x, y: H - 8, "text-anchor": anchor }, label));
  });
}

function fmt(v) {
  if (v >= 100) return v.toFixed(0);
  if (v >= 1) return v.toFixed(2);
  return v.toPrecision(2);
}

function money(v) { return v >= 0.01 ? v.toFixed(4) : v.toPrecision(2); }

function clock(t) { return new Date(t * 1000).toTimeString().slice(0, 5); }

function bars(svg, values, labels, title, yLabel) {
  clear(svg);
  const max = Math.max(...values, 0);
  const n = values.length;
  const x0 = PAD.left, x1 = W - PAD.right, y0 = H - PAD.bottom;
  const y = scale(0, max || 1, y0, PAD.top);
  const width = Math.min((x1 - x0) / Math.max(n, 1), BAR_MAX);
  let points = 0;
  values.forEach((v, i) => {
    const h = y0 - y(v);
    const rect = el("rect", {
      x: x0 + i * width + 1, y: y0 - h, width: Math.max(width - 2, 1), height: h,
      fill: COLORS[0], class: v > 0 ? "bar point" : "bar", "data-value": v,
    });
    rect.appendChild(el("title", {}, `${labels[i]}: ${title(v)}`));
    svg.appendChild(rect);
    if (v > 0) points += 1;
  });
  const ticks = [[x0 + width / 2, labels[0] || ""]];
  if (n > 1) ticks.push([x0 + (n - 0.5) * width, labels[n - 1]]);
  axes(svg, max || 1, yLabel, ticks);
  svg.dataset.points = String(points);
}

function lines(svg, series, yLabel) {
  // series: [{name, color, dashed, points: [[t, v], ...]}]
  clear(svg);
  const all = series.flatMap((s) => s.points);
  if (!all.length) return empty(svg, "no data yet");
  const ts = all.map((p) => p[0]), vs = all.map((p) => p[1]);
  const tMin = Math.min(...ts), tMax = Math.max(...ts), vMax = Math.max(...vs, 0) * 1.05 || 1;
  const x = scale(tMin, tMax === tMin ? tMin + 1 : tMax, PAD.left, W - PAD.right);
  const y = scale(0, vMax, H - PAD.bottom, PAD.top);
  let count = 0;
  series.forEach((s, k) => {
    const color = s.color || COLORS[k % COLORS.length];
    const coords = s.points.map(([t, v]) => `${x(t).toFixed(1)},${y(v).toFixed(1)}`).join(" ");
    const attrs = { points: coords, fill: "none", stroke: color, "stroke-width": 2, class: "series" };
    if (s.dashed) attrs["stroke-dasharray"] = "5 3";
    const line = el("polyline", attrs);
    line.appendChild(el("title", {}, s.name));
    svg.appendChild(line);
    s.points.forEach(([t, v]) => {
      const dot = el("circle", { cx: x(t), cy: y(v), r: 2.5, fill: color, class: "point" });
      dot.appendChild(el("title", {}, `${s.name} ${clock(t)}: ${fmt(v)}`));
      svg.appendChild(dot);
      count += 1;
    });
    svg.appendChild(el("text", { x: PAD.left + 8 + 100 * k, y: 10, fill: color }, s.name));
  });
  axes(svg, vMax, yLabel, [[PAD.left, clock(tMin)], [W - PAD.right, clock(tMax)]]);
  svg.dataset.points = String(count);
}

async function get(path) {
  const answer = await fetch(API + path, { headers: { Authorization: `Bearer ${token()}` } });
  if (answer.status === 401) { signOut(); throw new Error("signed out"); }
  if (!answer.ok) throw new Error(`${path}: HTTP ${answer.status}`);
  return answer.json();
}

function total(label, value) {
  const box = document.createElement("div");
  box.textContent = label;
  const strong = document.createElement("b");
  strong.textContent = value;
  box.appendChild(strong);
  return box;
}

async function refresh() {
  const status = document.getElementById("status");
  try {
    const [events, spend, prices] = await Promise.all([
      get("/spot/dashboard/events?hours=24"),
      get("/spot/dashboard/spend"),
      get("/spot/dashboard/prices?hours=6"),
    ]);
    draw(events, spend, prices);
    status.textContent = `Updated ${new Date().toLocaleTimeString()}`;
    document.body.dataset.loaded = "true";
  } catch (err) {
    status.textContent = `Could not load: ${err.message}`;
  }
}

function draw(events, spend, prices) {
  const t = events.totals;
  const totals = document.getElementById("totals");
  totals.replaceChildren(
    total("Interruptions", String(t.interruptions)),
    total("Failovers", String(t.failovers)),
    total("Failed failovers", String(t.failed_failovers)),
    total("Average time to recover",
      t.average_time_to_recover_seconds === null ? "-" : `${t.average_time_to_recover_seconds} s`),
    total("Spot spend", `$${money(spend.spot_cost)}`),
    total("Saved vs on demand", `$${money(spend.savings)} (${spend.savings_percent}%)`),
  );
  const buckets = events.interruptions_over_time;
  const svgI = document.getElementById("chart-interruptions");
  if (!t.interruptions) empty(svgI, "no interruption in this period");
  else bars(svgI, buckets.map((b) => b.count), buckets.map((b) => clock(b.t)),
    (v) => `${v} interruption(s)`, "count");

  const done = events.failovers.filter((f) => f.succeeded);
  const svgF = document.getElementById("chart-failovers");
  if (!done.length) empty(svgF, "no failover in this period");
  else bars(svgF, done.map((f) => f.time_to_recover_seconds || 0),
    done.map((f) => `${clock(f.t)} -> ${f.new_instance_id}`),
    (v) => (v ? `${v} s to recover` : "recovering"), "seconds");

  const svgS = document.getElementById("chart-spend");
  if (!spend.series.length) empty(svgS, "no spot spend yet");
  else lines(svgS, [
    { name: "spot", color: COLORS[2], points: spend.series.map((p) => [p.t, p.spot]) },
    { name: "on demand", color: COLORS[3], dashed: true,
      points: spend.series.map((p) => [p.t, p.on_demand]) },
  ], "$");

  lines(document.getElementById("chart-prices"), prices.gpus.map((gpu, k) => ({
    name: gpu, color: COLORS[k % COLORS.length],
    points: prices.series[gpu].map((p) => [p.t, p.cheapest_spot]),
  })), "$/h");
}

function show(signedIn) {
  document.getElementById("login").hidden = signedIn;
  document.getElementById("board").hidden = !signedIn;
  document.getElementById("logout").hidden = !signedIn;
  if (timer) clearInterval(timer);
  timer = null;
  if (signedIn) {
    refresh();
    timer = setInterval(refresh, 10000);
  }
}

function signOut() {
  sessionStorage.removeItem(KEY);
  sessionStorage.removeItem(OWN);
  document.getElementById("who").textContent = "";
  delete document.body.dataset.loaded;
  show(false);
}

async function signIn(event) {
  event.preventDefault();
  const error = document.getElementById("login-error");
  error.textContent = "";
  const body = {
    email: document.getElementById("email").value,
    password: document.getElementById("password").value,
  };
  try {
    const answer = await fetch(`${API}/auth/login`, {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
    });
    const data = await answer.json();
    if (!answer.ok) {
      error.textContent = typeof data.error === "string" ? data.error : "Sign-in failed";
      return;
    }
    sessionStorage.setItem(KEY, data.token);
    sessionStorage.setItem(OWN, "1");
    document.getElementById("password").value = "";
    document.getElementById("who").textContent = data.user;
    show(true);
  } catch (err) {
    error.textContent = `Sign-in failed: ${err.message}`;
  }
}

function start() {
  // `dumont spot dashboard` may hand a token over in the fragment (never sent to a server).
  const match = /(?:^#|&)token=([^&]+)/.exec(location.hash);
  if (match) {
    sessionStorage.setItem(KEY, decodeURIComponent(match[1]));
    history.replaceState(null, "", location.pathname);
  }
  document.getElementById("login").addEventListener("submit", signIn);
  document.getElementById("logout").addEventListener("click", async () => {
    const held = token();
    // A token handed over by the CLI stays valid for the CLI: only this page's own is revoked.
    if (held && sessionStorage.getItem(OWN)) {
      await fetch(`${API}/auth/logout`, { method: "POST", headers: { Authorization: `Bearer ${held}` } })
        .catch(() => undefined);
    }
    signOut();
  });
  show(Boolean(token()));
}

start();

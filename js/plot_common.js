// causal_widgets front-end helpers shared by dashboard.js and study.js (no dependencies).
//
// anywidget loads ONE ES module per widget, so this file is never loaded on its own in the
// browser: causal_widgets.widgets.frontend.esm_bundle() puts its text in place of each
// front-end's `import { ... } from "./plot_common.js";` line (with `export ` taken off its top-level
// declarations), and node's test runner resolves the import as it stands. So: top-level
// declarations only (`export function`, `export const`, plain helpers), no imports, no
// default export, and no top-level name that dashboard.js or study.js declares again.

const SVG_NS = "http://www.w3.org/2000/svg";

// ------------------------------------------------------------------ pure helpers

/** A linear map from domain [d0, d1] to range [r0, r1], with .invert. */
export function linearScale(d0, d1, r0, r1) {
  const span = d1 - d0 || 1;
  const f = (v) => r0 + ((v - d0) / span) * (r1 - r0);
  f.invert = (p) => d0 + ((p - r0) / (r1 - r0 || 1)) * span;
  f.domain = [d0, d1];
  f.range = [r0, r1];
  return f;
}

/** About `count` round tick values (steps 1, 2, 2.5 or 5 x 10^k) inside [lo, hi]. */
export function niceTicks(lo, hi, count = 5) {
  if (!Number.isFinite(lo) || !Number.isFinite(hi)) return [];
  if (hi < lo) [lo, hi] = [hi, lo];
  if (hi === lo) return [lo];
  const raw = (hi - lo) / Math.max(1, count);
  const mag = Math.pow(10, Math.floor(Math.log10(raw)));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((s) => s >= raw) || 10 * mag;
  const start = Math.ceil(lo / step - 1e-9) * step;
  const ticks = [];
  for (let v = start; v <= hi + step * 1e-9; v += step) {
    ticks.push(Math.abs(v) < step * 1e-9 ? 0 : Number(v.toPrecision(12)));
  }
  return ticks;
}

const CATEGORY10 = [
  "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
  "#8c564b", "#e377c2", "#17becf", "#bcbd22", "#7f7f7f",
];

/** Colour of the layer at position `index` (category10, then golden-angle hues). */
export function layerColor(index) {
  const i = Math.max(0, Math.floor(index));
  if (i < CATEGORY10.length) return CATEGORY10[i];
  const hue = Math.round(((i - CATEGORY10.length) * 137.508 + 20) % 360);
  return `hsl(${hue}, 62%, 42%)`;
}

/** The element of sorted `epochs` nearest to `target` (ties: the earlier); null if empty. */
export function nearestEpoch(epochs, target) {
  const n = epochs ? epochs.length : 0;
  if (!n) return null;
  if (!Number.isFinite(target)) return epochs[n - 1];
  let lo = 0;
  let hi = n;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (epochs[mid] < target) lo = mid + 1;
    else hi = mid;
  }
  if (lo === 0) return epochs[0];
  if (lo === n) return epochs[n - 1];
  const before = epochs[lo - 1];
  const after = epochs[lo];
  return target - before <= after - target ? before : after;
}

/** Index of `epoch`'s nearest measured epoch in sorted `epochs` (-1 if empty). */
export function epochIndex(epochs, epoch) {
  const e = nearestEpoch(epochs, epoch);
  return e === null ? -1 : epochs.indexOf(e);
}

/** The epoch after `epoch` for playback; null at the end (playback stops). */
export function nextEpoch(epochs, epoch) {
  if (!epochs || !epochs.length) return null;
  const i = epochIndex(epochs, epoch);
  return i + 1 < epochs.length ? epochs[i + 1] : null;
}

/** The point of a trajectory at the measured epoch nearest to `epoch` (null if none). */
export function markerPoint(points, epoch) {
  if (!points || !points.length) return null;
  const e = nearestEpoch(points.map((p) => p.epoch), epoch);
  return points.find((p) => p.epoch === e) || null;
}

/** Scales for a box of `width` x `height` px with the SAME px per bit on both axes (the
 *  plane is a rotation of the (S, D) axes, so angles must be preserved); the shorter
 *  domain is widened about its centre. y grows upwards. */
export function equalAspect(domain, width, height) {
  const [xa, xb] = domain.x;
  const [ya, yb] = domain.y;
  const k = Math.min(width / (xb - xa || 1), height / (yb - ya || 1));
  const xc = (xa + xb) / 2;
  const yc = (ya + yb) / 2;
  const hx = width / k / 2;
  const hy = height / k / 2;
  return {
    x: linearScale(xc - hx, xc + hx, 0, width),
    y: linearScale(yc - hy, yc + hy, height, 0),
    pxPerBit: k,
  };
}

/** Extent [lo, hi] of the finite values of some arrays (null if none). */
export function seriesExtent(...arrays) {
  let lo = Infinity;
  let hi = -Infinity;
  for (const arr of arrays) {
    if (!arr) continue;
    for (const v of arr) if (Number.isFinite(v)) { lo = Math.min(lo, v); hi = Math.max(hi, v); }
  }
  return lo <= hi ? [lo, hi] : null;
}

/** SVG path "M x y L x y ..." through the points, broken where a value is missing. */
export function linePath(xs, ys, sx, sy) {
  let d = "";
  let pen = false;
  for (let k = 0; k < xs.length; k++) {
    if (!Number.isFinite(xs[k]) || !Number.isFinite(ys[k])) { pen = false; continue; }
    d += `${pen ? "L" : "M"}${sx(xs[k]).toFixed(1)},${sy(ys[k]).toFixed(1)}`;
    pen = true;
  }
  return d;
}

/** A number of bits for display: 3 significant digits, fixed notation when sensible. */
export function formatBits(v, withUnit = true) {
  if (v === null || v === undefined || !Number.isFinite(v)) return "–";
  const a = Math.abs(v);
  let s;
  if (a === 0) s = "0";
  else if (a >= 1000 || a < 1e-3) s = v.toExponential(2);
  else if (a >= 100) s = v.toFixed(0);
  else if (a >= 10) s = v.toFixed(1);
  else if (a >= 1) s = v.toFixed(2);
  else s = v.toPrecision(2);
  return withUnit ? `${s} bits` : s;
}

/** A plain scalar (loss, accuracy) for display with `digits` significant digits. */
export function formatScalar(v, digits) {
  if (v === null || v === undefined || !Number.isFinite(v)) return "–";
  const a = Math.abs(v);
  if (a !== 0 && (a >= 1e4 || a < 1e-3)) return v.toExponential(2);
  return String(Number(v.toPrecision(digits)));
}

// ------------------------------------------------------------------ DOM helpers

export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  setAttrs(el, attrs);
  for (const c of children.flat()) if (c !== null && c !== undefined) el.append(c);
  return el;
}

export function s(tag, attrs = {}, ...children) {
  const el = document.createElementNS(SVG_NS, tag);
  setAttrs(el, attrs);
  for (const c of children.flat()) if (c !== null && c !== undefined) el.append(c);
  return el;
}

function setAttrs(el, attrs) {
  for (const [k, v] of Object.entries(attrs)) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "text") el.textContent = v;
    else if (k.startsWith("on") && typeof v === "function") el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v === true ? "" : String(v));
  }
}

export function clear(el) {
  while (el.firstChild) el.removeChild(el.firstChild);
}

/** Fix an svg's drawing size; with a viewBox it shrinks with a narrow notebook column. */
export function size(svg, width, height) {
  svg.setAttribute("width", width);
  svg.setAttribute("height", height);
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
}

export function svgText(x, y, text, attrs = {}) {
  return s("text", { x, y, ...attrs }, text);
}

export function axisLeft(g, scale, ticks, x, width, fmt = (v) => String(v), grid = true) {
  for (const t of ticks) {
    const y = scale(t);
    if (grid) g.append(s("line", { x1: x, x2: x + width, y1: y, y2: y, class: "cw-grid" }));
    g.append(svgText(x - 6, y + 3.5, fmt(t), { class: "cw-tick", "text-anchor": "end" }));
  }
}

export function axisBottom(g, scale, ticks, y, height, fmt = (v) => String(v), grid = true) {
  for (const t of ticks) {
    const x = scale(t);
    if (grid) g.append(s("line", { x1: x, x2: x, y1: y - height, y2: y, class: "cw-grid" }));
    g.append(svgText(x, y + 14, fmt(t), { class: "cw-tick", "text-anchor": "middle" }));
  }
}

export const tickFmt = (v) => String(Number(v.toPrecision(3)));

/** The causal plane's frame in `svg`: a plot box of `w` x `hgt` px at the margins `pm`
 *  with gridded axes of the scales `sc` (equalAspect), the rotated (S, D) axes, the
 *  `mLabel` nullcline x = 0 and the axis titles. Returns the plot group `g` and `inner`,
 *  the group clipped to the box that the trajectories go in. */
export function planeFrame(svg, sc, w, hgt, pm, mLabel, { clipPrefix = "cw-clip", plotClass } = {}) {
  const g = s("g", { transform: `translate(${pm.left},${pm.top})`, class: plotClass });
  svg.append(g);
  const clipId = `${clipPrefix}-${Math.random().toString(36).slice(2)}`;
  svg.append(s("defs", {}, s("clipPath", { id: clipId }, s("rect", { x: 0, y: 0, width: w, height: hgt }))));
  g.append(s("rect", { x: 0, y: 0, width: w, height: hgt, class: "cw-plot-bg" }));
  axisLeft(g, sc.y, niceTicks(sc.y.domain[0], sc.y.domain[1], 6), 0, w, tickFmt);
  axisBottom(g, sc.x, niceTicks(sc.x.domain[0], sc.x.domain[1], 6), hgt, hgt, tickFmt);
  const inner = s("g", { "clip-path": `url(#${clipId})` });
  g.append(inner);
  // the rotated (S, D) axes: D = 0 is the line y = x, S = 0 is y = -x
  const big = 4 * Math.max(Math.abs(sc.x.domain[0]), Math.abs(sc.x.domain[1]), Math.abs(sc.y.domain[0]), Math.abs(sc.y.domain[1]), 1);
  inner.append(s("line", { x1: sc.x(-big), y1: sc.y(-big), x2: sc.x(big), y2: sc.y(big), class: "cw-diag" }));
  inner.append(s("line", { x1: sc.x(-big), y1: sc.y(big), x2: sc.x(big), y2: sc.y(-big), class: "cw-diag" }));
  // the EI nullcline
  inner.append(s("line", { x1: sc.x(0), x2: sc.x(0), y1: 0, y2: hgt, class: "cw-nullcline" }));
  inner.append(svgText(sc.x(0) + 4, 12, `${mLabel} = 0`, { class: "cw-annot" }));
  // diagonal labels placed where the diagonals leave the plot's upper edge
  const yTop = sc.y.domain[1];
  // only where the end-anchored label (~90 px) fits inside the plot
  if (sc.x(yTop) < w - 30 && sc.x(yTop) > 95) inner.append(svgText(sc.x(yTop) - 4, 24, "degeneracy = 0", { class: "cw-annot", "text-anchor": "end" }));
  if (sc.x(-yTop) > 30 && sc.x(-yTop) < w - 95) inner.append(svgText(sc.x(-yTop) + 4, 24, "sensitivity = 0", { class: "cw-annot" }));

  g.append(svgText(w / 2, hgt + 34, `${mLabel} / √2  = (S − D) / √2   [bits]`, { class: "cw-axis-label", "text-anchor": "middle" }));
  g.append(svgText(-hgt / 2, -40, "(S + D) / √2   [bits]", { class: "cw-axis-label", "text-anchor": "middle", transform: "rotate(-90)" }));
  return { g, inner };
}

// ------------------------------------------------------------------ view parts

/** What every view needs from its anywidget `model`: get(k, d) (d when the value is
 *  missing), set(k, v) (saved at once) and redraws batched into one per frame.
 *  `draw` maps section names to their draw functions, in the order they run;
 *  mark(...sections) queues sections (a queued "plane" draws the markers itself).
 *  `listeners` pairs "change:a change:b" with the sections those events redraw;
 *  destroy() stops drawing and unhooks them. `name` prefixes the console errors. */
export function viewCore(model, name, draw, listeners) {
  const get = (k, d) => {
    const v = model.get(k);
    return v === undefined || v === null ? d : v;
  };
  const set = (k, v) => {
    model.set(k, v);
    model.save_changes();
  };
  const dirty = new Set();
  let scheduled = false;
  let destroyed = false;
  const flush = () => {
    if (!scheduled || destroyed) return;
    scheduled = false;
    const d = new Set(dirty);
    dirty.clear();
    if (d.has("plane")) d.delete("markers"); // drawPlane draws the markers too
    for (const section of Object.keys(draw)) {
      if (!d.has(section)) continue;
      try { draw[section](); } catch (err) { console.error(`${name}: drawing ${section} failed`, err); }
    }
  };
  const mark = (...names) => {
    for (const n of names) dirty.add(n);
    if (scheduled) return;
    scheduled = true;
    // rAF for smoothness; the timeout keeps hidden tabs (no rAF) up to date too
    if (typeof requestAnimationFrame === "function") requestAnimationFrame(flush);
    setTimeout(flush, 60);
  };
  const handlers = [];
  for (const [events, sections] of listeners) {
    for (const ev of events.split(" ")) {
      const fn = () => mark(...sections);
      model.on(ev, fn);
      handlers.push([ev, fn]);
    }
  }
  const destroy = () => {
    destroyed = true;
    for (const [ev, fn] of handlers) model.off(ev, fn);
  };
  return { get, set, mark, destroy };
}

/** The plane's EI / EI_parts switch (the synced "plane_metric"): the button `el`, and
 *  draw(metric) to show which one is on. */
export function metricSwitch(get, set, testid) {
  const el = h("button", {
    class: "cw-toggle",
    type: "button",
    "data-testid": testid,
    title: "Draw the plane with whole-layer EI or with EI_parts in its place",
    onclick: () => set("plane_metric", get("plane_metric", "ei") === "ei" ? "ei_parts" : "ei"),
  });
  const draw = (metric) => {
    el.setAttribute("data-metric", metric);
    clear(el);
    el.append(
      h("span", { class: metric === "ei" ? "cw-on" : "", text: "EI" }),
      h("span", { class: metric === "ei_parts" ? "cw-on" : "", text: "EI_parts" }),
    );
  };
  return { el, draw };
}

/** The epoch row: a play button, a range slider over the measured epochs (the synced
 *  "epochs") and a label; scrubbing and playback set "epoch". `ids` holds the
 *  data-testid of the play button, slider and label (null: none), `sliderAttrs` more
 *  attributes of the slider; playback takes 8 s in all, at most `maxPeriod` ms a step.
 *  `redraw()` is called when playback starts or stops (queue draw() there). */
export function epochPlayer(get, set, redraw, { ids, maxPeriod, sliderAttrs = {} }) {
  const local = { playing: false, timer: null };
  const play = h("button", {
    type: "button",
    class: "cw-play",
    "data-testid": ids.play,
    title: "Play through the measured epochs",
    onclick: () => (local.playing ? stop() : start()),
  });
  const scrubber = h("input", {
    type: "range", class: "cw-scrubber", "data-testid": ids.scrubber,
    min: 0, max: 0, step: 1, value: 0, ...sliderAttrs,
  });
  const onScrub = () => {
    const eps = get("epochs", []);
    const idx = Number(scrubber.value);
    if (eps.length && Number.isFinite(idx)) {
      const e = eps[Math.max(0, Math.min(eps.length - 1, idx))];
      if (e !== get("epoch", 0)) set("epoch", e);
    }
  };
  scrubber.addEventListener("input", onScrub);
  scrubber.addEventListener("change", onScrub);
  const label = h("span", { class: "cw-epoch-label", "data-testid": ids.label });
  const row = h("div", { class: "cw-scrub-row" }, play, scrubber, label);

  function draw() {
    const eps = get("epochs", []);
    const epoch = get("epoch", 0);
    scrubber.max = String(Math.max(0, eps.length - 1));
    scrubber.disabled = eps.length < 2;
    play.disabled = eps.length < 2;
    const i = epochIndex(eps, epoch);
    if (i >= 0 && Number(scrubber.value) !== i) scrubber.value = String(i);
    label.textContent = eps.length
      ? `epoch ${epoch}  ·  ${i + 1} / ${eps.length} measured`
      : "no measurements yet";
    play.textContent = local.playing ? "❚❚" : "▶";
    play.setAttribute("aria-label", local.playing ? "pause" : "play");
  }

  function start() {
    const eps = get("epochs", []);
    if (eps.length < 2) return;
    local.playing = true;
    // start over when at the end
    if (nextEpoch(eps, get("epoch", 0)) === null) set("epoch", eps[0]);
    const period = Math.max(60, Math.min(maxPeriod, 8000 / eps.length));
    local.timer = setInterval(() => {
      const nxt = nextEpoch(get("epochs", []), get("epoch", 0));
      if (nxt === null) stop();
      else set("epoch", nxt);
    }, period);
    redraw();
  }

  function stop() {
    local.playing = false;
    if (local.timer) clearInterval(local.timer);
    local.timer = null;
    redraw();
  }

  return { row, draw, stop };
}

// causal_widgets dashboard front-end (anywidget ESM, no dependencies; DOM + SVG).
//
// Python (causal_widgets/widgets/dashboard.py, payloads.py) sends compact, already-measured
// data:
//   plane        {layer: {epoch: [...], ei: [...], ei_lo, ei_hi, ei_parts..., sensitivity...,
//                 status: {ei: "eeb", ...},  (one letter per epoch: x exact, e estimate,
//                                             b bounds, - not measured)
//                 xy: {ei: {x, y, x0, x1, y0, y1, status}, ei_parts: {...}}}}  (plane
//                 coordinates; a "b" point's interval brackets the truth: drawn open)
//   layers       [{name, n_in, n_out, kind}]
//   scalars      {epoch: [...], loss: [...], accuracy: [...]}
//   heatmap      the selected layer's matrices at the scrubbed epoch (rows = inputs i)
//   edge_history the pinned edge's E and S over the measured epochs
//   status, errors
// and this file draws it. All values are in bits; the causal-plane coordinates are
// Python's (causal_widgets.engine.plane), never recomputed here. Pure logic (scales,
// colours, lookups, formatting) is exported for node's test runner.
// The helpers it shares with study.js live in plot_common.js (inlined for the browser by
// causal_widgets.widgets.frontend.esm_bundle); those node's tests take from here are
// re-exported.

import { axisBottom, axisLeft, clear, epochIndex, epochPlayer, equalAspect, formatBits, formatScalar, h, layerColor, linePath, linearScale, markerPoint, metricSwitch, nearestEpoch, nextEpoch, niceTicks, planeFrame, s, seriesExtent, size, svgText, tickFmt, viewCore } from "./plot_common.js";

export { epochIndex, equalAspect, formatBits, layerColor, linePath, linearScale, markerPoint, nearestEpoch, nextEpoch, niceTicks, seriesExtent };

// ------------------------------------------------------------------ pure helpers

const BLUES = [
  [247, 251, 255], [222, 235, 247], [198, 219, 239], [158, 202, 225], [107, 174, 214],
  [66, 146, 198], [33, 113, 181], [8, 81, 156], [8, 48, 107],
];
const RDBU = [
  [178, 24, 43], [214, 96, 77], [244, 165, 130], [253, 219, 199], [247, 247, 247],
  [209, 229, 240], [146, 197, 222], [67, 147, 195], [33, 102, 172],
];

function interpolate(stops, t) {
  const u = Math.min(1, Math.max(0, t)) * (stops.length - 1);
  const k = Math.min(stops.length - 2, Math.floor(u));
  const f = u - k;
  const c = stops[k].map((a, idx) => Math.round(a + (stops[k + 1][idx] - a) * f));
  return `rgb(${c[0]}, ${c[1]}, ${c[2]})`;
}

/** Cell colour: sequential blues for E and S over [0, vmax]; for the difference S - E a
 *  diverging red (negative) - white (0) - blue (positive) scale over [-vmax, vmax].
 *  Values beyond the scale (e.g. small negative estimates) take the end colour. */
export function heatColor(value, vmax, kind = "ei_parts") {
  if (!Number.isFinite(value)) return "#e6e6e6";
  const m = vmax > 0 ? vmax : 1;
  if (kind === "difference") return interpolate(RDBU, 0.5 + value / (2 * m));
  return interpolate(BLUES, value / m);
}

/** Whether text on `heatColor(value, vmax, kind)` should be white (dark background). */
export function darkCell(value, vmax, kind = "ei_parts") {
  if (!Number.isFinite(value)) return false;
  const m = vmax > 0 ? vmax : 1;
  if (kind === "difference") return Math.abs(value) / m > 0.6;
  return value / m > 0.55;
}

/** Largest |value| of the matrices a heatmap shows with one shared scale (E and S
 *  share theirs so switching between them compares like with like). */
export function heatmapScaleMax(heatmap, kind) {
  const mats = kind === "difference" ? [heatmap.difference] : [heatmap.ei_parts, heatmap.sensitivity];
  let m = 0;
  for (const mat of mats) {
    if (!mat) continue;
    for (const row of mat) for (const v of row) if (Number.isFinite(v)) m = Math.max(m, Math.abs(v));
  }
  return m;
}

/** A plain scalar (loss, accuracy) for display. */
export function formatValue(v) {
  return formatScalar(v, 4);
}

/** The status a payload letter stands for (payloads.STATUS_CODES); null for "-" / none. */
export function statusName(code) {
  return { x: "exact", e: "estimate", b: "bounds" }[code] || null;
}

/** How a value reads with its status: "EI in [lo, hi] bits (bounds)" when its interval
 *  brackets it (the value is only a guess inside), "EI v bits (95 % CI lo – hi)" for an
 *  estimate, "EI v bits (exact)" for an exact one, "EI v bits" when the status is unknown. */
export function valueText(label, v, lo, hi, status) {
  const ok = Number.isFinite(lo) && Number.isFinite(hi);
  if (status === "bounds" && ok) return `${label} in [${formatBits(lo, false)}, ${formatBits(hi)}] (bounds)`;
  if (status === "estimate" && ok) return `${label} ${formatBits(v)} (95 % CI ${formatBits(lo, false)} – ${formatBits(hi, false)})`;
  if (status === "exact") return `${label} ${formatBits(v)} (exact)`;
  return `${label} ${formatBits(v)}`;
}

/** One layer's trajectory in the plane: points in epoch order, measurements where S or
 *  the chosen metric is missing (no coordinates) skipped. Each point carries its epoch,
 *  interval box and statuses: `status` the point's (its M's or S's, the less certain),
 *  `mStatus` / `sStatus` / `dStatus` its metric's, sensitivity's and degeneracy's, with
 *  their interval ends (`mLo`, `mHi`, ...). The coordinates come computed from Python
 *  (`layerData.xy[metric]`: x, y and the box x0, x1, y0, y1;
 *  causal_widgets.engine.plane), this only collects them. */
export function trajectoryPoints(layerData, metric = "ei") {
  if (!layerData || !layerData.epoch) return [];
  const ep = layerData.epoch;
  const S = layerData.sensitivity || [];
  const M = layerData[metric] || [];
  const P = (layerData.xy || {})[metric] || {};
  const st = layerData.status || {};
  const at = (key, k) => (P[key] || [])[k];
  const col = (key, k) => (layerData[key] || [])[k];
  const code = (str, k) => statusName((str || "")[k]);
  const ok = (v) => Number.isFinite(v);
  // degeneracy's own interval is sent for D = S - EI; D_parts = S - EI_parts is not
  const dKey = metric === "ei" ? "degeneracy" : null;
  const pts = [];
  for (let k = 0; k < ep.length; k++) {
    const x = at("x", k), y = at("y", k);
    if (!ok(x) || !ok(y)) continue;
    const box = { x0: at("x0", k), x1: at("x1", k), y0: at("y0", k), y1: at("y1", k) };
    const ci = Object.values(box).every(ok) ? box : null;
    const d = dKey && ok(col(dKey, k)) ? col(dKey, k) : S[k] - M[k];
    pts.push({
      epoch: ep[k], x, y, ci,
      s: S[k], m: M[k], d,
      status: code(P.status, k),
      mStatus: code(st[metric], k), mLo: col(`${metric}_lo`, k), mHi: col(`${metric}_hi`, k),
      sStatus: code(st.sensitivity, k), sLo: col("sensitivity_lo", k), sHi: col("sensitivity_hi", k),
      dStatus: dKey ? code(st[dKey], k) : null,
      dLo: dKey ? col(`${dKey}_lo`, k) : null, dHi: dKey ? col(`${dKey}_hi`, k) : null,
    });
  }
  return pts;
}

/** Whether a plane point is drawn open (its interval brackets the truth, not estimated). */
export function isBounded(p) {
  return !!p && p.status === "bounds";
}

/** The tooltip of a plane point: layer, epoch, then M, S and D with their statuses. */
export function pointTip(name, p, metric) {
  const mLabel = metric === "ei" ? "EI" : "EI_parts";
  return [
    `${name} · epoch ${p.epoch}`,
    valueText(mLabel, p.m, p.mLo, p.mHi, p.mStatus),
    valueText("sensitivity", p.s, p.sLo, p.sHi, p.sStatus),
    valueText("degeneracy", p.d, p.dLo, p.dHi, p.dStatus),
  ].join("\n");
}

/** Plane extent covering every point (and its CI box when `withCI`; a bounded point's
 *  box always, its bracket is drawn), the origin and the EI nullcline x = 0, padded by
 *  `pad` of the span on each side. */
export function planeDomain(trajectories, withCI = false, pad = 0.08) {
  let x0 = 0, x1 = 0, y0 = 0, y1 = 0;
  for (const pts of trajectories) {
    for (const p of pts) {
      const box = (withCI || p.status === "bounds") && p.ci;
      const xs = box ? [p.x, p.ci.x0, p.ci.x1] : [p.x];
      const ys = box ? [p.y, p.ci.y0, p.ci.y1] : [p.y];
      for (const v of xs) if (Number.isFinite(v)) { x0 = Math.min(x0, v); x1 = Math.max(x1, v); }
      for (const v of ys) if (Number.isFinite(v)) { y0 = Math.min(y0, v); y1 = Math.max(y1, v); }
    }
  }
  const sx = x1 - x0 || 1;
  const sy = y1 - y0 || 1;
  return { x: [x0 - pad * sx, x1 + pad * sx], y: [y0 - pad * sy, y1 + pad * sy] };
}

/** The status line's text from the status trait. */
export function statusText(status) {
  if (!status || !Object.keys(status).length) return "starting…";
  const parts = [];
  const state = status.state || "";
  if (state === "measuring") {
    const e = status.running_epoch;
    parts.push(e !== null && e !== undefined ? `measuring epoch ${e}` : "measuring");
  } else if (state) {
    parts.push(state === "loaded" ? "loaded from disk" : state);
  }
  if (status.queued) parts.push(`${status.queued} queued`);
  const n = status.measured_epochs;
  if (n !== undefined) parts.push(`${n} epoch${n === 1 ? "" : "s"} measured`);
  // a loaded or closed run's backlog (a live one says "queued" above)
  if (status.pending && !status.queued && state !== "measuring") parts.push(`${status.pending} pending`);
  if (status.dropped) parts.push(`${status.dropped} dropped`);
  if (status.errors) parts.push(`${status.errors} error${status.errors === 1 ? "" : "s"}`);
  return parts.join(" · ");
}

/** The recorded epochs still waiting to be measured (status.pending_epochs), minus any
 *  measured meanwhile: what the time axis marks as pending. */
export function pendingTicks(status, measured) {
  const done = new Set(measured || []);
  return ((status && status.pending_epochs) || []).filter((e) => !done.has(e));
}

/** The value series of a heatmap cell kind, and the node margins for it. */
export function heatmapMatrix(heatmap, kind) {
  if (!heatmap || !heatmap.available) return null;
  return heatmap[kind] || null;
}

/** Node bars for the margins: the kind's row/column sums (difference: S - E sums). */
export function nodeBars(heatmap, side, kind) {
  const nodes = heatmap && heatmap.nodes && heatmap.nodes[side];
  if (!nodes) return null;
  if (kind === "difference") {
    const s = nodes.sensitivity;
    const e = nodes.ei_parts;
    if (!s || !e) return null;
    return s.map((v, k) => (Number.isFinite(v) && Number.isFinite(e[k]) ? v - e[k] : null));
  }
  return nodes[kind] || null;
}

/** Split n points into at most `chunks` consecutive runs that share their end points,
 *  for drawing time along a trajectory as rising opacity. Returns [start, end] pairs. */
export function timeChunks(n, chunks = 6) {
  if (n < 2) return [];
  const k = Math.min(chunks, n - 1);
  const out = [];
  for (let c = 0; c < k; c++) {
    const a = Math.floor((c * (n - 1)) / k);
    const b = Math.floor(((c + 1) * (n - 1)) / k);
    out.push([a, b]);
  }
  return out;
}

// ------------------------------------------------------------------ the view

/** Draws the dashboard into `el`; returns the cleanup function. */
function createView(model, el) {
  // ---- redraws: a model change marks the sections it affects; one draw per frame
  const { get, set, mark, destroy } = viewCore(model, "cw-dashboard", {
    root: drawRoot, header: drawHeader, network: drawNetwork, plane: drawPlane,
    markers: drawMarkers, scrubber: () => player.draw(), heatmap: drawHeatmap, edge: drawEdge,
    loss: drawLoss, errors: drawErrors,
  }, [
    ["change:status change:title", ["header", "loss"]],
    ["change:layers", ["network", "plane", "heatmap"]],
    ["change:plane", ["plane", "network"]],
    ["change:plane_metric change:show_ci", ["plane"]],
    ["change:selected_layer", ["network", "plane", "root", "heatmap"]],
    ["change:epoch", ["markers", "scrubber", "loss", "edge", "root", "network"]],
    ["change:epochs", ["scrubber", "loss"]],
    ["change:heatmap change:heatmap_kind change:pinned_edge", ["heatmap"]],
    ["change:edge_history", ["edge"]],
    ["change:scalars", ["loss"]],
    ["change:errors", ["errors"]],
  ]);

  // ---- skeleton
  const title = h("div", { class: "cw-title" });
  const statusEl = h("div", { class: "cw-status", "data-testid": "cw-status" });
  const notice = h("div", { class: "cw-notice" });
  const header = h("div", { class: "cw-header" }, h("div", { class: "cw-brand" }, title), statusEl);

  const network = h("div", { class: "cw-network", role: "list" });

  const metricToggle = metricSwitch(get, set, "cw-metric-toggle");
  const ciBox = h("input", {
    type: "checkbox",
    "data-testid": "cw-ci-toggle",
    onchange: (ev) => set("show_ci", ev.target.checked),
  });
  const ciLabel = h("label", { class: "cw-check", title: "95 % confidence intervals" }, ciBox, " CI");
  const plane = s("svg", { class: "cw-plane", "data-testid": "cw-plane", width: 450, height: 390 });
  const planeNote = h("div", { class: "cw-note" });
  const planeCard = h(
    "div",
    { class: "cw-card cw-plane-card" },
    h("div", { class: "cw-card-head" }, h("span", { class: "cw-card-title", text: "Causal plane" }),
      h("span", { class: "cw-controls" }, metricToggle.el, ciLabel)),
    plane,
    planeNote,
  );

  const kindButtons = {};
  const kindBar = h("span", { class: "cw-seg", "data-testid": "cw-heatmap-kind" });
  for (const [kind, label] of [["ei_parts", "EI_parts"], ["sensitivity", "sensitivity"], ["difference", "S − E"]]) {
    const b = h("button", {
      type: "button",
      class: "cw-seg-btn",
      "data-kind": kind,
      text: label,
      onclick: () => set("heatmap_kind", kind),
    });
    kindButtons[kind] = b;
    kindBar.append(b);
  }
  const heatTitle = h("span", { class: "cw-card-title" });
  const heat = s("svg", { class: "cw-heatmap", "data-testid": "cw-heatmap", width: 450, height: 300 });
  const heatNote = h("div", { class: "cw-note" });
  const tooltip = h("div", { class: "cw-tooltip", "data-testid": "cw-tooltip" });
  const edgeSvg = s("svg", { class: "cw-edge", "data-testid": "cw-edge-history", width: 450, height: 120 });
  const heatCard = h(
    "div",
    { class: "cw-card cw-heat-card" },
    h("div", { class: "cw-card-head" }, heatTitle, kindBar),
    h("div", { class: "cw-heat-wrap" }, heat, tooltip),
    heatNote,
    edgeSvg,
  );

  const player = epochPlayer(get, set, () => mark("scrubber"), {
    ids: { play: "cw-play", scrubber: "cw-scrubber" }, maxPeriod: 400,
  });
  const loss = s("svg", { class: "cw-loss", "data-testid": "cw-loss", width: 930, height: 150 });
  const timeCard = h("div", { class: "cw-card cw-time-card" }, player.row, loss);
  const errorsEl = h("div", { class: "cw-errors", "data-testid": "cw-errors" });

  const root = h(
    "div",
    { class: "cw-dashboard" },
    header,
    notice,
    network,
    h("div", { class: "cw-main" }, planeCard, heatCard),
    timeCard,
    errorsEl,
  );
  el.append(root);

  // ---- sections
  function layerIndex() {
    const idx = new Map();
    get("layers", []).forEach((l, k) => idx.set(l.name, k));
    for (const name of Object.keys(get("plane", {}))) if (!idx.has(name)) idx.set(name, idx.size);
    return idx;
  }

  function drawRoot() {
    root.setAttribute("data-epoch", String(get("epoch", 0)));
    root.setAttribute("data-layer", get("selected_layer", ""));
  }

  function drawHeader() {
    title.textContent = get("title", "Causal structure");
    const st = get("status", {});
    statusEl.textContent = statusText(st);
    statusEl.setAttribute("data-state", st.state || "");
    notice.textContent = st.notice || "";
    notice.style.display = st.notice ? "" : "none";
  }

  function drawNetwork() {
    clear(network);
    const layers = get("layers", []);
    const plane = get("plane", {});
    const sel = get("selected_layer", "");
    const epoch = get("epoch", 0);
    const metric = get("plane_metric", "ei");
    const idx = layerIndex();
    const names = layers.length ? layers.map((l) => l.name) : Object.keys(plane);
    if (!names.length) {
      network.append(h("span", { class: "cw-muted", text: "finding the network's layers…" }));
      return;
    }
    network.append(h("span", { class: "cw-io", text: "input" }));
    names.forEach((name, k) => {
      const info = layers.find((l) => l.name === name) || {};
      const pt = markerPoint(trajectoryPoints(plane[name], metric), epoch);
      const shape = Number.isFinite(info.n_in) ? `${info.n_in} → ${info.n_out}` : "";
      const mLabel = metric === "ei" ? "EI" : "EI_parts";
      const value = !pt ? "not measured yet"
        : pt.mStatus === "bounds" ? valueText(mLabel, pt.m, pt.mLo, pt.mHi, "bounds")
          : `${mLabel} ${formatBits(pt.m)}`;
      const btn = h(
        "button",
        {
          type: "button",
          class: `cw-layer${name === sel ? " cw-selected" : ""}`,
          "data-testid": "cw-layer-button",
          "data-layer": name,
          role: "listitem",
          title: `${name}${info.kind ? ` (${info.kind})` : ""}: click to inspect its edges`,
          onclick: () => set("selected_layer", name),
        },
        h("span", { class: "cw-swatch", style: `background:${layerColor(idx.get(name) ?? k)}` }),
        h("span", { class: "cw-layer-name", text: name }),
        h("span", { class: "cw-layer-shape", text: shape }),
        h("span", { class: "cw-layer-value", text: value }),
      );
      network.append(h("span", { class: "cw-arrow", text: "→" }), btn);
    });
    network.append(h("span", { class: "cw-arrow", text: "→" }), h("span", { class: "cw-io", text: "output" }));
  }

  // plane geometry shared by drawPlane and drawMarkers
  let planeGeom = null;
  const PM = { left: 54, right: 14, top: 14, bottom: 42 };

  function planeData() {
    const metric = get("plane_metric", "ei");
    const plane = get("plane", {});
    const idx = layerIndex();
    const names = [...idx.keys()].filter((n) => plane[n]);
    return names.map((name) => ({
      name,
      color: layerColor(idx.get(name)),
      points: trajectoryPoints(plane[name], metric),
    }));
  }

  function drawPlane() {
    clear(plane);
    const metric = get("plane_metric", "ei");
    const showCI = !!get("show_ci", false);
    const sel = get("selected_layer", "");
    const mLabel = metric === "ei" ? "EI" : "EI_parts";
    metricToggle.draw(metric);
    ciBox.checked = showCI;

    const W = Number(plane.getAttribute("width"));
    const H = Number(plane.getAttribute("height"));
    size(plane, W, H);
    const w = W - PM.left - PM.right;
    const hgt = H - PM.top - PM.bottom;
    const layers = planeData();
    const withPts = layers.filter((l) => l.points.length);
    const dom = planeDomain(withPts.map((l) => l.points), showCI);
    const sc = equalAspect(dom, w, hgt);
    const { inner } = planeFrame(plane, sc, w, hgt, PM, mLabel);

    const total = withPts.reduce((a, l) => a + l.points.length, 0);
    const dots = total <= 4000;
    const anySel = withPts.some((l) => l.name === sel);
    const markers = new Map();
    const drawLayer = (layer) => {
      const isSel = layer.name === sel;
      const fade = anySel && !isSel ? 0.35 : 1;
      const traj = s("g", {
        class: `cw-trajectory${isSel ? " cw-selected" : ""}`,
        "data-testid": "cw-trajectory",
        "data-layer": layer.name,
        onclick: () => set("selected_layer", layer.name),
      });
      const pts = layer.points;
      const chunks = timeChunks(pts.length, 6);
      chunks.forEach(([a, b], c) => {
        const op = (0.25 + (0.75 * (c + 1)) / chunks.length) * fade;
        const seg = pts.slice(a, b + 1);
        traj.append(s("path", {
          d: linePath(seg.map((p) => p.x), seg.map((p) => p.y), sc.x, sc.y),
          stroke: layer.color,
          "stroke-opacity": op.toFixed(3),
          "stroke-width": isSel ? 2.6 : 1.6,
          fill: "none",
          class: "cw-traj-line",
        }));
      });
      // a wide transparent stroke makes thin lines easy to click
      traj.append(s("path", {
        d: linePath(pts.map((p) => p.x), pts.map((p) => p.y), sc.x, sc.y),
        class: "cw-hit",
      }));
      if (dots) {
        pts.forEach((p, k) => {
          const op = (0.25 + (0.75 * (k + 1)) / pts.length) * fade;
          // a bounded point is open: its value is only a guess inside its interval
          const open = isBounded(p);
          traj.append(s("circle", {
            cx: sc.x(p.x).toFixed(1), cy: sc.y(p.y).toFixed(1), r: isSel ? 2.6 : 2,
            fill: open ? "white" : layer.color, "fill-opacity": open ? 1 : op.toFixed(3),
            stroke: open ? layer.color : null, "stroke-opacity": open ? op.toFixed(3) : null,
            class: open ? "cw-dot cw-open" : "cw-dot", "data-status": p.status || "",
          }, s("title", {}, pointTip(layer.name, p, get("plane_metric", "ei")))));
        });
      }
      if (showCI && isSel) {
        for (const p of pts) if (p.ci && !isBounded(p)) traj.append(ciBars(p, sc, layer.color, 0.45));
      }
      // a bounded point's interval is its information: the selected layer's bars are drawn
      // with or without "CI" (every layer's scrubbed marker shows its own)
      if (isSel) {
        for (const p of pts) if (p.ci && isBounded(p)) traj.append(ciBars(p, sc, layer.color, 0.45 * fade, true));
      }
      inner.append(traj);
    };
    // the selected layer last, so it is drawn on top
    for (const l of withPts) if (l.name !== sel) drawLayer(l);
    for (const l of withPts) if (l.name === sel) drawLayer(l);

    const markerLayer = s("g", { class: "cw-markers" });
    inner.append(markerLayer);
    for (const l of withPts) {
      const isSel = l.name === sel;
      const grp = s("g", { class: "cw-marker-group", "data-layer": l.name });
      const ci = s("g", { class: "cw-marker-ci" });
      const c = s("circle", {
        r: isSel ? 7 : 5.5,
        fill: l.color,
        class: `cw-marker${isSel ? " cw-selected" : ""}`,
        "data-testid": "cw-plane-marker",
        "data-layer": l.name,
        onclick: () => set("selected_layer", l.name),
      });
      const tip = s("title");
      c.append(tip);
      const label = withPts.length <= 10 ? svgText(0, 0, l.name, { class: "cw-marker-label" }) : null;
      grp.append(ci, c);
      if (label) grp.append(label);
      markerLayer.append(grp);
      markers.set(l.name, { circle: c, ci, label, tip, layer: l });
    }
    planeGeom = { sc, markers, showCI, metric, hgt, w };
    const anyBounded = withPts.some((l) => l.points.some(isBounded));
    planeNote.textContent = !withPts.length
      ? (Object.keys(get("plane", {})).length && metric === "ei"
        ? "Whole-layer EI was not measured: switch the plane to EI_parts."
        : "Waiting for the first measurement…")
      : `${withPts.length} layer${withPts.length === 1 ? "" : "s"}; lines run from faint (early) to solid (late); `
        + "the dot on each line is the scrubbed epoch. Click a line to inspect that layer."
        + (anyBounded
          ? ` Open markers: ${mLabel} bounded, not estimated — the dashed bars are the interval that brackets it.`
          : "");
    planeNote.setAttribute("data-bounded", anyBounded ? "true" : "false");
    drawMarkers();
  }

  // the interval box's two bars through the point; dashed for a bracket (bounds)
  function ciBars(p, sc, color, opacity, bounds = false) {
    const g = s("g", {
      class: bounds ? "cw-ci cw-bounds-bar" : "cw-ci", stroke: color, "stroke-opacity": opacity,
      "stroke-dasharray": bounds ? "4 2" : null, "data-testid": bounds ? "cw-bounds-bar" : null,
    });
    g.append(s("line", { x1: sc.x(p.ci.x0), x2: sc.x(p.ci.x1), y1: sc.y(p.y), y2: sc.y(p.y) }));
    g.append(s("line", { x1: sc.x(p.x), x2: sc.x(p.x), y1: sc.y(p.ci.y0), y2: sc.y(p.ci.y1) }));
    return g;
  }

  function drawMarkers() {
    if (!planeGeom) return;
    const epoch = get("epoch", 0);
    const { sc, markers, showCI, metric } = planeGeom;
    for (const [name, m] of markers) {
      const p = markerPoint(m.layer.points, epoch);
      if (!p) { m.circle.setAttribute("visibility", "hidden"); continue; }
      const cx = sc.x(p.x).toFixed(1);
      const cy = sc.y(p.y).toFixed(1);
      m.circle.setAttribute("visibility", "visible");
      m.circle.setAttribute("cx", cx);
      m.circle.setAttribute("cy", cy);
      m.circle.setAttribute("data-epoch", String(p.epoch));
      // open (white, outlined in the layer's colour) when the point is bounded
      const open = isBounded(p);
      m.circle.setAttribute("data-status", p.status || "");
      m.circle.setAttribute("fill", open ? "white" : m.layer.color);
      m.circle.style.stroke = open ? m.layer.color : ""; // inline: the CSS outline is white
      m.circle.classList.toggle("cw-open", open);
      m.tip.textContent = pointTip(name, p, metric);
      if (m.label) {
        m.label.setAttribute("x", (Number(cx) + 9).toFixed(1));
        m.label.setAttribute("y", (Number(cy) - 7).toFixed(1));
      }
      clear(m.ci);
      if (p.ci && open) m.ci.append(ciBars(p, sc, m.layer.color, 0.9, true));
      else if (showCI && p.ci) m.ci.append(ciBars(p, sc, m.layer.color, 0.9));
    }
  }

  function drawHeatmap() {
    clear(heat);
    tooltip.style.display = "none";
    const hm = get("heatmap", {});
    const kind = get("heatmap_kind", "ei_parts");
    const pinned = get("pinned_edge", []);
    for (const [k, b] of Object.entries(kindButtons)) b.classList.toggle("cw-on", k === kind);
    const sel = get("selected_layer", "");
    heatTitle.textContent = sel ? `Edges of ${sel}${hm.epoch !== null && hm.epoch !== undefined ? ` · epoch ${hm.epoch}` : ""}` : "Edges";
    const mat = heatmapMatrix(hm, kind);
    const W = Number(heat.getAttribute("width"));
    if (!mat) {
      size(heat, W, 60);
      heat.append(svgText(12, 34, hm.message || (sel ? "not measured yet" : "select a layer"), { class: "cw-muted-svg" }));
      heatNote.textContent = hm.available ? `${kind} was not measured for this layer.` : "";
      return;
    }
    const rows = mat.length;
    const cols = mat[0] ? mat[0].length : 0;
    const vmax = heatmapScaleMax(hm, kind);
    const M = { left: 74, top: 58, right: 64, bottom: 12 };
    // cells fill the panel; rectangular when the matrix is tall or wide (up to 3:1)
    let cw = Math.max(2, Math.min(44, Math.floor((W - M.left - M.right) / Math.max(1, cols))));
    let ch = Math.max(2, Math.min(44, Math.floor(300 / Math.max(1, rows))));
    cw = Math.min(cw, 3 * ch);
    ch = Math.min(ch, 3 * cw);
    const mw = cw * cols;
    const mh = ch * rows;
    const H = M.top + mh + M.bottom + 4;
    size(heat, W, H);
    const g = s("g", { transform: `translate(${M.left},${M.top})` });
    heat.append(g);
    const rowStart = hm.row_start || [...Array(rows).keys()];
    const colStart = hm.col_start || [...Array(cols).keys()];
    const showText = cw >= 30 && ch >= 18 && rows * cols <= 144;
    const cellsG = s("g", { class: "cw-cells" });
    for (let r = 0; r < rows; r++) {
      for (let c = 0; c < cols; c++) {
        const v = mat[r][c];
        const i = rowStart[r];
        const j = colStart[c];
        const isPinned = pinned.length === 2 && pinned[0] === i && pinned[1] === j;
        const rect = s("rect", {
          x: c * cw, y: r * ch, width: cw - (cw > 6 ? 1 : 0), height: ch - (ch > 6 ? 1 : 0),
          fill: heatColor(v, vmax, kind),
          class: `cw-cell${isPinned ? " cw-pinned" : ""}`,
          "data-testid": "cw-heatmap-cell",
          "data-i": i, "data-j": j, "data-r": r, "data-c": c,
          "data-value": v === null || v === undefined ? "" : String(v),
        });
        cellsG.append(rect);
        if (showText) {
          cellsG.append(svgText(c * cw + cw / 2, r * ch + ch / 2 + 3.5, formatBits(v, false), {
            class: `cw-cell-text${darkCell(v, vmax, kind) ? " cw-light" : ""}`, "text-anchor": "middle",
          }));
        }
      }
    }
    g.append(cellsG);
    // pinned outline on top of every cell
    if (pinned.length === 2) {
      const r = rowStart.indexOf(pinned[0]);
      const c = colStart.indexOf(pinned[1]);
      if (r >= 0 && c >= 0) g.append(s("rect", { x: c * cw - 1, y: r * ch - 1, width: cw + 1, height: ch + 1, class: "cw-pin-outline" }));
    }
    // axis labels: rows are input neurons i, columns output neurons j
    // label every k-th row / column so labels never overlap (about 6.5 px per digit)
    const rowEvery = Math.max(1, Math.ceil(12 / ch));
    const colDigits = String(colStart[colStart.length - 1] ?? 0).length;
    const colEvery = Math.max(1, Math.ceil((6.5 * colDigits + 6) / cw));
    for (let r = 0; r < rows; r += rowEvery) g.append(svgText(-4, r * ch + ch / 2 + 3.5, String(rowStart[r]), { class: "cw-tick", "text-anchor": "end" }));
    for (let c = 0; c < cols; c += colEvery) g.append(svgText(c * cw + cw / 2, mh + 12, String(colStart[c]), { class: "cw-tick", "text-anchor": "middle" }));
    g.append(svgText(-M.left + 2, -6, "input i ↓", { class: "cw-axis-label-sm" }));
    g.append(svgText(mw + 4, -6, "output j →", { class: "cw-axis-label-sm" }));

    // node margins: bars of the kind's row/column sums; a tick for the whole-node I
    const rowBars = nodeBars(hm, "input", kind);
    const colBars = nodeBars(hm, "output", kind);
    const barMax = Math.max(1e-12, ...(rowBars || []).map((v) => Math.abs(v) || 0), ...(colBars || []).map((v) => Math.abs(v) || 0));
    const nodeEI = { input: (hm.nodes && hm.nodes.input && hm.nodes.input.ei) || null, output: (hm.nodes && hm.nodes.output && hm.nodes.output.ei) || null };
    const tickMax = Math.max(barMax, ...[...(nodeEI.input || []), ...(nodeEI.output || [])].map((v) => Math.abs(v) || 0));
    const barLen = 40;
    const b0 = -26; // bars start left of the row labels
    const bs = linearScale(0, tickMax, 0, barLen);
    const barColor = kind === "difference" ? "#8e6bb0" : "#4a7fb5";
    if (rowBars) {
      rowBars.forEach((v, r) => {
        if (!Number.isFinite(v)) return;
        const len = bs(Math.abs(v));
        g.append(s("rect", { x: b0 - len, y: r * ch + ch * 0.15, width: len, height: Math.max(1, ch * 0.7), fill: barColor, "fill-opacity": v < 0 ? 0.35 : 0.8, class: "cw-node-bar", "data-side": "input", "data-node": rowStart[r], "data-value": String(v) },
          s("title", {}, `input ${rowStart[r]}: Σ_j ${kind} = ${formatBits(v)}${nodeEI.input ? `; I(X_i; Y) = ${formatBits(nodeEI.input[r])}` : ""}`)));
      });
    }
    if (nodeEI.input && kind !== "difference") {
      nodeEI.input.forEach((v, r) => {
        if (Number.isFinite(v)) g.append(s("line", { x1: b0 - bs(Math.abs(v)), x2: b0 - bs(Math.abs(v)), y1: r * ch + ch * 0.05, y2: r * ch + ch * 0.95, class: "cw-node-tick" }));
      });
    }
    if (colBars) {
      colBars.forEach((v, c) => {
        if (!Number.isFinite(v)) return;
        const len = bs(Math.abs(v));
        g.append(s("rect", { x: c * cw + cw * 0.15, y: -4 - len, width: Math.max(1, cw * 0.7), height: len, fill: barColor, "fill-opacity": v < 0 ? 0.35 : 0.8, class: "cw-node-bar", "data-side": "output", "data-node": colStart[c], "data-value": String(v) },
          s("title", {}, `output ${colStart[c]}: Σ_i ${kind} = ${formatBits(v)}${nodeEI.output ? `; I(X; Y_j) = ${formatBits(nodeEI.output[c])}` : ""}`)));
      });
    }
    if (nodeEI.output && kind !== "difference") {
      nodeEI.output.forEach((v, c) => {
        if (Number.isFinite(v)) g.append(s("line", { y1: -4 - bs(Math.abs(v)), y2: -4 - bs(Math.abs(v)), x1: c * cw + cw * 0.05, x2: c * cw + cw * 0.95, class: "cw-node-tick" }));
      });
    }
    // colour bar
    const cbx = mw + 14;
    const cbh = Math.min(mh, 140);
    const steps = 24;
    for (let k = 0; k < steps; k++) {
      const t = k / (steps - 1);
      const v = kind === "difference" ? vmax * (1 - 2 * t) : vmax * (1 - t);
      g.append(s("rect", { x: cbx, y: (k * cbh) / steps, width: 10, height: cbh / steps + 0.5, fill: heatColor(v, vmax, kind) }));
    }
    g.append(svgText(cbx + 13, 8, formatBits(vmax, false), { class: "cw-tick" }));
    g.append(svgText(cbx + 13, cbh, kind === "difference" ? formatBits(-vmax, false) : "0", { class: "cw-tick" }));
    g.append(svgText(cbx + 13, cbh / 2 + 3, "bits", { class: "cw-tick" }));

    // hover + click by delegation (thousands of cells, one listener)
    cellsG.addEventListener("mousemove", (ev) => {
      const t = ev.target;
      if (!t || !t.getAttribute || t.getAttribute("data-testid") !== "cw-heatmap-cell") return;
      const r = Number(t.getAttribute("data-r"));
      const c = Number(t.getAttribute("data-c"));
      const i = rowStart[r];
      const j = colStart[c];
      const e = hm.ei_parts ? hm.ei_parts[r][c] : null;
      const sv = hm.sensitivity ? hm.sensitivity[r][c] : null;
      const dv = hm.difference ? hm.difference[r][c] : null;
      const block = hm.row_step > 1 || hm.col_step > 1 ? ` (block mean of ${hm.row_step}×${hm.col_step})` : "";
      clear(tooltip);
      tooltip.append(
        h("div", { class: "cw-tip-head", text: `edge ${i} → ${j}${block}` }),
        h("div", { text: `EI_parts term E: ${formatBits(e)}` }),
        h("div", { text: `sensitivity term S: ${formatBits(sv)}` }),
        h("div", { text: `S − E: ${formatBits(dv)}` }),
        h("div", { class: "cw-muted", text: "click to follow over training" }),
      );
      const box = heat.getBoundingClientRect();
      tooltip.style.display = "block";
      tooltip.style.left = `${Math.min(ev.clientX - box.left + 14, W - 190)}px`;
      tooltip.style.top = `${ev.clientY - box.top + 14}px`;
    });
    cellsG.addEventListener("mouseleave", () => { tooltip.style.display = "none"; });
    cellsG.addEventListener("click", (ev) => {
      const t = ev.target;
      if (!t || !t.getAttribute || t.getAttribute("data-testid") !== "cw-heatmap-cell") return;
      const i = Number(t.getAttribute("data-i"));
      const j = Number(t.getAttribute("data-j"));
      const cur = get("pinned_edge", []);
      set("pinned_edge", cur.length === 2 && cur[0] === i && cur[1] === j ? [] : [i, j]);
    });
    const parts = [];
    if (hm.message) parts.push(hm.message);
    if (hm.row_step > 1 || hm.col_step > 1) parts.push(`${hm.n_in}×${hm.n_out} edges shown as block means of ${hm.row_step}×${hm.col_step}.`);
    parts.push(kind === "difference"
      ? "S − E: each edge's share of degeneracy (blue: S > E)."
      : "Rows: input neurons i; columns: output neurons j. Margins: node sums; ticks: whole-node I.");
    heatNote.textContent = parts.join(" ");
  }

  function drawEdge() {
    clear(edgeSvg);
    const eh = get("edge_history", {});
    const W = Number(edgeSvg.getAttribute("width"));
    const H = Number(edgeSvg.getAttribute("height"));
    size(edgeSvg, W, H);
    if (!eh || !eh.epoch) {
      edgeSvg.append(svgText(12, 24, "Click a cell to follow that edge over training.", { class: "cw-muted-svg" }));
      return;
    }
    const M = { left: 54, right: 100, top: 22, bottom: 22 };
    const w = W - M.left - M.right;
    const hh = H - M.top - M.bottom;
    const g = s("g", { transform: `translate(${M.left},${M.top})` });
    edgeSvg.append(g);
    edgeSvg.append(svgText(M.left, 14, `edge ${eh.i} → ${eh.j} of ${eh.layer} over training`, { class: "cw-chart-title" }));
    if (eh.message) {
      g.append(svgText(0, 20, eh.message, { class: "cw-muted-svg" }));
      return;
    }
    const ex = seriesExtent(eh.epoch);
    const ey = seriesExtent(eh.ei_parts, eh.sensitivity, [0]);
    if (!ex || !ey) return;
    const sx = linearScale(ex[0], ex[1] === ex[0] ? ex[0] + 1 : ex[1], 0, w);
    const sy = linearScale(ey[0], ey[1] === ey[0] ? ey[0] + 1 : ey[1], hh, 0);
    axisLeft(g, sy, niceTicks(sy.domain[0], sy.domain[1], 3), 0, w, tickFmt);
    axisBottom(g, sx, niceTicks(sx.domain[0], sx.domain[1], 6), hh, hh, tickFmt, false);
    const series = [["ei_parts", "E (EI_parts)", "#1f77b4"], ["sensitivity", "S (sensitivity)", "#ff7f0e"]];
    series.forEach(([key, label, color], k) => {
      g.append(s("path", { d: linePath(eh.epoch, eh[key], sx, sy), stroke: color, fill: "none", "stroke-width": 1.8 }));
      if (eh.epoch.length <= 200) {
        eh.epoch.forEach((e, n) => {
          if (Number.isFinite(eh[key][n])) g.append(s("circle", { cx: sx(e), cy: sy(eh[key][n]), r: 2, fill: color }));
        });
      }
      g.append(s("line", { x1: w + 10, x2: w + 24, y1: 8 + k * 16, y2: 8 + k * 16, stroke: color, "stroke-width": 2 }));
      g.append(svgText(w + 28, 11 + k * 16, label, { class: "cw-tick" }));
    });
    const epoch = get("epoch", 0);
    if (epoch >= sx.domain[0] && epoch <= sx.domain[1]) {
      g.append(s("line", { x1: sx(epoch), x2: sx(epoch), y1: 0, y2: hh, class: "cw-epoch-line" }));
    }
  }

  function drawLoss() {
    clear(loss);
    const sc = get("scalars", {});
    const eps = get("epochs", []);
    const epoch = get("epoch", 0);
    const W = Number(loss.getAttribute("width"));
    const H = Number(loss.getAttribute("height"));
    size(loss, W, H);
    const M = { left: 54, right: 60, top: 24, bottom: 26 };
    const w = W - M.left - M.right;
    const hh = H - M.top - M.bottom;
    const g = s("g", { transform: `translate(${M.left},${M.top})` });
    loss.append(g);
    const xs = sc.epoch || [];
    const ex = seriesExtent(xs, eps);
    if (!ex) {
      g.append(svgText(0, 20, "Loss and accuracy appear here as epochs are recorded.", { class: "cw-muted-svg" }));
      return;
    }
    const sx = linearScale(ex[0], ex[1] === ex[0] ? ex[0] + 1 : ex[1], 0, w);
    axisBottom(g, sx, niceTicks(sx.domain[0], sx.domain[1], 10), hh, hh, tickFmt);
    const keys = Object.keys(sc).filter((k) => k !== "epoch");
    const lossKey = keys.includes("loss") ? "loss" : keys.find((k) => /loss/i.test(k)) || keys[0];
    const accKey = keys.find((k) => /acc/i.test(k) && k !== lossKey);
    const legend = [];
    if (lossKey) {
      const ly = seriesExtent(sc[lossKey]);
      if (ly) {
        const lo = Math.min(0, ly[0]);
        const sy = linearScale(lo, ly[1] === lo ? lo + 1 : ly[1], hh, 0);
        axisLeft(g, sy, niceTicks(sy.domain[0], sy.domain[1], 4), 0, w, tickFmt);
        g.append(s("path", { d: linePath(xs, sc[lossKey], sx, sy), stroke: "#333", fill: "none", "stroke-width": 1.6, class: "cw-loss-line" }));
        legend.push([lossKey, "#333", sc[lossKey], sy]);
      }
    }
    if (accKey) {
      const ay = seriesExtent(sc[accKey]);
      if (ay) {
        const inUnit = ay[0] >= 0 && ay[1] <= 1;
        const sy = inUnit ? linearScale(0, 1, hh, 0) : linearScale(ay[0], ay[1] === ay[0] ? ay[0] + 1 : ay[1], hh, 0);
        for (const t of niceTicks(sy.domain[0], sy.domain[1], 4)) g.append(svgText(w + 6, sy(t) + 3.5, tickFmt(t), { class: "cw-tick cw-acc-tick" }));
        g.append(s("path", { d: linePath(xs, sc[accKey], sx, sy), stroke: "#2ca02c", fill: "none", "stroke-width": 1.6, "stroke-dasharray": "5 3" }));
        legend.push([accKey, "#2ca02c", sc[accKey], sy]);
      }
    }
    // measured epochs as small ticks along the time axis
    for (const e of eps) g.append(s("line", { x1: sx(e), x2: sx(e), y1: hh - 5, y2: hh, class: "cw-measured-tick" }));
    // recorded epochs not measured yet (the backlog) as faint dotted ticks above them
    for (const e of pendingTicks(get("status", {}), eps)) {
      g.append(s("line", { x1: sx(e), x2: sx(e), y1: hh - 10, y2: hh - 5, class: "cw-pending-tick", stroke: "#999", "stroke-dasharray": "1 1", "data-epoch": e }));
    }
    // the scrubbed epoch, with the values there
    const x = sx(epoch);
    g.append(s("line", { x1: x, x2: x, y1: 0, y2: hh, class: "cw-epoch-line", "data-testid": "cw-loss-marker", "data-epoch": epoch }));
    const at = nearestEpoch(xs, epoch);
    const k = xs.indexOf(at);
    legend.forEach(([name, color, vals, sy], n) => {
      if (k >= 0 && Number.isFinite(vals[k])) g.append(s("circle", { cx: sx(at), cy: sy(vals[k]), r: 3.5, fill: color }));
      const lx = n * 170;
      g.append(s("line", { x1: lx, x2: lx + 14, y1: -12, y2: -12, stroke: color, "stroke-width": 2, "stroke-dasharray": n ? "5 3" : "" }));
      g.append(svgText(lx + 18, -8.5, `${name}${k >= 0 ? ` ${formatValue(vals[k])} at epoch ${at}` : ""}`, { class: "cw-legend" }));
    });
  }

  function drawErrors() {
    clear(errorsEl);
    const errs = get("errors", []);
    errorsEl.setAttribute("data-count", String(errs.length));
    errorsEl.style.display = errs.length ? "" : "none";
    if (!errs.length) return;
    const details = h("details", { open: errs.length <= 5 ? true : null },
      h("summary", { text: `${errs.length} measurement error${errs.length === 1 ? "" : "s"} (training goes on; these epochs/layers are missing)` }));
    const list = h("ul", {});
    for (const e of errs.slice(-200)) {
      list.append(h("li", { class: "cw-error", "data-layer": e.layer ?? "", "data-epoch": e.epoch ?? "" },
        h("b", { text: `epoch ${e.epoch ?? "?"} · ${e.layer ?? "?"}: ` }), e.message ?? ""));
    }
    details.append(list);
    errorsEl.append(details);
  }

  mark("root", "header", "network", "plane", "scrubber", "heatmap", "edge", "loss", "errors");

  return () => {
    destroy();
    player.stop();
  };
}

/** anywidget entry point. */
export default { render: ({ model, el }) => createView(model, el) };

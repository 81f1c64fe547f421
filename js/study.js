// causal_widgets study dashboard front-end (anywidget ESM, no dependencies; DOM + SVG).
//
// Python (causal_widgets/widgets/study_dashboard.py) computes everything and sends:
//   groups   [{name, colour, n_runs, n_complete, settings}]     every configuration
//   runs     [{run_id, group, seed, status, colour}]               every run
//   layers   [name, ...]   epochs [e, ...]   (all layers, union of measured epochs)
//   plane    {metric, groups: {group: {layer: {epoch, n, n_bounded, x, y, x_sd, y_sd}}},
//             runs: {run_id: {group, seed, colour, layers: {layer: {epoch, n_bounded, x, y}}}}}
//            (n_bounded: how many runs' points there are bounds -- M's interval brackets
//             it, the value is only a guess inside -- drawn open)
//   curves   {group: {epoch, n, loss, loss_sd, test_accuracy, test_accuracy_sd}}
//   error    what is wrong ("" when nothing)
// and the user's state: selected_groups, selected_runs, epoch, plane_metric, layer_filter.
// x = M/sqrt2, y = (2S - M)/sqrt2 in bits (the causal plane's 45-degree layout, computed in
// Python by causal_widgets.engine.plane like dashboard.js's); a group's x/y are the means
// over its seeds, x_sd/y_sd the spread.
//
// The helpers this shares with dashboard.js (scales, ticks, equal aspect, nearest epoch,
// line paths, DOM/SVG, the plane's frame, the epoch player) live in plot_common.js, which
// causal_widgets.widgets.frontend.esm_bundle inlines for the browser (anywidget loads one
// module per widget). Pure logic is exported for node's test runner
// (js/tests/study.test.mjs); the shared helpers those tests use are re-exported.

import { clear, epochIndex, epochPlayer, equalAspect, formatBits, formatScalar, h, layerColor, linePath, linearScale, markerPoint, metricSwitch, nearestEpoch, nextEpoch, niceTicks, planeFrame, s, seriesExtent, size, svgText, tickFmt, viewCore } from "./plot_common.js";

export { epochIndex, equalAspect, linePath, nearestEpoch, nextEpoch, niceTicks };

// ------------------------------------------------------------------ pure helpers

/** Colour of the configuration at position `index` (category10, then golden-angle hues). */
export function groupColor(index) {
  return layerColor(Number(index) || 0);
}

const DASHES = ["", "7 4", "2 3", "9 3 2 3", "4 2 1 2 1 2", "12 4"];
const SHAPES = ["circle", "square", "triangle", "diamond", "triangle-down", "cross"];

/** Line style of the layer at position `index`: an SVG stroke-dasharray ("" = solid). */
export function layerDash(index) {
  const i = Math.max(0, Math.floor(Number(index) || 0));
  return DASHES[i % DASHES.length];
}

/** Marker shape name of the layer at position `index`. */
export function layerShape(index) {
  const i = Math.max(0, Math.floor(Number(index) || 0));
  return SHAPES[i % SHAPES.length];
}

/** SVG path data of a marker `shape` of radius `r` centred at (0, 0); shapes of one
 *  radius cover about the same area so no layer looks more important. */
export function shapePath(shape, r) {
  const f = (v) => Number(v.toFixed(2));
  switch (shape) {
    case "square": {
      const a = f(r * 0.886);
      return `M${-a},${-a}H${a}V${a}H${-a}Z`;
    }
    case "triangle": {
      const a = r * 1.2;
      return `M0,${f(-a)}L${f(a * 0.866)},${f(a / 2)}L${f(-a * 0.866)},${f(a / 2)}Z`;
    }
    case "triangle-down": {
      const a = r * 1.2;
      return `M0,${f(a)}L${f(a * 0.866)},${f(-a / 2)}L${f(-a * 0.866)},${f(-a / 2)}Z`;
    }
    case "diamond": {
      const a = f(r * 1.25);
      return `M0,${-a}L${a},0L0,${a}L${-a},0Z`;
    }
    case "cross": {
      const a = f(r), b = f(r * 0.38);
      return `M${-b},${-a}H${b}V${-b}H${a}V${b}H${b}V${a}H${-b}V${b}H${-a}V${-b}H${-b}Z`;
    }
    default: {
      const a = f(r);
      return `M${-a},0A${a},${a} 0 1,0 ${a},0A${a},${a} 0 1,0 ${-a},0Z`;
    }
  }
}

/** One trajectory's points `{epoch, x, y, x_sd, y_sd, n, nBounded}` in epoch order,
 *  points with a missing coordinate skipped (a missing sd counts as 0; a missing
 *  n_bounded, from an older payload, as 0). */
export function trajectoryPoints(entry) {
  if (!entry || !entry.epoch) return [];
  const pts = [];
  for (let k = 0; k < entry.epoch.length; k++) {
    const x = entry.x ? entry.x[k] : null;
    const y = entry.y ? entry.y[k] : null;
    if (!Number.isFinite(x) || !Number.isFinite(y)) continue;
    const xs = entry.x_sd ? entry.x_sd[k] : 0;
    const ys = entry.y_sd ? entry.y_sd[k] : 0;
    pts.push({
      epoch: entry.epoch[k], x, y,
      x_sd: Number.isFinite(xs) ? xs : 0,
      y_sd: Number.isFinite(ys) ? ys : 0,
      n: entry.n ? entry.n[k] : null,
      nBounded: entry.n_bounded && Number.isFinite(entry.n_bounded[k]) ? entry.n_bounded[k] : 0,
    });
  }
  return pts;
}

/** The point of a trajectory at its measured epoch nearest to `epoch` (null if none). */
export function pointAt(points, epoch) {
  return markerPoint(points, epoch);
}

/** Names of `all` that are in `chosen`, in `all`'s order (the canonical order). */
export function ordered(all, chosen) {
  const set = new Set(chosen || []);
  return (all || []).filter((n) => set.has(n));
}

/** `list` with `item` added (`on`) or removed, kept in `order`'s order. */
export function toggled(list, item, on, order) {
  const set = new Set(list || []);
  if (on) set.add(item);
  else set.delete(item);
  const base = order && order.length ? order : [...set];
  const out = base.filter((n) => set.has(n));
  for (const n of set) if (!out.includes(n)) out.push(n);
  return out;
}

/** What the plane shows: the payload's groups that are selected (in the groups' order),
 *  its layers that pass the filter (in network order), and its picked runs. Each
 *  trajectory: {key, group, run, layer, colour, layerIndex, points}. */
export function shownTrajectories(state) {
  const plane = state.plane || {};
  const pg = plane.groups || {};
  const pr = plane.runs || {};
  const groups = state.groups || [];
  const layers = state.layers || [];
  const shownLayers = new Set(state.layer_filter || layers);
  const colourOf = new Map(groups.map((g) => [g.name, g.colour]));
  const layerIdx = new Map(layers.map((l, k) => [l, k]));
  const layerOrder = (obj) => {
    const names = Object.keys(obj || {}).filter((l) => shownLayers.has(l));
    return names.sort((a, b) => (layerIdx.get(a) ?? 1e9) - (layerIdx.get(b) ?? 1e9));
  };
  const groupNames = ordered(groups.map((g) => g.name), state.selected_groups)
    .filter((g) => pg[g]);
  const means = [];
  for (const g of groupNames) {
    for (const l of layerOrder(pg[g])) {
      means.push({
        key: `${g}|${l}`, group: g, run: null, layer: l,
        colour: colourOf.get(g) ?? 0, layerIndex: layerIdx.get(l) ?? 0,
        points: trajectoryPoints(pg[g][l]),
      });
    }
  }
  const runOrder = (state.runs || []).map((r) => r.run_id);
  const runIds = ordered(runOrder.length ? runOrder : Object.keys(pr), state.selected_runs)
    .filter((r) => pr[r]);
  const runs = [];
  for (const r of runIds) {
    const info = pr[r];
    for (const l of layerOrder(info.layers)) {
      runs.push({
        key: `${r}|${l}`, group: info.group, run: r, layer: l, seed: info.seed,
        colour: info.colour ?? colourOf.get(info.group) ?? 0, layerIndex: layerIdx.get(l) ?? 0,
        points: trajectoryPoints(info.layers[l]),
      });
    }
  }
  return { groups: groupNames, means, runs };
}

/** The tooltip line of a bounded point ("" when it is not): a run's M is bracketed, or
 *  some of a mean's runs are, so the mean is one of best guesses inside brackets. */
export function boundedText(p, mLabel, isRun = false) {
  if (!p || !(p.nBounded > 0)) return "";
  if (isRun) return `${mLabel} bounded, not estimated (bounds)`;
  const of = Number.isFinite(p.n) ? ` of ${p.n}` : "";
  return `${mLabel} bounded in ${p.nBounded}${of} run${p.nBounded === 1 && !of ? "" : "s"}: `
    + "a mean of best guesses inside their brackets";
}

/** Plane extent covering every point (with its +-sd cross when `withSd`), the origin and
 *  the nullcline x = 0, padded by `pad` of the span on each side. */
export function studyDomain(trajectories, withSd = true, pad = 0.08) {
  let x0 = 0, x1 = 0, y0 = 0, y1 = 0;
  for (const pts of trajectories) {
    for (const p of pts) {
      const sx = withSd ? p.x_sd || 0 : 0;
      const sy = withSd ? p.y_sd || 0 : 0;
      x0 = Math.min(x0, p.x - sx); x1 = Math.max(x1, p.x + sx);
      y0 = Math.min(y0, p.y - sy); y1 = Math.max(y1, p.y + sy);
    }
  }
  const spx = x1 - x0 || 1;
  const spy = y1 - y0 || 1;
  return { x: [x0 - pad * spx, x1 + pad * spx], y: [y0 - pad * spy, y1 + pad * spy] };
}

/** Closed SVG path of the band mean - sd .. mean + sd over `xs` ("" if nothing finite).
 *  Points with a missing mean are skipped; a missing sd counts as 0. */
export function bandPath(xs, mean, sd, sx, sy) {
  const up = [];
  const down = [];
  for (let k = 0; k < xs.length; k++) {
    const m = mean[k];
    if (!Number.isFinite(xs[k]) || !Number.isFinite(m)) continue;
    const s = sd && Number.isFinite(sd[k]) ? sd[k] : 0;
    up.push(`${sx(xs[k]).toFixed(1)},${sy(m + s).toFixed(1)}`);
    down.push(`${sx(xs[k]).toFixed(1)},${sy(m - s).toFixed(1)}`);
  }
  if (!up.length) return "";
  return `M${up.join("L")}L${down.reverse().join("L")}Z`;
}

/** Shared y ranges of the small charts: loss over [min(0, lo), hi] of mean +- sd of every
 *  shown group; test accuracy over [0, 1] when it lies in it, else its own extent. */
export function curveDomains(curves, names) {
  const lossVals = [];
  const accVals = [];
  let ep = [];
  for (const n of names || Object.keys(curves || {})) {
    const c = curves && curves[n];
    if (!c) continue;
    ep = ep.concat(c.epoch || []);
    (c.loss || []).forEach((v, k) => {
      const s = (c.loss_sd || [])[k] || 0;
      if (Number.isFinite(v)) lossVals.push(v - s, v + s);
    });
    (c.test_accuracy || []).forEach((v, k) => {
      const s = (c.test_accuracy_sd || [])[k] || 0;
      if (Number.isFinite(v)) accVals.push(v - s, v + s);
    });
  }
  const ex = seriesExtent(ep);
  const lx = seriesExtent(lossVals);
  const ax = seriesExtent(accVals);
  const widen = (e) => (e && e[1] === e[0] ? [e[0], e[0] + 1] : e);
  let acc = null;
  if (ax) acc = ax[0] >= 0 && ax[1] <= 1 ? [0, 1] : widen(ax);
  return {
    epoch: widen(ex),
    loss: lx ? widen([Math.min(0, lx[0]), lx[1]]) : null,
    accuracy: acc,
  };
}

/** A plain scalar (loss, accuracy) for display. */
export function formatValue(v) {
  return formatScalar(v, 3);
}

/** The header's summary line. */
export function summaryText(groups, runs, layers, epochs) {
  const nG = (groups || []).length;
  const nR = (runs || []).length;
  const done = (runs || []).filter((r) => r.status === "complete").length;
  const parts = [`${nG} configuration${nG === 1 ? "" : "s"}`];
  parts.push(done === nR ? `${nR} run${nR === 1 ? "" : "s"}` : `${done} of ${nR} runs finished`);
  if (layers && layers.length) parts.push(`${layers.length} layer${layers.length === 1 ? "" : "s"}`);
  if (epochs && epochs.length) parts.push(`epochs ${epochs[0]}–${epochs[epochs.length - 1]}`);
  return parts.join(" · ");
}

// ------------------------------------------------------------------ DOM helpers

/** A small inline legend swatch: a line in `dash` and a marker `shape`. */
function swatch(colour, dash, shape, width = 34) {
  const sv = s("svg", { class: "cw-sw", width, height: 12, viewBox: `0 0 ${width} 12` });
  sv.append(s("line", { x1: 1, x2: width - 1, y1: 6, y2: 6, stroke: colour, "stroke-width": 2, "stroke-dasharray": dash || null }));
  if (shape) sv.append(s("path", { d: shapePath(shape, 4), transform: `translate(${width / 2},6)`, fill: colour, stroke: "#fff", "stroke-width": 1 }));
  return sv;
}

// ------------------------------------------------------------------ the view

/** Draws the study dashboard into `el`; returns the cleanup function. */
function createView(model, el) {
  // ---- redraws: a model change marks the sections it affects; one draw per frame
  const { get, set, mark, destroy } = viewCore(model, "cw-study", {
    root: drawRoot, header: drawHeader, error: drawError, list: drawList, plane: drawPlane,
    markers: drawMarkers, scrubber: () => player.draw(), curves: drawCurves,
  }, [
    ["change:title change:groups change:runs change:layers change:epochs", ["header"]],
    ["change:error", ["error"]],
    ["change:groups change:runs change:selected_groups change:selected_runs", ["list", "plane", "curves", "root"]],
    ["change:plane change:layers change:layer_filter change:plane_metric", ["plane", "root"]],
    ["change:epoch", ["markers", "scrubber", "curves", "root", "list"]],
    ["change:epochs", ["scrubber"]],
    ["change:curves", ["curves", "list"]],
  ]);
  const state = () => ({
    plane: get("plane", {}),
    groups: get("groups", []),
    runs: get("runs", []),
    layers: get("layers", []),
    layer_filter: get("layer_filter", get("layers", [])),
    selected_groups: get("selected_groups", []),
    selected_runs: get("selected_runs", []),
  });

  // ---- skeleton
  const title = h("div", { class: "cw-title" });
  const summary = h("div", { class: "cw-status", "data-testid": "cw-study-summary" });
  const header = h("div", { class: "cw-header" }, title, summary);
  const errorEl = h("div", { class: "cw-errors", "data-testid": "cw-study-error" });

  const metricToggle = metricSwitch(get, set, "cw-study-metric-toggle");
  const layerChips = h("span", { class: "cw-layer-chips", "data-testid": "cw-study-layers" });
  const plane = s("svg", { class: "cw-plane", "data-testid": "cw-study-plane", width: 560, height: 440 });
  const legend = h("div", { class: "cw-legend-row", "data-testid": "cw-study-legend" });
  const planeNote = h("div", { class: "cw-note" });
  const planeCard = h(
    "div",
    { class: "cw-card cw-plane-card" },
    h("div", { class: "cw-card-head" },
      h("span", { class: "cw-card-title", text: "Causal plane · mean ± sd over seeds" }),
      h("span", { class: "cw-controls" }, layerChips, metricToggle.el)),
    plane,
    legend,
    planeNote,
  );

  const groupList = h("div", { class: "cw-group-list", "data-testid": "cw-study-groups" });
  const allBtn = h("button", { type: "button", class: "cw-link", text: "all", onclick: () => set("selected_groups", get("groups", []).map((g) => g.name)) });
  const noneBtn = h("button", { type: "button", class: "cw-link", text: "none", onclick: () => set("selected_groups", []) });
  const listCard = h(
    "div",
    { class: "cw-card cw-list-card" },
    h("div", { class: "cw-card-head" }, h("span", { class: "cw-card-title", text: "Configurations" }),
      h("span", { class: "cw-controls cw-muted" }, allBtn, " · ", noneBtn)),
    groupList,
    h("div", { class: "cw-note", text: "Tick a configuration to draw its mean over seeds; tick a run to overlay it as a thin line." }),
  );

  const player = epochPlayer(get, set, () => mark("scrubber"), {
    ids: { play: "cw-study-play", scrubber: "cw-study-scrubber", label: "cw-study-epoch-label" },
    maxPeriod: 500,
    // JupyterLab's shortcuts would otherwise take the arrow keys from the focused slider
    sliderAttrs: { "data-lm-suppress-shortcuts": "true" },
  });
  const curvesEl = h("div", { class: "cw-curves", "data-testid": "cw-study-curves" });
  const timeCard = h("div", { class: "cw-card cw-time-card" }, player.row, curvesEl);

  const root = h(
    "div",
    { class: "cw-study", "data-testid": "cw-study" },
    header,
    errorEl,
    h("div", { class: "cw-main" }, planeCard, listCard),
    timeCard,
  );
  el.append(root);

  // ---- sections
  function drawRoot() {
    const shown = shownTrajectories(state());
    root.setAttribute("data-epoch", String(get("epoch", 0)));
    root.setAttribute("data-groups", JSON.stringify(shown.groups));
    root.setAttribute("data-runs", JSON.stringify([...new Set(shown.runs.map((t) => t.run))]));
    root.setAttribute("data-metric", get("plane_metric", "ei"));
  }

  function drawHeader() {
    title.textContent = get("title", "Study");
    summary.textContent = summaryText(get("groups", []), get("runs", []), get("layers", []), get("epochs", []));
  }

  function drawError() {
    const msg = get("error", "");
    errorEl.textContent = msg;
    errorEl.style.display = msg ? "" : "none";
  }

  function drawList() {
    clear(groupList);
    const groups = get("groups", []);
    const runs = get("runs", []);
    const selG = new Set(get("selected_groups", []));
    const selR = new Set(get("selected_runs", []));
    const curves = get("curves", {});
    const epoch = get("epoch", 0);
    const groupOrder = groups.map((g) => g.name);
    const runOrder = runs.map((r) => r.run_id);
    if (!groups.length) {
      groupList.append(h("div", { class: "cw-muted", text: "no configurations" }));
      return;
    }
    for (const g of groups) {
      const on = selG.has(g.name);
      const box = h("input", {
        type: "checkbox", checked: on, "data-testid": "cw-study-group-toggle", "data-group": g.name,
        onchange: (ev) => set("selected_groups", toggled(get("selected_groups", []), g.name, ev.target.checked, groupOrder)),
      });
      box.checked = on;
      const c = curves[g.name];
      let at = "";
      if (c && c.epoch && c.epoch.length) {
        const e = nearestEpoch(c.epoch, epoch);
        const k = c.epoch.indexOf(e);
        const parts = [];
        if (c.loss) parts.push(`loss ${formatValue(c.loss[k])}`);
        if (c.test_accuracy) parts.push(`test acc ${formatValue(c.test_accuracy[k])}`);
        at = parts.join(" · ");
      }
      const head = h("label", { class: `cw-group-row${on ? "" : " cw-off"}` },
        box,
        h("span", { class: "cw-group-swatch", style: `background:${groupColor(g.colour)}` }),
        h("span", { class: "cw-group-name", text: g.name }),
        h("span", { class: "cw-group-meta", text: g.n_complete === g.n_runs ? `${g.n_runs} run${g.n_runs === 1 ? "" : "s"}` : `${g.n_complete}/${g.n_runs} runs` }),
      );
      const runBox = h("div", { class: "cw-run-list" });
      for (const r of runs.filter((x) => x.group === g.name)) {
        const rOn = selR.has(r.run_id);
        const missing = r.status !== "complete";
        const rb = h("input", {
          type: "checkbox", checked: rOn, disabled: missing,
          "data-testid": "cw-study-run-toggle", "data-run": r.run_id, "data-group": g.name,
          onchange: (ev) => set("selected_runs", toggled(get("selected_runs", []), r.run_id, ev.target.checked, runOrder)),
        });
        rb.checked = rOn;
        runBox.append(h("label", { class: `cw-run-row${missing ? " cw-missing" : ""}`, title: `run ${r.run_id}` },
          rb,
          h("span", { text: `seed ${r.seed ?? "?"}` }),
          h("span", { class: "cw-run-id", text: missing ? `${r.run_id} (missing)` : r.run_id })));
      }
      groupList.append(h("div", { class: "cw-group", "data-group": g.name }, head,
        at ? h("div", { class: "cw-group-at", text: at }) : null, runBox));
    }
  }

  // plane geometry shared by drawPlane and drawMarkers
  let geom = null;
  const PM = { left: 54, right: 14, top: 14, bottom: 42 };

  function drawPlane() {
    clear(plane);
    const st = state();
    const metric = get("plane_metric", "ei");
    const mLabel = metric === "ei" ? "EI" : "EI_parts";
    metricToggle.draw(metric);
    drawLayerChips(st);

    const W = Number(plane.getAttribute("width"));
    const H = Number(plane.getAttribute("height"));
    size(plane, W, H);
    const w = W - PM.left - PM.right;
    const hgt = H - PM.top - PM.bottom;
    const shown = shownTrajectories(st);
    const all = [...shown.means, ...shown.runs].filter((t) => t.points.length);
    const dom = studyDomain(all.map((t) => t.points), true);
    const sc = equalAspect(dom, w, hgt);
    plane.setAttribute("data-scale", JSON.stringify({
      x: sc.x.domain, y: sc.y.domain, width: w, height: hgt, left: PM.left, top: PM.top,
    }));
    const { inner } = planeFrame(plane, sc, w, hgt, PM, mLabel, { clipPrefix: "cw-study-clip", plotClass: "cw-plot" });

    // picked runs first (thin, underneath), then the group means
    const runsG = s("g", { class: "cw-runs" });
    for (const t of shown.runs) {
      if (!t.points.length) continue;
      const colour = groupColor(t.colour);
      runsG.append(s("path", {
        d: linePath(t.points.map((p) => p.x), t.points.map((p) => p.y), sc.x, sc.y),
        stroke: colour, "stroke-dasharray": layerDash(t.layerIndex) || null,
        class: "cw-run-line", "data-testid": "cw-study-run-trajectory",
        "data-run": t.run, "data-group": t.group, "data-layer": t.layer,
      }, s("title", {}, `${t.group} · seed ${t.seed} (${t.run}) · ${t.layer}`)));
    }
    inner.append(runsG);
    const meansG = s("g", { class: "cw-means" });
    for (const t of shown.means) {
      if (!t.points.length) continue;
      const colour = groupColor(t.colour);
      const traj = s("g", { class: "cw-trajectory", "data-group": t.group, "data-layer": t.layer });
      traj.append(s("path", {
        d: linePath(t.points.map((p) => p.x), t.points.map((p) => p.y), sc.x, sc.y),
        stroke: colour, "stroke-dasharray": layerDash(t.layerIndex) || null,
        class: "cw-traj-line", "data-testid": "cw-study-trajectory",
        "data-group": t.group, "data-layer": t.layer,
      }, s("title", {}, `${t.group} · ${t.layer}: mean over seeds`)));
      const n = t.points.length;
      t.points.forEach((p, k) => {
        const op = 0.25 + (0.75 * (k + 1)) / n; // faint (early) to solid (late)
        // open: bounded (the value is a guess inside a bracket); the first one is larger
        const open = p.nBounded > 0;
        const note = boundedText(p, mLabel);
        traj.append(s("circle", {
          cx: sc.x(p.x).toFixed(1), cy: sc.y(p.y).toFixed(1), r: k === 0 ? 3.2 : 2,
          fill: open ? "#fff" : colour, stroke: open ? colour : null,
          "fill-opacity": open || k === 0 ? 1 : op.toFixed(3),
          class: open ? "cw-dot cw-open" : "cw-dot", "data-bounded": p.nBounded,
        }, s("title", {}, `${t.group} · ${t.layer} · epoch ${p.epoch}${note ? `\n${note}` : ""}`)));
      });
      meansG.append(traj);
    }
    inner.append(meansG);
    const markerLayer = s("g", { class: "cw-markers" });
    inner.append(markerLayer);
    geom = { sc, markerLayer, shown, metric, w, hgt };

    drawLegend(shown, st);
    const nG = shown.groups.length;
    const nL = new Set(shown.means.map((t) => t.layer)).size;
    const anyBounded = all.some((t) => t.points.some((p) => p.nBounded > 0));
    planeNote.textContent = !all.length
      ? (nG ? "Nothing measured for the shown configurations and layers." : "Tick a configuration to draw it.")
      : `${nG} configuration${nG === 1 ? "" : "s"} × ${nL} layer${nL === 1 ? "" : "s"}: lines are means over seeds `
        + "(larger dot: first measurement); at the scrubbed epoch each carries a ±1 sd cross and ellipse."
        + (anyBounded ? ` Open markers: ${mLabel} bounded, not estimated, in some runs — the value is a best guess inside a bracket (hover for how many).` : "");
    planeNote.setAttribute("data-bounded", anyBounded ? "true" : "false");
    drawMarkers();
  }

  function drawLayerChips(st) {
    clear(layerChips);
    const layers = st.layers;
    const shownLayers = new Set(st.layer_filter);
    layers.forEach((l, k) => {
      const box = h("input", {
        type: "checkbox", checked: shownLayers.has(l), "data-testid": "cw-study-layer-toggle", "data-layer": l,
        onchange: (ev) => set("layer_filter", toggled(get("layer_filter", layers), l, ev.target.checked, layers)),
      });
      box.checked = shownLayers.has(l);
      layerChips.append(h("label", { class: "cw-chip", title: `show layer ${l}` }, box,
        swatch("#57606a", layerDash(k), layerShape(k), 26), h("span", { text: l })));
    });
  }

  function drawLegend(shown, st) {
    clear(legend);
    const colourOf = new Map(st.groups.map((g) => [g.name, g.colour]));
    for (const name of shown.groups) {
      legend.append(h("span", { class: "cw-legend-item", "data-testid": "cw-study-legend-group", "data-group": name },
        swatch(groupColor(colourOf.get(name)), "", null, 22), h("span", { text: name })));
    }
    const layerIdx = new Map(st.layers.map((l, k) => [l, k]));
    const layers = [...new Set(shown.means.map((t) => t.layer).concat(shown.runs.map((t) => t.layer)))];
    if (shown.groups.length && layers.length) legend.append(h("span", { class: "cw-legend-sep" }));
    for (const l of layers) {
      const k = layerIdx.get(l) ?? 0;
      legend.append(h("span", { class: "cw-legend-item", "data-testid": "cw-study-legend-layer", "data-layer": l },
        swatch("#57606a", layerDash(k), layerShape(k)), h("span", { text: l })));
    }
    if (shown.runs.length) {
      legend.append(h("span", { class: "cw-legend-item" },
        s("svg", { class: "cw-sw", width: 22, height: 12, viewBox: "0 0 22 12" },
          s("line", { x1: 1, x2: 21, y1: 6, y2: 6, stroke: "#57606a", "stroke-width": 1, "stroke-opacity": 0.6 })),
        h("span", { text: "single runs" })));
    }
  }

  function drawMarkers() {
    if (!geom) return;
    const { sc, markerLayer, shown, metric } = geom;
    clear(markerLayer);
    const epoch = get("epoch", 0);
    const mLabel = metric === "ei" ? "EI" : "EI_parts";
    for (const t of shown.runs) {
      const p = pointAt(t.points, epoch);
      if (!p) continue;
      const cx = sc.x(p.x).toFixed(1);
      const cy = sc.y(p.y).toFixed(1);
      const open = p.nBounded > 0;
      const note = boundedText(p, mLabel, true);
      markerLayer.append(s("circle", {
        cx, cy, r: 3, fill: open ? "#fff" : groupColor(t.colour), class: `cw-run-marker${open ? " cw-open" : ""}`,
        style: open ? `stroke:${groupColor(t.colour)}` : null,
        "data-testid": "cw-study-run-marker", "data-run": t.run, "data-group": t.group,
        "data-layer": t.layer, "data-epoch": p.epoch, "data-x": p.x, "data-y": p.y,
        "data-bounded": p.nBounded,
      }, s("title", {}, `${t.group} · seed ${t.seed} · ${t.layer} · epoch ${p.epoch}${note ? `\n${note}` : ""}`)));
    }
    // spreads under every mean marker
    const sdG = s("g", { class: "cw-sds" });
    const mG = s("g", {});
    markerLayer.append(sdG, mG);
    for (const t of shown.means) {
      const p = pointAt(t.points, epoch);
      if (!p) continue;
      const colour = groupColor(t.colour);
      const cx = sc.x(p.x);
      const cy = sc.y(p.y);
      const rx = p.x_sd * sc.pxPerBit;
      const ry = p.y_sd * sc.pxPerBit;
      sdG.append(s("g", {
        class: "cw-sd", stroke: colour, "data-testid": "cw-study-sd",
        "data-group": t.group, "data-layer": t.layer, "data-x-sd": p.x_sd, "data-y-sd": p.y_sd,
      },
      s("ellipse", { cx: cx.toFixed(1), cy: cy.toFixed(1), rx: rx.toFixed(1), ry: ry.toFixed(1), fill: colour, class: "cw-sd-ellipse" }),
      s("line", { x1: (cx - rx).toFixed(1), x2: (cx + rx).toFixed(1), y1: cy.toFixed(1), y2: cy.toFixed(1) }),
      s("line", { x1: cx.toFixed(1), x2: cx.toFixed(1), y1: (cy - ry).toFixed(1), y2: (cy + ry).toFixed(1) })));
      const open = p.nBounded > 0;
      const note = boundedText(p, mLabel);
      mG.append(s("path", {
        d: shapePath(layerShape(t.layerIndex), 5.5),
        transform: `translate(${cx.toFixed(1)},${cy.toFixed(1)})`,
        fill: open ? "#fff" : colour, class: `cw-marker${open ? " cw-open" : ""}`,
        // inline: the stylesheet's outline is white
        style: open ? `stroke:${colour}` : null, "data-bounded": p.nBounded,
        "data-testid": "cw-study-marker", "data-group": t.group, "data-layer": t.layer,
        "data-epoch": p.epoch, "data-cx": cx.toFixed(1), "data-cy": cy.toFixed(1),
        "data-x": p.x, "data-y": p.y,
      }, s("title", {}, `${t.group} · ${t.layer} · epoch ${p.epoch} (mean of ${p.n ?? "?"} runs)\n`
        + `${mLabel}/√2 = ${formatBits(p.x)} ± ${formatBits(p.x_sd, false)}\n`
        + `(2S − ${mLabel})/√2 = ${formatBits(p.y)} ± ${formatBits(p.y_sd, false)}`
        + (note ? `\n${note}` : ""))));
    }
  }

  function drawCurves() {
    clear(curvesEl);
    const curves = get("curves", {});
    const groups = get("groups", []);
    const names = ordered(groups.map((g) => g.name), get("selected_groups", [])).filter((n) => curves[n]);
    const colourOf = new Map(groups.map((g) => [g.name, g.colour]));
    const epoch = get("epoch", 0);
    if (!names.length) {
      curvesEl.append(h("div", { class: "cw-muted", text: "Loss and test accuracy of the ticked configurations appear here." }));
      return;
    }
    const dom = curveDomains(curves, names);
    const W = 228, H = 132;
    const M = { left: 34, right: 30, top: 20, bottom: 20 };
    const w = W - M.left - M.right;
    const hh = H - M.top - M.bottom;
    if (!dom.epoch) return;
    const sx = linearScale(dom.epoch[0], dom.epoch[1], 0, w);
    const sl = dom.loss ? linearScale(dom.loss[0], dom.loss[1], hh, 0) : null;
    const sa = dom.accuracy ? linearScale(dom.accuracy[0], dom.accuracy[1], hh, 0) : null;
    for (const name of names) {
      const c = curves[name];
      const colour = groupColor(colourOf.get(name));
      const svg = s("svg", { class: "cw-curve", "data-testid": "cw-study-curve", "data-group": name, width: W, height: H });
      size(svg, W, H);
      const g = s("g", { transform: `translate(${M.left},${M.top})` });
      svg.append(g);
      g.append(s("rect", { x: 0, y: 0, width: w, height: hh, class: "cw-plot-bg" }));
      for (const t of niceTicks(sx.domain[0], sx.domain[1], 4)) g.append(svgText(sx(t), hh + 13, tickFmt(t), { class: "cw-tick", "text-anchor": "middle" }));
      if (sl) {
        for (const t of niceTicks(sl.domain[0], sl.domain[1], 3)) {
          g.append(s("line", { x1: 0, x2: w, y1: sl(t), y2: sl(t), class: "cw-grid" }));
          g.append(svgText(-4, sl(t) + 3.5, tickFmt(t), { class: "cw-tick", "text-anchor": "end" }));
        }
        if (c.loss) {
          g.append(s("path", { d: bandPath(c.epoch, c.loss, c.loss_sd, sx, sl), fill: colour, class: "cw-band" }));
          g.append(s("path", { d: linePath(c.epoch, c.loss, sx, sl), stroke: colour, fill: "none", "stroke-width": 1.6, class: "cw-loss-line" }));
        }
      }
      if (sa && c.test_accuracy) {
        for (const t of niceTicks(sa.domain[0], sa.domain[1], 2)) g.append(svgText(w + 4, sa(t) + 3.5, tickFmt(t), { class: "cw-tick cw-acc-tick" }));
        g.append(s("path", { d: bandPath(c.epoch, c.test_accuracy, c.test_accuracy_sd, sx, sa), fill: "#2ca02c", class: "cw-band cw-acc-band" }));
        g.append(s("path", { d: linePath(c.epoch, c.test_accuracy, sx, sa), stroke: "#2ca02c", fill: "none", "stroke-width": 1.4, "stroke-dasharray": "4 2", class: "cw-acc-line" }));
      }
      const x = sx(Math.min(sx.domain[1], Math.max(sx.domain[0], epoch)));
      g.append(s("line", { x1: x, x2: x, y1: 0, y2: hh, class: "cw-epoch-line", "data-testid": "cw-study-curve-marker", "data-epoch": epoch }));
      const at = nearestEpoch(c.epoch, epoch);
      const k = c.epoch.indexOf(at);
      if (k >= 0 && sl && c.loss && Number.isFinite(c.loss[k])) g.append(s("circle", { cx: sx(at), cy: sl(c.loss[k]), r: 3, fill: colour }));
      if (k >= 0 && sa && c.test_accuracy && Number.isFinite(c.test_accuracy[k])) g.append(s("circle", { cx: sx(at), cy: sa(c.test_accuracy[k]), r: 3, fill: "#2ca02c" }));
      const head = s("text", { x: 0, y: -7, class: "cw-legend" });
      head.append(s("tspan", { fill: colour, "font-weight": 600 }, name));
      svg.append(s("g", { transform: `translate(${M.left},${M.top})` }, head));
      const vals = k >= 0 ? `loss ${formatValue(c.loss ? c.loss[k] : null)}, test acc ${formatValue(c.test_accuracy ? c.test_accuracy[k] : null)}` : "";
      const card = h("div", { class: "cw-curve-card" }, svg,
        h("div", { class: "cw-curve-note", "data-testid": "cw-study-curve-values", text: vals ? `epoch ${at}: ${vals}` : "" }));
      curvesEl.append(card);
    }
    curvesEl.append(h("div", { class: "cw-curve-key cw-note" },
      "solid: loss (left axis) · dashed green: test accuracy (right axis) · bands ±1 sd over seeds"));
  }

  mark("root", "header", "error", "list", "plane", "markers", "scrubber", "curves");

  return () => {
    destroy();
    player.stop();
  };
}

/** anywidget entry point. */
export default { render: ({ model, el }) => createView(model, el) };

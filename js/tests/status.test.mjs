// A value's status in the dashboard (issue 10): a plane point whose EI is bounded (its
// interval brackets the truth, the value is only a guess inside it) is drawn open, with
// its interval bars and a note; an estimated point is drawn as before.
import { test } from "node:test";
import assert from "node:assert/strict";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";

import { isBounded, planeDomain, pointTip, statusName, trajectoryPoints, valueText } from "../dashboard.js";
import { boundedText, trajectoryPoints as studyPoints } from "../study.js";
import { renderInChromium, skipRender } from "./harness.mjs";

const here = dirname(fileURLToPath(import.meta.url));
const r2 = Math.SQRT2;

// One layer's plane entry as payloads.plane_payload sends it: x = M/sqrt2,
// y = (2S - M)/sqrt2, the box from the interval ends, one status letter per epoch.
function layerEntry(ei, eiLo, eiHi, S, eiStatus) {
  const xy = {
    x: ei.map((m) => m / r2), y: ei.map((m, k) => (2 * S[k] - m) / r2),
    x0: eiLo.map((m) => m / r2), x1: eiHi.map((m) => m / r2),
    y0: eiHi.map((m, k) => (2 * S[k] - m) / r2), y1: eiLo.map((m, k) => (2 * S[k] - m) / r2),
    // sensitivity is exact here, so the point's status is EI's
    status: eiStatus,
  };
  const D = ei.map((m, k) => S[k] - m);
  return {
    epoch: [0, 10], ei, ei_lo: eiLo, ei_hi: eiHi,
    ei_parts: ei, ei_parts_lo: ei, ei_parts_hi: ei,
    sensitivity: S, sensitivity_lo: S, sensitivity_hi: S,
    degeneracy: D, degeneracy_lo: eiHi.map((m, k) => S[k] - m), degeneracy_hi: eiLo.map((m, k) => S[k] - m),
    status: { ei: eiStatus, ei_parts: "xx", sensitivity: "xx", degeneracy: eiStatus },
    xy: { ei: xy, ei_parts: { ...xy, status: "xx" } },
  };
}

// wide: EI bounded in [1, 9] at epoch 10 (estimated at epoch 0); narrow: estimated throughout
const PLANE = {
  wide: layerEntry([2, 3], [1.8, 1], [2.2, 9], [20, 20], "eb"),
  narrow: layerEntry([1, 1.5], [0.9, 1.4], [1.1, 1.6], [4, 4], "ee"),
};

test("status letters, value texts and the points' statuses", () => {
  assert.equal(statusName("b"), "bounds");
  assert.equal(statusName("e"), "estimate");
  assert.equal(statusName("x"), "exact");
  assert.equal(statusName("-"), null);
  assert.equal(valueText("EI", 3, 1, 9, "bounds"), "EI in [1.00, 9.00 bits] (bounds)");
  assert.equal(valueText("EI", 3, 2.5, 3.5, "estimate"), "EI 3.00 bits (95 % CI 2.50 – 3.50)");
  assert.equal(valueText("EI", 3, 3, 3, "exact"), "EI 3.00 bits (exact)");
  const pts = trajectoryPoints(PLANE.wide, "ei");
  assert.deepEqual(pts.map((p) => p.status), ["estimate", "bounds"]);
  assert.deepEqual(pts.map(isBounded), [false, true]);
  // degeneracy D = S - EI is bounded by [S - 9, S - 1] = [11, 19]
  const tip = pointTip("wide", pts[1], "ei");
  assert.match(tip, /EI in \[1\.00, 9\.00 bits\] \(bounds\)/);
  assert.match(tip, /degeneracy in \[11\.0, 19\.0 bits\] \(bounds\)/);
  assert.match(tip, /sensitivity 20\.0 bits \(exact\)/);
  // with EI_parts (exact) in its place nothing is bounded
  assert.ok(!trajectoryPoints(PLANE.wide, "ei_parts").some(isBounded));
  // an old payload without statuses still gives points (status unknown, drawn filled)
  const old = { ...PLANE.narrow, status: undefined, xy: { ei: { ...PLANE.narrow.xy.ei, status: undefined } } };
  const oldPts = trajectoryPoints(old, "ei");
  assert.equal(oldPts.length, 2);
  assert.ok(!oldPts.some(isBounded));
  assert.equal(valueText("EI", 1, 0.9, 1.1, oldPts[0].mStatus), "EI 1.00 bits");
});

test("the plane's extent takes in a bounded point's bracket, with or without CI", () => {
  const pts = trajectoryPoints(PLANE.wide, "ei");
  // epoch 10: EI in [1, 9] -> x in [1, 9]/sqrt2; S = 20 -> y in [(40 - 9), (40 - 1)]/sqrt2
  const d = planeDomain([pts], false, 0);
  assert.ok(Math.abs(d.x[1] - 9 / r2) < 1e-12, `${d.x}`);
  assert.ok(Math.abs(d.y[1] - 39 / r2) < 1e-12, `${d.y}`);
  // without the bounded point only the estimate's own position counts
  const est = planeDomain([pts.slice(0, 1)], false, 0);
  assert.ok(Math.abs(est.x[1] - 2 / r2) < 1e-12, `${est.x}`);
});

const setup = (epoch, plane = PLANE) => `
const plane = ${JSON.stringify(plane)};
const state = {
  title: "status", epoch: ${epoch}, epochs: [0, 10], selected_layer: "wide",
  layers: [{ name: "wide", n_in: 32, n_out: 32, kind: "linear" }, { name: "narrow", n_in: 4, n_out: 2, kind: "linear" }],
  plane, plane_metric: "ei", show_ci: false, heatmap_kind: "ei_parts", pinned_edge: [],
  scalars: {}, status: { state: "idle" }, errors: [], heatmap: {}, edge_history: {},
};
function python(k) {}
`;

const SCRIPT = `
  const marker = (name) => $('[data-testid="cw-plane-marker"][data-layer="' + name + '"]');
  const look = (name) => {
    const m = marker(name);
    return { status: m.getAttribute("data-status"), fill: getComputedStyle(m).fill,
      stroke: getComputedStyle(m).stroke, open: m.classList.contains("cw-open"),
      tip: m.textContent };
  };
  const barsOf = (name) => $$('.cw-marker-group[data-layer="' + name + '"] [data-testid="cw-bounds-bar"] line');
  out.wide = look("wide");
  out.narrow = look("narrow");
  out.wideBars = barsOf("wide").map((l) => [l.getAttribute("x1"), l.getAttribute("x2"), l.getAttribute("y1"), l.getAttribute("y2")].map(Number));
  out.wideCircle = [marker("wide").getAttribute("cx"), marker("wide").getAttribute("cy")].map(Number);
  out.narrowBars = barsOf("narrow").length;
  out.narrowCI = $$('.cw-marker-group[data-layer="narrow"] .cw-ci line').length;
  out.openDots = $$('[data-testid="cw-trajectory"][data-layer="wide"] .cw-dot.cw-open').length;
  out.filledDots = $$('[data-testid="cw-trajectory"][data-layer="wide"] .cw-dot:not(.cw-open)').length;
  out.note = $(".cw-plane-card .cw-note").textContent;
  out.button = $('[data-testid="cw-layer-button"][data-layer="wide"]').textContent;
  // scrubbing back to epoch 0, where the wide layer's EI was estimated: filled again
  await scrubTo("cw-scrubber", 0);
  out.back = look("wide");
  out.backBars = barsOf("wide").length;
`;

test("a bounds point is open with interval bars; an estimate is drawn as before", { skip: skipRender }, () => {
  const r = renderInChromium(join(here, "..", "dashboard.js"), setup(10), SCRIPT);
  const rgbOf = (hex) => `rgb(${[1, 3, 5].map((k) => parseInt(hex.slice(k, k + 2), 16)).join(", ")})`;
  const blue = rgbOf("#1f77b4"); // layerColor(0): the wide layer
  const orange = rgbOf("#ff7f0e"); // layerColor(1)

  // bounded: hollow (white fill, outlined in the layer's colour), tooltip gives the bracket
  assert.equal(r.wide.status, "bounds");
  assert.ok(r.wide.open);
  assert.equal(r.wide.fill, "rgb(255, 255, 255)");
  assert.equal(r.wide.stroke, blue);
  assert.match(r.wide.tip, /EI in \[1\.00, 9\.00 bits\] \(bounds\)/);
  assert.doesNotMatch(r.wide.tip, /EI 3\.00 bits/);
  // its interval bars, drawn without "CI" ticked: horizontal x0..x1 through the point and
  // vertical y0..y1; x spans (9 - 1)/sqrt2 bits, y the same (S is exact)
  assert.equal(r.wideBars.length, 2);
  const [hor, ver] = r.wideBars;
  assert.ok(Math.abs(hor[2] - r.wideCircle[1]) < 0.6 && Math.abs(hor[3] - r.wideCircle[1]) < 0.6);
  assert.ok(Math.abs(ver[0] - r.wideCircle[0]) < 0.6 && Math.abs(ver[1] - r.wideCircle[0]) < 0.6);
  const pxPerBitX = Math.abs(hor[1] - hor[0]) / (8 / r2);
  const pxPerBitY = Math.abs(ver[3] - ver[2]) / (8 / r2);
  assert.ok(pxPerBitX > 1 && Math.abs(pxPerBitX - pxPerBitY) < 0.05 * pxPerBitX, `${pxPerBitX} ${pxPerBitY}`);
  // the trajectory: its epoch-10 dot open, its epoch-0 dot filled
  assert.equal(r.openDots, 1);
  assert.equal(r.filledDots, 1);
  assert.match(r.note, /Open markers: EI bounded, not estimated/);
  assert.match(r.button, /EI in \[1\.00, 9\.00 bits\] \(bounds\)/);

  // estimated: filled in its colour, white outline, no bars without "CI", a value ± CI
  assert.equal(r.narrow.status, "estimate");
  assert.ok(!r.narrow.open);
  assert.equal(r.narrow.fill, orange);
  // (its white outline is the stylesheet's, which this page does not load)
  assert.notEqual(r.narrow.stroke, orange);
  assert.equal(r.narrowBars, 0);
  assert.equal(r.narrowCI, 0);
  assert.match(r.narrow.tip, /EI 1\.50 bits \(95 % CI 1\.40 – 1\.60\)/);

  // at epoch 0 the wide layer's EI was an estimate: filled, no bars
  assert.equal(r.back.status, "estimate");
  assert.ok(!r.back.open);
  assert.equal(r.back.fill, blue);
  assert.equal(r.backBars, 0);
});

test("no note about open markers when nothing is bounded", { skip: skipRender }, () => {
  const estimated = { wide: layerEntry([2, 3], [1.8, 2.9], [2.2, 3.1], [20, 20], "ee"), narrow: PLANE.narrow };
  const r = renderInChromium(join(here, "..", "dashboard.js"), setup(10, estimated),
    `out.note = $(".cw-plane-card .cw-note").textContent; out.open = $$(".cw-open").length;`);
  assert.doesNotMatch(r.note, /Open markers/);
  assert.equal(r.open, 0);
});

// ---------------------------------------------------------------- the study dashboard

// one configuration of 3 seeds: at epoch 10, 2 of its runs' EI is bounded; run "a" is one
const STUDY = {
  title: "study", epochs: [0, 10], epoch: 10, error: "", plane_metric: "ei",
  groups: [{ name: "g", colour: 0, n_runs: 3, n_complete: 3, settings: {} }],
  runs: [{ run_id: "a", group: "g", seed: 0, status: "complete", colour: 0 }],
  layers: ["fc1"], layer_filter: ["fc1"], selected_groups: ["g"], selected_runs: ["a"],
  curves: {},
  plane: {
    metric: "ei",
    groups: { g: { fc1: { epoch: [0, 10], n: [3, 3], n_bounded: [0, 2], x: [1, 2], y: [3, 4], x_sd: [0.1, 0.2], y_sd: [0.1, 0.2] } } },
    runs: { a: { group: "g", seed: 0, colour: 0, layers: { fc1: { epoch: [0, 10], n_bounded: [0, 1], x: [1.1, 2.1], y: [3.1, 4.1] } } } },
  },
};

test("study points count their bounded runs and say so", () => {
  const pts = studyPoints(STUDY.plane.groups.g.fc1);
  assert.deepEqual(pts.map((p) => p.nBounded), [0, 2]);
  assert.equal(boundedText(pts[0], "EI"), "");
  assert.equal(boundedText(pts[1], "EI"), "EI bounded in 2 of 3 runs: a mean of best guesses inside their brackets");
  const run = studyPoints(STUDY.plane.runs.a.layers.fc1);
  assert.equal(boundedText(run[1], "EI", true), "EI bounded, not estimated (bounds)");
});

const studySetup = (epoch) => `
const state = ${JSON.stringify(STUDY)};
state.epoch = ${epoch};
function python(k) {}
`;

const STUDY_SCRIPT = `
  const mean = $('[data-testid="cw-study-marker"]');
  const run = $('[data-testid="cw-study-run-marker"]');
  out.mean = { fill: mean.getAttribute("fill"), stroke: mean.style.stroke, open: mean.classList.contains("cw-open"), tip: mean.textContent };
  out.run = { fill: run.getAttribute("fill"), stroke: run.style.stroke, open: run.classList.contains("cw-open"), tip: run.textContent };
  out.openDots = $$(".cw-means .cw-dot.cw-open").length;
  out.note = $('[data-testid="cw-study-plane"]').parentElement.textContent;
`;

test("the study draws a bounded mean and run open; an estimated one filled", { skip: skipRender }, () => {
  const blue = "rgb(31, 119, 180)"; // groupColor(0) = #1f77b4
  const r = renderInChromium(join(here, "..", "study.js"), studySetup(10), STUDY_SCRIPT);
  assert.ok(r.mean.open && r.run.open);
  assert.equal(r.mean.fill, "#fff");
  assert.equal(r.mean.stroke, blue);
  assert.match(r.mean.tip, /EI bounded in 2 of 3 runs/);
  assert.equal(r.run.fill, "#fff");
  assert.match(r.run.tip, /EI bounded, not estimated \(bounds\)/);
  assert.equal(r.openDots, 1); // the epoch-10 dot of the mean trajectory
  assert.match(r.note, /Open markers: EI bounded, not estimated, in some runs/);

  const e = renderInChromium(join(here, "..", "study.js"), studySetup(0), STUDY_SCRIPT);
  assert.ok(!e.mean.open && !e.run.open);
  assert.equal(e.mean.fill, "#1f77b4");
  assert.equal(e.mean.stroke, "");
  assert.doesNotMatch(e.mean.tip, /bounded/);
});

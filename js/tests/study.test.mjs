// The study dashboard's front-end (js/study.js): pure logic with node --test, then one
// render in headless chromium with a fake anywidget model (skipped without chromium).
// Expected values are worked out by hand in the comments, not taken from the code.
import { test } from "node:test";
import assert from "node:assert/strict";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";

import { renderInChromium, skipRender } from "./harness.mjs";

import {
  bandPath,
  curveDomains,
  epochIndex,
  equalAspect,
  formatValue,
  groupColor,
  layerDash,
  layerShape,
  linePath,
  nearestEpoch,
  nextEpoch,
  niceTicks,
  ordered,
  pointAt,
  shapePath,
  shownTrajectories,
  studyDomain,
  summaryText,
  toggled,
  trajectoryPoints,
} from "../study.js";

const close = (a, b, tol = 1e-12) => assert.ok(Math.abs(a - b) <= tol, `${a} != ${b}`);

// a study of two configurations x two layers, and one picked run
const STATE = {
  groups: [
    { name: "noise=0", colour: 0, n_runs: 2, n_complete: 2, settings: { noise: 0 } },
    { name: "noise=1", colour: 1, n_runs: 2, n_complete: 2, settings: { noise: 1 } },
  ],
  runs: [
    { run_id: "a", group: "noise=0", seed: 0, status: "complete", colour: 0 },
    { run_id: "b", group: "noise=0", seed: 1, status: "complete", colour: 0 },
    { run_id: "c", group: "noise=1", seed: 0, status: "complete", colour: 1 },
    { run_id: "d", group: "noise=1", seed: 1, status: "missing", colour: 1 },
  ],
  layers: ["fc1", "fc2"],
  layer_filter: ["fc1", "fc2"],
  selected_groups: ["noise=0", "noise=1"],
  selected_runs: ["c"],
  plane: {
    metric: "ei",
    groups: {
      // payload keys in another order than the study's: the study's order wins
      "noise=1": {
        fc2: { epoch: [0, 10], n: [1, 1], x: [1, 2], y: [0, 1], x_sd: [0, 0], y_sd: [0, 0] },
        fc1: { epoch: [0, 10], n: [1, 1], x: [3, 4], y: [-1, -2], x_sd: [0, 0], y_sd: [0, 0] },
      },
      "noise=0": {
        fc1: { epoch: [0, 10, 20], n: [2, 2, 2], x: [1, null, 2], y: [1, 5, 2], x_sd: [0.5, 0.1, 0.25], y_sd: [0.1, 0.1, null] },
      },
    },
    runs: { c: { group: "noise=1", seed: 0, colour: 1, layers: { fc1: { epoch: [0, 10], x: [3, 4], y: [-1, -2] } } } },
  },
};

test("trajectory points skip missing coordinates; a missing sd counts as 0", () => {
  const pts = trajectoryPoints(STATE.plane.groups["noise=0"].fc1);
  assert.deepEqual(pts.map((p) => p.epoch), [0, 20]); // epoch 10 has x = null
  // a payload without n_bounded (older) counts no bounded runs
  assert.deepEqual(pts[1], { epoch: 20, x: 2, y: 2, x_sd: 0.25, y_sd: 0, n: 2, nBounded: 0 });
  assert.deepEqual(trajectoryPoints(undefined), []);
  // run entries carry no sd: 0
  assert.equal(trajectoryPoints({ epoch: [5], x: [1], y: [2] })[0].x_sd, 0);
});

test("the point at the scrubbed epoch is the trajectory's own nearest measurement", () => {
  const pts = trajectoryPoints(STATE.plane.groups["noise=0"].fc1); // epochs 0, 20
  assert.equal(pointAt(pts, 9).epoch, 0);
  assert.equal(pointAt(pts, 10).epoch, 0); // tie: the earlier
  assert.equal(pointAt(pts, 11).epoch, 20);
  assert.equal(pointAt(pts, 500).epoch, 20);
  assert.equal(pointAt([], 3), null);
  assert.equal(nearestEpoch([0, 10, 20], 16), 20);
  assert.equal(epochIndex([0, 10, 20], 16), 2);
  assert.equal(nextEpoch([0, 10, 20], 10), 20);
  assert.equal(nextEpoch([0, 10, 20], 20), null);
});

test("shown trajectories: selected groups in study order, filtered layers in network order", () => {
  const sh = shownTrajectories(STATE);
  assert.deepEqual(sh.groups, ["noise=0", "noise=1"]);
  assert.deepEqual(sh.means.map((t) => t.key), ["noise=0|fc1", "noise=1|fc1", "noise=1|fc2"]);
  assert.deepEqual(sh.means.map((t) => [t.colour, t.layerIndex]), [[0, 0], [1, 0], [1, 1]]);
  assert.deepEqual(sh.runs.map((t) => [t.run, t.layer, t.colour, t.seed]), [["c", "fc1", 1, 0]]);
  // unticking a configuration hides it at once, before Python's new payload arrives
  const one = shownTrajectories({ ...STATE, selected_groups: ["noise=1"], layer_filter: ["fc2"], selected_runs: [] });
  assert.deepEqual(one.groups, ["noise=1"]);
  assert.deepEqual(one.means.map((t) => t.key), ["noise=1|fc2"]);
  assert.deepEqual(one.runs, []);
  // a run filtered to a layer it lacks draws nothing
  assert.deepEqual(shownTrajectories({ ...STATE, layer_filter: ["fc2"] }).runs, []);
  assert.deepEqual(shownTrajectories({}).means, []);
});

test("toggling keeps the canonical order and never duplicates", () => {
  const order = ["a", "b", "c"];
  assert.deepEqual(toggled(["c"], "a", true, order), ["a", "c"]);
  assert.deepEqual(toggled(["a", "c"], "a", true, order), ["a", "c"]);
  assert.deepEqual(toggled(["a", "c"], "a", false, order), ["c"]);
  assert.deepEqual(toggled([], "z", true, order), ["z"]); // unknown names kept at the end
  assert.deepEqual(ordered(order, ["c", "a", "q"]), ["a", "c"]);
});

test("plane domain: points with their sd crosses, the origin, padding", () => {
  const pts = [{ x: 2, y: 1, x_sd: 0.5, y_sd: 1 }, { x: 1, y: -1, x_sd: 0, y_sd: 0 }];
  // x: [min(0, 1, 1.5), max(2.5)] = [0, 2.5]; y: [min(0, -1, 0), max(2)] = [-1, 2]
  assert.deepEqual(studyDomain([pts], true, 0), { x: [0, 2.5], y: [-1, 2] });
  assert.deepEqual(studyDomain([pts], false, 0), { x: [0, 2], y: [-1, 1] });
  const p = studyDomain([pts], true, 0.1);
  close(p.x[1], 2.75);
  close(p.y[0], -1.3);
  assert.deepEqual(studyDomain([], true, 0), { x: [0, 0], y: [0, 0] });
  // equal aspect: the same px per bit on both axes (angles of the rotated S, D axes kept)
  const sc = equalAspect({ x: [0, 4], y: [0, 1] }, 400, 300);
  close(sc.pxPerBit, 100);
  close(sc.x(4) - sc.x(0), 400);
  close(sc.y(0) - sc.y(1), 100);
});

test("styles: a colour per configuration, a dash and a marker shape per layer", () => {
  assert.equal(groupColor(0), "#1f77b4");
  assert.equal(groupColor(1), "#ff7f0e");
  assert.equal(new Set(Array.from({ length: 30 }, (_, k) => groupColor(k))).size, 30);
  assert.equal(layerDash(0), ""); // first layer solid
  assert.notEqual(layerDash(1), layerDash(0));
  assert.deepEqual([0, 1, 2, 3].map(layerShape), ["circle", "square", "triangle", "diamond"]);
  // a square of "radius" 5 has half-side 5 * 0.886 = 4.43 (same area as the circle)
  assert.equal(shapePath("square", 5), "M-4.43,-4.43H4.43V4.43H-4.43Z");
  assert.equal(shapePath("diamond", 4), "M0,-5L5,0L0,5L-5,0Z");
  assert.match(shapePath("circle", 3), /^M-3,0A3,3 /);
});

test("curves: bands, shared y ranges, formatting", () => {
  const id = (v) => v;
  // mean 2 +- 1 at x 0, mean 4 +- 0 at x 1: up 0,3 -> 1,4 then back down 1,4 -> 0,1
  assert.equal(bandPath([0, 1], [2, 4], [1, null], id, id), "M0.0,3.0L1.0,4.0L1.0,4.0L0.0,1.0Z");
  assert.equal(bandPath([0], [null], [1], id, id), "");
  const curves = {
    g1: { epoch: [0, 5], loss: [1, 0.5], loss_sd: [0.2, 0], test_accuracy: [0.3, 0.6], test_accuracy_sd: [0, 0.1] },
    g2: { epoch: [0, 10], loss: [2, 1], loss_sd: [0, 0], test_accuracy: [0.5, 0.9] },
  };
  const d = curveDomains(curves, ["g1", "g2"]);
  assert.deepEqual(d.epoch, [0, 10]);
  assert.deepEqual(d.loss, [0, 2]); // from 0 up to the largest mean + sd (2)
  assert.deepEqual(d.accuracy, [0, 1]);
  assert.deepEqual(curveDomains(curves, ["g1"]).loss, [0, 1.2]);
  assert.deepEqual(curveDomains({}, []), { epoch: null, loss: null, accuracy: null });
  assert.equal(formatValue(0.123456), "0.123");
  assert.equal(formatValue(null), "–");
  assert.equal(linePath([0, 1, 2], [1, null, 3], id, id), "M0.0,1.0M2.0,3.0");
  assert.deepEqual(niceTicks(0, 1, 5), [0, 0.2, 0.4, 0.6, 0.8, 1]);
  assert.equal(summaryText(STATE.groups, STATE.runs, STATE.layers, [0, 10, 20]),
    "2 configurations · 3 of 4 runs finished · 2 layers · epochs 0–20");
});

// ---------------------------------------------------------------- render (chromium)
const here = dirname(fileURLToPath(import.meta.url));

// The page: the model's state, answered like study_widgets.py does for selected_groups /
// selected_runs (recomputes plane); harness.mjs provides the fake model itself.
const setup = (full, first) => `
const full = ${JSON.stringify(full)};
const state = ${JSON.stringify(first)};
state.title = "test study"; state.epochs = [0, 10, 20]; state.epoch = 20; state.error = "";
state.plane_metric = "ei";
state.curves = { "noise=0": { epoch: [0, 10, 20], n: [2, 2, 2], loss: [1, .8, .6], loss_sd: [.1, .1, .1],
                              test_accuracy: [.3, .5, .7], test_accuracy_sd: [0, .05, .1] },
                 "noise=1": { epoch: [0, 10, 20], n: [1, 1, 1], loss: [1, .9, .85], loss_sd: [0, 0, 0],
                              test_accuracy: [.3, .35, .4], test_accuracy_sd: [0, 0, 0] } };
function python(k) {
  if (k === "selected_groups" || k === "selected_runs") {
    const groups = {}; for (const g of state.selected_groups) groups[g] = full.plane.groups[g];
    const runs = {}; for (const r of state.selected_runs) if (full.plane.runs[r]) runs[r] = full.plane.runs[r];
    state.plane = { metric: "ei", groups, runs }; fire("plane");
  }
}
const snap = () => ({
  epoch: $(".cw-study").getAttribute("data-epoch"),
  groups: JSON.parse($(".cw-study").getAttribute("data-groups")),
  trajectories: $$('[data-testid="cw-study-trajectory"]').map((t) => t.getAttribute("data-group") + "|" + t.getAttribute("data-layer")),
  runLines: $$('[data-testid="cw-study-run-trajectory"]').length,
  markers: $$('[data-testid="cw-study-marker"]').map((m) => ({
    key: m.getAttribute("data-group") + "|" + m.getAttribute("data-layer"), epoch: m.getAttribute("data-epoch"),
    x: Number(m.getAttribute("data-x")), y: Number(m.getAttribute("data-y")),
    cx: Number(m.getAttribute("data-cx")), cy: Number(m.getAttribute("data-cy")) })),
  sds: $$('[data-testid="cw-study-sd"]').length,
  curves: $$('[data-testid="cw-study-curve"]').map((c) => c.getAttribute("data-group")),
  curveMarker: $$('[data-testid="cw-study-curve-marker"]').map((c) => c.getAttribute("data-epoch")),
  scale: JSON.parse($('[data-testid="cw-study-plane"]').getAttribute("data-scale")),
});
`;

// What the page does once the study dashboard has drawn.
const SCRIPT = `
  out.before = snap();
  out.summary = $('[data-testid="cw-study-summary"]').textContent;
  out.errorShown = $('[data-testid="cw-study-error"]').style.display;
  out.groupBoxes = $$('[data-testid="cw-study-group-toggle"]').map((b) => b.checked);
  out.runBoxes = $$('[data-testid="cw-study-run-toggle"]').map((b) => [b.getAttribute("data-run"), b.checked, b.disabled]);
  out.legend = $$('[data-testid="cw-study-legend-layer"]').map((e) => e.getAttribute("data-layer"));

  await scrubTo("cw-study-scrubber", 0);
  out.afterScrub = snap();

  await clickOn('[data-testid="cw-study-group-toggle"][data-group="noise=0"]');
  out.afterUntick = snap();
  out.selected = state.selected_groups;

  await clickOn('[data-testid="cw-study-run-toggle"][data-run="a"]');
  out.runsAfterTick = state.selected_runs;
  out.afterRun = snap();

  await clickOn('[data-testid="cw-study-layer-toggle"][data-layer="fc2"]');
  out.layerFilter = state.layer_filter;
  out.afterLayer = snap();

  state.error = "2 of 4 runs have no results yet"; fire("error");
  await wait(150);
  out.errorBox = [$('[data-testid="cw-study-error"]').textContent, $('[data-testid="cw-study-error"]').style.display];

  $('[data-testid="cw-study-play"]').click();
  await wait(1800);
  out.played = state.epoch;
`;

test("renders, scrubs, unticks a configuration and picks a run", { skip: skipRender }, () => {
  // the fake Python keeps every run's points to answer selected_runs; at first none is picked
  const full = JSON.parse(JSON.stringify(STATE));
  full.plane.runs.a = { group: "noise=0", seed: 0, colour: 0, layers: { fc1: { epoch: [0, 20], x: [1.2, 2.2], y: [1, 2] } } };
  const first = { ...full, selected_runs: [], plane: { ...full.plane, runs: {} } };
  const r = renderInChromium(join(here, "..", "study.js"), setup(full, first), SCRIPT);

  const b = r.before;
  assert.equal(b.epoch, "20");
  assert.deepEqual(b.groups, ["noise=0", "noise=1"]);
  assert.deepEqual(b.trajectories, ["noise=0|fc1", "noise=1|fc1", "noise=1|fc2"]);
  assert.equal(b.sds, 3);
  assert.equal(b.runLines, 0);
  assert.deepEqual(b.curves, ["noise=0", "noise=1"]);
  assert.deepEqual(b.curveMarker, ["20", "20"]);
  assert.equal(r.summary, "2 configurations · 3 of 4 runs finished · 2 layers · epochs 0–20");
  assert.equal(r.errorShown, "none");
  assert.deepEqual(r.groupBoxes, [true, true]);
  assert.deepEqual(r.runBoxes, [["a", false, false], ["b", false, false], ["c", false, false], ["d", false, true]]);
  assert.deepEqual(r.legend, ["fc1", "fc2"]);
  // markers at each trajectory's nearest epoch to 20: noise=0|fc1 at 20 (x 2, y 2);
  // noise=1 layers end at 10
  const mk = Object.fromEntries(b.markers.map((x) => [x.key, x]));
  assert.deepEqual([mk["noise=0|fc1"].epoch, mk["noise=0|fc1"].x, mk["noise=0|fc1"].y], ["20", 2, 2]);
  assert.deepEqual([mk["noise=1|fc2"].epoch, mk["noise=1|fc2"].x, mk["noise=1|fc2"].y], ["10", 2, 1]);
  // drawn positions are the payload numbers through the plane's scale (0.05 px rounding)
  const { x: dx, y: dy, width, height } = b.scale;
  for (const p of b.markers) {
    close(p.cx, ((p.x - dx[0]) / (dx[1] - dx[0])) * width, 0.051);
    close(p.cy, height - ((p.y - dy[0]) / (dy[1] - dy[0])) * height, 0.051);
  }
  // equal aspect: same px per bit along x and y
  close(width / (dx[1] - dx[0]), height / (dy[1] - dy[0]), 1e-9);

  // scrub to index 0 = epoch 0: every marker moves to its epoch-0 point
  const a = r.afterScrub;
  assert.equal(a.epoch, "0");
  assert.ok(a.markers.every((x) => x.epoch === "0"));
  const ma = Object.fromEntries(a.markers.map((x) => [x.key, x]));
  assert.deepEqual([ma["noise=0|fc1"].x, ma["noise=0|fc1"].y], [1, 1]);
  assert.notEqual(ma["noise=0|fc1"].cx, mk["noise=0|fc1"].cx);
  assert.deepEqual(a.curveMarker, ["0", "0"]);

  // untick noise=0: its trajectory, marker, sd cross and chart go
  const u = r.afterUntick;
  assert.deepEqual(r.selected, ["noise=1"]);
  assert.deepEqual(u.groups, ["noise=1"]);
  assert.deepEqual(u.trajectories, ["noise=1|fc1", "noise=1|fc2"]);
  assert.equal(u.markers.length, 2);
  assert.equal(u.sds, 2);
  assert.deepEqual(u.curves, ["noise=1"]);

  // tick run a (its group hidden): drawn as a thin line
  assert.deepEqual(r.runsAfterTick, ["a"]);
  assert.equal(r.afterRun.runLines, 1);

  // untick layer fc2
  assert.deepEqual(r.layerFilter, ["fc1"]);
  assert.deepEqual(r.afterLayer.trajectories, ["noise=1|fc1"]);

  assert.deepEqual(r.errorBox, ["2 of 4 runs have no results yet", ""]);
  // play from epoch 0 walks 10, 20 and stops at the end
  assert.equal(r.played, 20);
});

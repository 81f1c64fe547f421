// The dashboard rendered in headless chromium with a fake anywidget model: the DOM hooks
// the browser test relies on exist, and scrubbing / clicking changes what is drawn.
// Skipped when /usr/bin/chromium (or $CHROMIUM) is missing.
import { test } from "node:test";
import assert from "node:assert/strict";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";

import { renderInChromium, skipRender } from "./harness.mjs";

const here = dirname(fileURLToPath(import.meta.url));

// The page: the model's state, answered like widgets/dashboard.py does for epoch /
// selected_layer / pinned_edge (harness.mjs provides the fake model itself).
const SETUP = `
const layers = [
  { name: "fc1", n_in: 4, n_out: 5, kind: "linear" },
  { name: "fc2", n_in: 5, n_out: 3, kind: "linear" },
];
const epochs = [0, 10, 20, 30];
// E[i][j] = (i + 1)(j + 1)(e + 1)/1000 ; S = 2E ; distinct per layer, epoch and edge
const matrix = (L, e, f) => Array.from({ length: L.n_in }, (_, i) =>
  Array.from({ length: L.n_out }, (_, j) => f * (i + 1) * (j + 1) * (e + 1) / 1000));
const heatmapFor = (name, epoch) => {
  const L = layers.find((l) => l.name === name);
  const E = matrix(L, epoch, 1), S = matrix(L, epoch, 2);
  const D = S.map((r, i) => r.map((v, j) => v - E[i][j]));
  const rowSum = (M) => M.map((r) => r.reduce((a, b) => a + b, 0));
  const colSum = (M) => M[0].map((_, j) => M.reduce((a, r) => a + r[j], 0));
  return { layer: name, epoch, requested_epoch: epoch, available: true, message: "",
    n_in: L.n_in, n_out: L.n_out, row_step: 1, col_step: 1,
    row_start: [...Array(L.n_in).keys()], col_start: [...Array(L.n_out).keys()],
    ei_parts: E, sensitivity: S, difference: D,
    nodes: { input: { ei: rowSum(E), ei_parts: rowSum(E), sensitivity: rowSum(S) },
             output: { ei: colSum(E), ei_parts: colSum(E), sensitivity: colSum(S) } } };
};
const plane = {};
// the plane coordinates as payloads.plane_payload sends them (engine/plane.py's plane_xy
// and plane_box): x = M/sqrt2, y = (2S - M)/sqrt2, the box from the CI ends
const r2 = Math.SQRT2;
const xyOf = (M, Mlo, Mhi, S, Slo, Shi) => ({
  x: M.map((m) => m / r2), y: M.map((m, k) => (2 * S[k] - m) / r2),
  x0: Mlo.map((m) => m / r2), x1: Mhi.map((m) => m / r2),
  y0: Mhi.map((m, k) => (2 * Slo[k] - m) / r2), y1: Mlo.map((m, k) => (2 * Shi[k] - m) / r2),
});
layers.forEach((L, k) => {
  const ei = epochs.map((e) => 0.5 + k + e / 10);
  const S = epochs.map((e) => 1 + 0.5 * k + e / 5);
  const lo = (a) => a.map((v) => v - 0.2), hi = (a) => a.map((v) => v + 0.2);
  const eiParts = ei.map((v) => v * 0.8);
  plane[L.name] = { epoch: epochs, ei, ei_lo: lo(ei), ei_hi: hi(ei),
    ei_parts: eiParts, ei_parts_lo: lo(ei), ei_parts_hi: hi(ei),
    sensitivity: S, sensitivity_lo: lo(S), sensitivity_hi: hi(S),
    xy: { ei: xyOf(ei, lo(ei), hi(ei), S, lo(S), hi(S)),
          ei_parts: xyOf(eiParts, lo(ei), hi(ei), S, lo(S), hi(S)) } };
});
const state = {
  title: "test run", epoch: 30, epochs, selected_layer: "fc1", layers, plane,
  plane_metric: "ei", show_ci: false, heatmap_kind: "ei_parts", pinned_edge: [],
  scalars: { epoch: [0, 5, 10, 15, 20, 25, 30], loss: [1, .8, .6, .5, .4, .35, .3],
             accuracy: [.3, .4, .5, .6, .7, .8, .9] },
  status: { state: "measuring", running_epoch: 40, queued: 1, measured_epochs: 4,
            dropped: 2, errors: 1, notice: "dropped 2 stale snapshots" },
  errors: [{ epoch: 20, layer: "fc2", message: "ValueError: NaN weights" }],
  heatmap: heatmapFor("fc1", 30), edge_history: {},
};
function python(k) {  // what widgets/dashboard.py's observers do
  if (k === "epoch" || k === "selected_layer") {
    state.heatmap = heatmapFor(state.selected_layer, state.epoch); fire("heatmap");
  }
  if (k === "pinned_edge" && state.pinned_edge.length === 2) {
    const [i, j] = state.pinned_edge;
    state.edge_history = { layer: state.selected_layer, i, j, epoch: epochs,
      ei_parts: epochs.map((e) => heatmapFor(state.selected_layer, e).ei_parts[i][j]),
      sensitivity: epochs.map((e) => heatmapFor(state.selected_layer, e).sensitivity[i][j]),
      message: "" };
    fire("edge_history");
  }
}
const snap = () => ({
  epoch: $(".cw-dashboard").getAttribute("data-epoch"),
  layer: $(".cw-dashboard").getAttribute("data-layer"),
  markers: $$('[data-testid="cw-plane-marker"]').map((m) => [m.getAttribute("data-layer"), m.getAttribute("cx"), m.getAttribute("cy")]),
  cells: $$('[data-testid="cw-heatmap-cell"]').map((c) => c.getAttribute("data-value")),
  scrub: $('[data-testid="cw-scrubber"]').value,
});
`;

// What the page does once the dashboard has drawn.
const SCRIPT = `
  out.hooks = Object.fromEntries(["cw-plane", "cw-plane-marker", "cw-trajectory", "cw-scrubber",
    "cw-play", "cw-layer-button", "cw-heatmap", "cw-heatmap-cell", "cw-loss", "cw-status",
    "cw-errors", "cw-metric-toggle"].map((t) => [t, $$('[data-testid="' + t + '"]').length]));
  out.rootClass = $(".cw-dashboard") !== null;
  out.scrubType = $('[data-testid="cw-scrubber"]').type;
  out.scrubMax = $('[data-testid="cw-scrubber"]').max;
  out.status = $('[data-testid="cw-status"]').textContent;
  out.errors = $('[data-testid="cw-errors"]').textContent;
  out.cell00 = [...$$('[data-testid="cw-heatmap-cell"]')].filter((c) => c.getAttribute("data-i") === "3" && c.getAttribute("data-j") === "4").map((c) => c.getAttribute("data-value"));
  out.before = snap();

  await scrubTo("cw-scrubber", 1);
  out.afterScrub = snap();

  await clickOn('[data-testid="cw-layer-button"][data-layer="fc2"]');
  out.afterLayer = snap();

  $('[data-testid="cw-heatmap-cell"][data-i="2"][data-j="1"]').dispatchEvent(new MouseEvent("click", { bubbles: true }));
  await wait(200);
  out.pinned = state.pinned_edge;
  out.edgePaths = $$('[data-testid="cw-edge-history"] path').length;
  out.pinOutline = $$(".cw-pin-outline").length;

  const cell = $('[data-testid="cw-heatmap-cell"][data-i="0"][data-j="0"]');
  cell.dispatchEvent(new MouseEvent("mousemove", { bubbles: true, clientX: 10, clientY: 10 }));
  out.tooltip = $('[data-testid="cw-tooltip"]').textContent;

  await clickOn('[data-testid="cw-metric-toggle"]');
  out.metric = state.plane_metric;
  out.afterToggle = snap();

  await clickOn('[data-testid="cw-ci-toggle"]');
  out.ciBars = $$(".cw-marker-ci line").length;

  $$('[data-testid="cw-trajectory"]').find((t) => t.getAttribute("data-layer") === "fc1").dispatchEvent(new MouseEvent("click", { bubbles: true }));
  await wait(200);
  out.afterTrajClick = state.selected_layer;

  $('[data-testid="cw-play"]').click();
  await wait(2000);
  out.played = sets.filter(([k]) => k === "epoch").map(([, v]) => v);

  // a measurement lands: the scrubber grows live
  state.epochs = [...epochs, 40]; fire("epochs");
  await wait(200);
  out.scrubMaxAfter = $('[data-testid="cw-scrubber"]').max;
`;

test("renders every hook and reacts to scrubbing and clicks", { skip: skipRender }, () => {
  const r = renderInChromium(join(here, "..", "dashboard.js"), SETUP, SCRIPT);

  // hooks
  assert.ok(r.rootClass);
  assert.deepEqual(r.hooks, {
    "cw-plane": 1, "cw-plane-marker": 2, "cw-trajectory": 2, "cw-scrubber": 1, "cw-play": 1,
    "cw-layer-button": 2, "cw-heatmap": 1, "cw-heatmap-cell": 20, "cw-loss": 1,
    "cw-status": 1, "cw-errors": 1, "cw-metric-toggle": 1,
  });
  assert.equal(r.scrubType, "range");
  assert.equal(r.scrubMax, "3");
  assert.match(r.status, /measuring epoch 40 · 1 queued · 4 epochs measured · 2 dropped · 1 error/);
  assert.match(r.errors, /epoch 20 · fc2: ValueError: NaN weights/);
  // cell (3, 4) of fc1 at epoch 30: (3+1)(4+1)(30+1)/1000 = 0.62
  assert.equal(Number(r.cell00[0]), 0.62);
  assert.equal(r.before.epoch, "30");
  assert.equal(r.before.layer, "fc1");
  assert.equal(r.before.scrub, "3");

  // scrubbing to index 1 = epoch 10 moves every marker and redraws the heatmap
  assert.equal(r.afterScrub.epoch, "10");
  for (let k = 0; k < 2; k++) assert.notDeepEqual(r.afterScrub.markers[k], r.before.markers[k]);
  assert.notDeepEqual(r.afterScrub.cells, r.before.cells);
  // E[0][0] at epoch 10 = 11/1000
  assert.equal(Number(r.afterScrub.cells[0]), 0.011);

  // clicking a layer selects it: 5 x 3 cells
  assert.equal(r.afterLayer.layer, "fc2");
  assert.equal(r.afterLayer.cells.length, 15);

  // clicking a cell pins it; its history is drawn
  assert.deepEqual(r.pinned, [2, 1]);
  assert.ok(r.edgePaths >= 2);
  assert.equal(r.pinOutline, 1);
  assert.match(r.tooltip, /edge 0 → 0/);
  assert.match(r.tooltip, /sensitivity term S: 0\.022 bits/); // 2 * 11/1000

  // metric toggle: EI -> EI_parts moves the markers horizontally
  assert.equal(r.metric, "ei_parts");
  assert.notEqual(r.afterToggle.markers[0][1], r.afterScrub.markers[0][1]);
  assert.equal(r.ciBars, 4); // two bars per marker

  assert.equal(r.afterTrajClick, "fc1");
  // play from epoch 10 walks 20, 30 and stops at the end
  assert.deepEqual(r.played.slice(-2), [20, 30]);
  assert.equal(r.scrubMaxAfter, "4");
});

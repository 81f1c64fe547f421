// Pure logic of the dashboard front-end: node --test js/tests/
// Expected values are worked out by hand in the comments, not taken from the code.
import { test } from "node:test";
import assert from "node:assert/strict";

import {
  darkCell,
  epochIndex,
  equalAspect,
  formatBits,
  formatValue,
  heatColor,
  heatmapScaleMax,
  layerColor,
  linePath,
  linearScale,
  markerPoint,
  nearestEpoch,
  nextEpoch,
  niceTicks,
  nodeBars,
  planeDomain,
  seriesExtent,
  statusText,
  timeChunks,
  trajectoryPoints,
} from "../dashboard.js";

const close = (a, b, tol = 1e-12) => assert.ok(Math.abs(a - b) <= tol, `${a} != ${b}`);

// The plane transform itself (x = M/sqrt2, y = (2S - M)/sqrt2 and the CI box) is Python's,
// tested in tests/engine/test_plane.py: the front-end draws the coordinates it is sent.

test("linear scale maps and inverts", () => {
  const f = linearScale(0, 10, 100, 300);
  assert.equal(f(0), 100);
  assert.equal(f(10), 300);
  assert.equal(f(2.5), 150);
  assert.equal(f.invert(150), 2.5);
  const g = linearScale(-1, 1, 200, 0); // inverted pixel axis
  assert.equal(g(1), 0);
  assert.equal(g.invert(100), 0);
});

test("nice ticks are round and inside the range", () => {
  assert.deepEqual(niceTicks(0, 1, 5), [0, 0.2, 0.4, 0.6, 0.8, 1]);
  assert.deepEqual(niceTicks(0, 4000, 4), [0, 1000, 2000, 3000, 4000]);
  assert.deepEqual(niceTicks(-0.3, 0.3, 3), [-0.2, 0, 0.2]);
  assert.deepEqual(niceTicks(3, 3), [3]);
  assert.deepEqual(niceTicks(2, 0, 2), [0, 1, 2]);
  assert.deepEqual(niceTicks(NaN, 1), []);
  for (const t of niceTicks(0.013, 0.087, 5)) assert.ok(t >= 0.013 && t <= 0.087);
});

test("layer colours are stable and distinct", () => {
  assert.equal(layerColor(0), "#1f77b4");
  assert.equal(layerColor(1), "#ff7f0e");
  const cols = new Set(Array.from({ length: 40 }, (_, k) => layerColor(k)));
  assert.equal(cols.size, 40);
  assert.equal(layerColor(17), layerColor(17));
});

test("nearest epoch: binary search, ties to the earlier", () => {
  const eps = [0, 10, 20, 50];
  assert.equal(nearestEpoch(eps, 10), 10);
  assert.equal(nearestEpoch(eps, 14), 10);
  assert.equal(nearestEpoch(eps, 15), 10); // tie
  assert.equal(nearestEpoch(eps, 16), 20);
  assert.equal(nearestEpoch(eps, -3), 0);
  assert.equal(nearestEpoch(eps, 99), 50);
  assert.equal(nearestEpoch(eps, NaN), 50);
  assert.equal(nearestEpoch([], 3), null);
  assert.equal(epochIndex(eps, 36), 3);
  assert.equal(epochIndex([], 36), -1);
});

test("playback steps through measured epochs and stops at the end", () => {
  const eps = [0, 10, 20];
  assert.equal(nextEpoch(eps, 0), 10);
  assert.equal(nextEpoch(eps, 12), 20); // from the nearest measured one
  assert.equal(nextEpoch(eps, 20), null);
  assert.equal(nextEpoch([], 0), null);
});

test("heat colours: sequential for E and S, diverging for the difference", () => {
  assert.equal(heatColor(0, 2), "rgb(247, 251, 255)"); // palest blue at 0
  assert.equal(heatColor(2, 2), "rgb(8, 48, 107)"); // darkest blue at vmax
  assert.equal(heatColor(5, 2), "rgb(8, 48, 107)"); // beyond the scale: end colour
  assert.equal(heatColor(-0.1, 2), "rgb(247, 251, 255)"); // small negative estimate
  assert.equal(heatColor(0, 1, "difference"), "rgb(247, 247, 247)"); // white at 0
  assert.equal(heatColor(-1, 1, "difference"), "rgb(178, 24, 43)"); // red: E > S
  assert.equal(heatColor(1, 1, "difference"), "rgb(33, 102, 172)"); // blue: S > E
  assert.equal(heatColor(null, 1), "#e6e6e6");
  // halfway along 9 stops is exactly stop 4: rgb(107, 174, 214)
  assert.equal(heatColor(1, 2), "rgb(107, 174, 214)");
  assert.equal(darkCell(2, 2), true);
  assert.equal(darkCell(0.1, 2), false);
  assert.equal(darkCell(-0.9, 1, "difference"), true);
});

test("E and S share one colour scale; the difference has its own", () => {
  const hm = {
    ei_parts: [[0.1, 0.2], [0.3, null]],
    sensitivity: [[0.5, 0.05], [0, 0]],
    difference: [[0.4, -0.15], [-0.3, null]],
  };
  assert.equal(heatmapScaleMax(hm, "ei_parts"), 0.5);
  assert.equal(heatmapScaleMax(hm, "sensitivity"), 0.5);
  assert.equal(heatmapScaleMax(hm, "difference"), 0.4);
  assert.equal(heatmapScaleMax({}, "ei_parts"), 0);
});

test("node bars pick the margin values of the shown kind", () => {
  const hm = { nodes: { input: { ei: [1, 2], ei_parts: [0.5, 0.25], sensitivity: [1, 0.25] } } };
  assert.deepEqual(nodeBars(hm, "input", "ei_parts"), [0.5, 0.25]);
  assert.deepEqual(nodeBars(hm, "input", "difference"), [0.5, 0]);
  assert.equal(nodeBars(hm, "output", "ei_parts"), null);
});

test("formatting in bits", () => {
  assert.equal(formatBits(1.23456), "1.23 bits");
  assert.equal(formatBits(0.04567, false), "0.046");
  assert.equal(formatBits(12.345, false), "12.3");
  assert.equal(formatBits(0, false), "0");
  assert.equal(formatBits(-0.5, false), "-0.50");
  assert.equal(formatBits(0.0000123, false), "1.23e-5");
  assert.equal(formatBits(null), "–");
  assert.equal(formatValue(0.123456), "0.1235");
  assert.equal(formatValue(123456), "1.23e+5");
  assert.equal(formatValue(undefined), "–");
});

test("trajectory points skip missing measurements and carry their epoch", () => {
  // what Python's plane payload sends: the measured values and, under xy, the plane
  // coordinates it computed (null where S or the metric is missing)
  const layer = {
    epoch: [0, 10, 20],
    sensitivity: [1, null, 3],
    sensitivity_lo: [0.9, null, 2.9],
    sensitivity_hi: [1.1, null, 3.1],
    ei: [0.5, 1, 2],
    ei_lo: [0.4, 0.9, 1.9],
    ei_hi: [0.6, 1.1, 2.1],
    xy: {
      ei: { x: [0.35, null, 1.41], y: [1.06, null, 2.83], x0: [0.28, null, 1.34],
            x1: [0.42, null, 1.48], y0: [0.85, null, 2.62], y1: [1.27, null, 3.04] },
      ei_parts: { x: [null, null, null], y: [null, null, null], x0: [null, null, null],
                  x1: [null, null, null], y0: [null, null, null], y1: [null, null, null] },
    },
  };
  const pts = trajectoryPoints(layer, "ei");
  assert.deepEqual(pts.map((p) => p.epoch), [0, 20]);
  // the coordinates are drawn as sent, not recomputed from S and EI
  assert.equal(pts[1].x, 1.41);
  assert.equal(pts[1].y, 2.83);
  assert.deepEqual(pts[1].ci, { x0: 1.34, x1: 1.48, y0: 2.62, y1: 3.04 });
  close(pts[1].d, 1); // D = S - EI, for the read-outs
  assert.equal(pts[1].s, 3);
  assert.equal(pts[1].m, 2);
  assert.deepEqual(trajectoryPoints(layer, "ei_parts"), []); // not measured
  assert.deepEqual(trajectoryPoints({ epoch: [0], ei: [1], sensitivity: [1] }, "ei"), []);
  // an incomplete box is no box
  const noBox = { epoch: [0], ei: [1], sensitivity: [1], xy: { ei: { x: [1], y: [2] } } };
  assert.equal(trajectoryPoints(noBox, "ei")[0].ci, null);
  assert.deepEqual(trajectoryPoints(undefined, "ei"), []);
  // the marker sits at the layer's own measured epoch nearest to the scrubbed one
  assert.equal(markerPoint(pts, 9).epoch, 0);
  assert.equal(markerPoint(pts, 11).epoch, 20);
  assert.equal(markerPoint([], 11), null);
});

test("plane domain includes the origin, the points and (optionally) the CIs", () => {
  const pts = [{ x: 1, y: 2, ci: { x0: 0.5, x1: 3, y0: 1, y1: 2.5 } }];
  const d = planeDomain([pts], false, 0);
  assert.deepEqual(d, { x: [0, 1], y: [0, 2] });
  const c = planeDomain([pts], true, 0);
  assert.deepEqual(c, { x: [0, 3], y: [0, 2.5] });
  const p = planeDomain([pts], false, 0.1);
  close(p.x[0], -0.1);
  close(p.y[1], 2.2);
  assert.deepEqual(planeDomain([], false, 0), { x: [0, 0], y: [0, 0] });
});

test("equal aspect: the same pixels per bit on both axes", () => {
  const sc = equalAspect({ x: [0, 4], y: [0, 1] }, 400, 300);
  // x needs 100 px/bit, y could take 300: the smaller wins and y is widened
  close(sc.pxPerBit, 100);
  close(sc.x(4) - sc.x(0), 400);
  close(sc.y(0) - sc.y(1), 100); // y grows upwards
  close(sc.y.invert(150), 0.5); // centred on the y domain's middle
  const t = equalAspect({ x: [-1, 1], y: [0, 10] }, 400, 200);
  close(t.pxPerBit, 20);
  close(t.x(1) - t.x(-1), 40);
});

test("status line", () => {
  assert.equal(statusText({}), "starting…");
  assert.equal(
    statusText({ state: "measuring", running_epoch: 40, queued: 2, measured_epochs: 3, dropped: 1, errors: 0 }),
    "measuring epoch 40 · 2 queued · 3 epochs measured · 1 dropped",
  );
  assert.equal(statusText({ state: "loaded", measured_epochs: 1, errors: 2 }), "loaded from disk · 1 epoch measured · 2 errors");
});

test("series extent, line paths and time chunks", () => {
  assert.deepEqual(seriesExtent([3, null, -1], [NaN, 7]), [-1, 7]);
  assert.equal(seriesExtent([null], []), null);
  const id = (v) => v;
  assert.equal(linePath([0, 1, 2, 3], [5, null, 6, 7], id, id), "M0.0,5.0M2.0,6.0L3.0,7.0");
  assert.deepEqual(timeChunks(1), []);
  assert.deepEqual(timeChunks(3, 6), [[0, 1], [1, 2]]);
  const ch = timeChunks(100, 6);
  assert.equal(ch.length, 6);
  assert.equal(ch[0][0], 0);
  assert.equal(ch[5][1], 99);
  for (let k = 1; k < ch.length; k++) assert.equal(ch[k][0], ch[k - 1][1]); // joined
});

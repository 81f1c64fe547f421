// A loaded run with a backlog, drawn in headless chromium: the time axis marks measured
// and pending epochs apart (issue 11), and the status line counts the pending ones.
import { test } from "node:test";
import assert from "node:assert/strict";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";

import { renderInChromium, skipRender } from "./harness.mjs";

const here = dirname(fileURLToPath(import.meta.url));

const SETUP = `
const state = {
  title: "loaded run", epoch: 4, epochs: [0, 4], selected_layer: "fc1",
  layers: [{ name: "fc1", n_in: 2, n_out: 1, kind: "linear" }], plane: {},
  plane_metric: "ei", show_ci: false, heatmap_kind: "ei_parts", pinned_edge: [],
  scalars: { epoch: [0, 1, 2, 3, 4], loss: [1, .8, .6, .5, .4] },
  status: { state: "loaded", queued: 0, measured_epochs: 2, pending: 3,
            pending_epochs: [1, 2, 3], notice: "2 measured · 3 pending" },
  errors: [], heatmap: {}, edge_history: {},
};
function python(k) {}
`;

const SCRIPT = `
  out.measured = $$(".cw-measured-tick").length;
  out.pending = $$(".cw-pending-tick").map((t) => Number(t.getAttribute("data-epoch")));
  out.status = $('[data-testid="cw-status"]').textContent;
`;

test("measured and pending epochs are marked apart", { skip: skipRender }, () => {
  const out = renderInChromium(join(here, "..", "dashboard.js"), SETUP, SCRIPT);
  assert.equal(out.measured, 2);
  assert.deepEqual(out.pending, [1, 2, 3]);
  assert.match(out.status, /3 pending/);
});

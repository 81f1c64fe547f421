// Pending (recorded, not yet measured) epochs in the dashboard (issue 11): the status
// line counts a loaded run's backlog, and the time axis marks each pending epoch that is
// not measured.
import { test } from "node:test";
import assert from "node:assert/strict";

import { pendingTicks, statusText } from "../dashboard.js";

test("a loaded run's backlog is counted in the status line", () => {
  assert.equal(statusText({ state: "loaded", measured_epochs: 2, pending: 3 }),
    "loaded from disk · 2 epochs measured · 3 pending");
  // live: the queue says it already
  assert.equal(statusText({ state: "measuring", running_epoch: 4, queued: 2, measured_epochs: 1, pending: 3 }),
    "measuring epoch 4 · 2 queued · 1 epoch measured");
});

test("pending ticks are the pending epochs not measured", () => {
  assert.deepEqual(pendingTicks({ pending_epochs: [0, 3, 5] }, [3]), [0, 5]);
  assert.deepEqual(pendingTicks({}, [1]), []);
  assert.deepEqual(pendingTicks(undefined, undefined), []);
});

// What the render tests share: a widget's front-end drawn in headless chromium with a fake
// anywidget model. Skipped (`skipRender`) when /usr/bin/chromium (or $CHROMIUM) is missing.
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { basename, dirname, join } from "node:path";

const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";

/** The `skip` option of a render test: false, or why it cannot run. */
export const skipRender = !existsSync(CHROMIUM) && `no chromium at ${CHROMIUM}`;

/** The module at `file` as the browser gets it: what
 *  causal_widgets.widgets.frontend.esm_bundle does, for the one form it inlines (`import { a, b } from "./name.js";` on a line of its
 *  own, replaced by name.js with `export ` taken off its top-level declarations). A data:
 *  URL module cannot resolve a relative import; tests/test_widgets.py checks the real one. */
export function bundle(file) {
  const text = readFileSync(file, "utf8");
  const out = text.replace(/^import \{([^}\n]*)\} from "\.\/([\w.-]+\.js)";[ \t]*$/gm, (_, names, dep) =>
    readFileSync(join(dirname(file), dep), "utf8")
      .replace(/^export ((?:async )?(?:function\*?|const|let|var|class) )/gm, "$1"));
  assert.doesNotMatch(out, /^\s*import\s*[{*"'\w]/m, `${basename(file)} has an import bundle() cannot inline`);
  return out;
}

/** Render the front-end `file` in a page and return what its script put in `out`.
 *  `setup` (page JS) defines `state` (the model's values) and `python(k)` (what the
 *  widget's Python side does when the front-end sets k: change state, fire(name)); the
 *  page provides `model`, `fire`, `sets` (every [k, v] the front-end set), `wait`, `$`,
 *  `$$`, `scrubTo(testid, index)` and `clickOn(selector)`. `script` (page JS) runs once the view has drawn and fills `out`; any error
 *  fails the test. */
export function renderInChromium(file, setup, script) {
  const esm = Buffer.from(bundle(file)).toString("base64");
  const page = `<!doctype html><html><head><meta charset="utf-8"></head><body>
<div id="app"></div><pre id="result">pending</pre>
<script type="module">
const listeners = {};
const sets = [];
const fire = (k) => (listeners["change:" + k] || []).forEach((f) => f());
const model = {
  get: (k) => state[k],
  set: (k, v) => { state[k] = v; sets.push([k, v]); fire(k); python(k); },
  save_changes: () => {},
  on: (ev, f) => { (listeners[ev] ||= []).push(f); },
  off: (ev, f) => { listeners[ev] = (listeners[ev] || []).filter((g) => g !== f); },
};
const wait = (ms) => new Promise((r) => setTimeout(r, ms));
const $ = (sel) => document.querySelector(sel);
const $$ = (sel) => [...document.querySelectorAll(sel)];
// a user's steps, each given 200 ms to redraw: move the slider [data-testid=id] to index i
// (as a drag does), click the element that matches sel
const scrubTo = async (id, i) => {
  const sc = $('[data-testid="' + id + '"]');
  sc.value = String(i); sc.dispatchEvent(new Event("input", { bubbles: true }));
  await wait(200);
};
const clickOn = async (sel) => { $(sel).click(); await wait(200); };
${setup}
const out = {};
try {
  const mod = await import("data:text/javascript;base64,${esm}");
  const cleanup = mod.default.render({ model, el: $("#app") });
  await wait(200);
${script}
  cleanup();
  out.ok = true;
} catch (err) {
  out.error = String(err && err.stack || err);
}
document.getElementById("result").textContent = JSON.stringify(out);
</script></body></html>`;
  const dir = mkdtempSync(join(tmpdir(), "cw-render-"));
  try {
    const html = join(dir, "page.html");
    writeFileSync(html, page);
    const dom = execFileSync(CHROMIUM, [
      "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync",
      `--user-data-dir=${join(dir, "profile")}`,
      "--virtual-time-budget=20000", "--dump-dom", `file://${html}`,
    ], { timeout: 90000, encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] });
    const m = dom.match(/<pre id="result">([\s\S]*?)<\/pre>/);
    assert.ok(m, "result block missing from the dumped DOM");
    const text = m[1].replace(/&quot;/g, '"').replace(/&lt;/g, "<").replace(/&gt;/g, ">").replace(/&amp;/g, "&");
    const r = JSON.parse(text);
    assert.equal(r.error, undefined, r.error);
    assert.ok(r.ok);
    return r;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

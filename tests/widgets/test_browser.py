"""Real-browser end-to-end tests: JupyterLab / Notebook 7 + chromium (Playwright).

The tests work the way a user does. ``jupyter lab`` (or ``jupyter notebook``, i.e. Notebook
7) is started headless on a free loopback port with token auth and a temp root directory;
chromium opens a notebook, runs every cell from the *Run* menu and we interact with the
rendered widgets (keyboard, mouse), asserting on what is drawn.

* ``test_harness_ipywidgets_button``: proves the harness with a plain ipywidgets button
  (independent of causal_widgets).
* ``test_dashboard_end_to_end``: trains a small Iris network (4-5-5-3 sigmoid) with
  ``cw.CausalDashboard`` in the notebook, waits for the measurements, screenshots the
  widget, scrubs to another epoch and selects another layer, and checks that the
  heatmap cells, the plane marker and the root's ``data-epoch``/``data-layer`` changed,
  and that the drawn heatmap values are the History's numbers.
* ``test_dashboard_end_to_end_notebook7``: the same dashboard checks in Jupyter Notebook 7
  (``/notebooks/<name>.ipynb``), screenshots prefixed ``nb7-``.
* ``test_dashboard_shows_bounds``: a layer whose whole EI is bounds (not an estimate)
  reopened in the dashboard is drawn open with its interval bars and the note, a
  screenshot ``status-bounds.png``.

Screenshots and the server logs go to ``tests/widgets/artifacts/`` (gitignored; CI keeps it).
Skipped only when ``/usr/bin/chromium`` is missing. Run with ``pytest -m browser``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

pytestmark = pytest.mark.browser

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
HERE = Path(__file__).parent
REPO = HERE.parents[1]
ARTIFACTS = HERE / "artifacts"
NOTEBOOKS = HERE / "browser"

if not Path(CHROMIUM).exists():
    pytest.skip(f"{CHROMIUM} is not installed (apt-get install chromium)", allow_module_level=True)

sync_api = pytest.importorskip("playwright.sync_api")

# JupyterLab user settings for the test session: render every cell (no windowing, so
# locators see outputs below the fold) and never fetch news / update checks (offline).
LAB_SETTINGS = {
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {
        "windowingMode": "none",
        "autoStartDefaultKernel": True,
    },
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {
        "fetchNews": "false",
        "checkForUpdates": False,
    },
}


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """A running Jupyter server, JupyterLab or Notebook 7 (its process group is ours to stop)."""

    def __init__(
        self, app: str, root: Path, port: int, token: str, proc: subprocess.Popen, log: Path
    ):
        self.app, self.root, self.port, self.token = app, root, port, token
        self.proc, self.log = proc, log

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}/{path}?token={self.token}"

    def log_tail(self, n: int = 4000) -> str:
        try:
            return self.log.read_text(errors="replace")[-n:]
        except OSError:
            return "(no log)"

    def api(self, path: str, body: dict | None = None, method: str | None = None) -> object:
        req = urllib.request.Request(
            f"http://127.0.0.1:{self.port}/api/{path}",
            headers={"Authorization": f"token {self.token}",
                     "Content-Type": "application/json"},
            data=None if body is None else json.dumps(body).encode(),
            method=method or ("GET" if body is None else "POST"),
        )
        with urllib.request.urlopen(req, timeout=30) as r:
            data = r.read()
            return json.loads(data) if data else None

    def shutdown_sessions(self) -> None:
        """End every notebook session (and its kernel) so the next test starts clean."""
        for session in self.api("sessions"):
            self.api(f"sessions/{session['id']}", method="DELETE")

    def start_kernel_for(self, notebook: str) -> str:
        """Create the notebook's session with a python3 kernel; return the kernel id.

        Opening a notebook whose session already exists skips the frontend's kernel
        selection (a dialog, then a kernel switch that races the websocket on a slow
        machine). The server only learns the kernel's state once a client connects, so
        readiness is checked in the browser.
        """
        session = self.api(
            "sessions",
            {"path": notebook, "type": "notebook", "name": notebook,
             "kernel": {"name": "python3"}},
        )
        return session["kernel"]["id"]


def _stop(proc: subprocess.Popen) -> None:
    """Stop the server and its kernels: SIGTERM to the process group we created, then KILL."""
    if proc.poll() is not None:
        return
    pgid = os.getpgid(proc.pid)
    os.killpg(pgid, signal.SIGTERM)
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(pgid, signal.SIGKILL)
        proc.wait(timeout=15)
    # kernels are in the same group; make sure none outlives the server
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        pass


# Per-app command line. Both are jupyter_server ServerApps built on jupyterlab_server, so
# they share the isolation (config/runtime/settings dirs) and the server options below.
APP_ARGS = {
    "lab": [
        "-m", "jupyterlab",
        # stay offline: no news, no update check
        "--LabApp.news_url=",
        "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
        "--LabApp.extension_manager=readonly",
        "--LabApp.expose_app_in_browser=True",
    ],
    "notebook": [
        "-m", "notebook",
        "--JupyterNotebookApp.expose_app_in_browser=True",
    ],
}


@contextmanager
def _serve(app: str, base: Path) -> Iterator[Server]:
    """Start ``jupyter lab`` or ``jupyter notebook`` isolated under ``base``; stop it after."""
    root = base / "root"
    root.mkdir()
    # Notebook 7 reads the same JupyterLab user settings (JUPYTERLAB_SETTINGS_DIR)
    settings = base / "settings"
    for name, value in LAB_SETTINGS.items():
        p = settings / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(json.dumps(value))
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    log = ARTIFACTS / ("jupyterlab.log" if app == "lab" else f"jupyter-{app}.log")
    port = _free_port()
    token = os.urandom(16).hex()
    env = dict(os.environ)
    bindir = str(Path(sys.executable).parent)
    env.update(
        # the kernelspec runs "python": make it this interpreter (the venv's)
        PATH=bindir + os.pathsep + env.get("PATH", ""),
        PYTHONPATH=str(REPO) + os.pathsep + env.get("PYTHONPATH", ""),
        # isolate from the user's Jupyter/IPython config and state
        JUPYTER_CONFIG_DIR=str(base / "config"),
        JUPYTER_RUNTIME_DIR=str(base / "runtime"),
        JUPYTERLAB_SETTINGS_DIR=str(settings),
        JUPYTERLAB_WORKSPACES_DIR=str(base / "workspaces"),
        IPYTHONDIR=str(base / "ipython"),
        JUPYTER_PLATFORM_DIRS="1",
        # the machine is shared: the notebook's torch must not grab every core
        OMP_NUM_THREADS=env.get("OMP_NUM_THREADS", "1"),
    )
    cmd = [
        sys.executable,
        *APP_ARGS[app],
        "--no-browser",
        "--ServerApp.ip=127.0.0.1",
        f"--ServerApp.port={port}",
        "--ServerApp.port_retries=0",
        f"--IdentityProvider.token={token}",
        f"--ServerApp.root_dir={root}",
        "--ServerApp.open_browser=False",
        # start fast: no language servers, no terminals
        "--ServerApp.jpserver_extensions=jupyter_lsp=False",
        "--ServerApp.terminals_enabled=False",
        "--MappingKernelManager.cull_idle_timeout=0",
    ]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        cmd.append("--allow-root")  # CI containers run as root
    fh = open(log, "w")
    proc = subprocess.Popen(
        cmd, cwd=root, env=env, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True
    )
    server = Server(app, root, port, token, proc, log)
    try:
        deadline = time.monotonic() + 90
        while True:
            if proc.poll() is not None:
                pytest.fail(f"jupyter {app} exited with {proc.returncode}:\n{server.log_tail()}")
            try:
                server.api("status")
                break
            except (urllib.error.URLError, ConnectionError, OSError):
                if time.monotonic() > deadline:
                    pytest.fail(f"jupyter {app} did not answer within 90 s:\n{server.log_tail()}")
                time.sleep(0.3)
        yield server
    finally:
        _stop(proc)
        fh.close()


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with _serve("lab", tmp_path_factory.mktemp("jupyterlab")) as server:
        yield server


@pytest.fixture(scope="module")
def nb7(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with _serve("notebook", tmp_path_factory.mktemp("notebook7")) as server:
        yield server


@contextmanager
def _chromium(server: Server, test_name: str):
    """A chromium page; console errors collected in ``page.cw_console``."""
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True
        )
        context = browser.new_context(viewport={"width": 1500, "height": 1100})
        page = context.new_page()
        console: list[str] = []
        page.on("console", lambda m: console.append(f"{m.type}: {m.text}"))
        page.on("pageerror", lambda e: console.append(f"pageerror: {e}\n{e.stack}"))
        page.cw_console = console
        page.cw_prefix = "" if server.app == "lab" else "nb7-"  # artifact names
        page.set_default_timeout(60_000)
        try:
            yield page
        finally:
            (ARTIFACTS / f"{test_name}-console.log").write_text("\n".join(console))
            context.close()
            browser.close()
            server.shutdown_sessions()


@pytest.fixture()
def browser_page(lab: Server, request: pytest.FixtureRequest):
    """A chromium page for the JupyterLab server."""
    with _chromium(lab, request.node.name) as page:
        yield page


@pytest.fixture()
def nb7_page(nb7: Server, request: pytest.FixtureRequest):
    """A chromium page for the Notebook 7 server."""
    with _chromium(nb7, request.node.name) as page:
        yield page


# The notebook's kernel, as the frontend sees it (JupyterLab and Notebook 7 both expose the
# app as window.jupyterapp): connected over the websocket and idle.
KERNEL_IDLE_JS = """() => {
    const w = window.jupyterapp && window.jupyterapp.shell.currentWidget;
    const k = w && w.sessionContext && w.sessionContext.session
        && w.sessionContext.session.kernel;
    return !!k && k.connectionStatus === 'connected' && k.status === 'idle';
}"""


def _open_and_run_all(page, server: Server, notebook: str) -> None:
    """Open ``notebook`` (in the server root), wait for an idle kernel, then Run > Run All."""
    server.start_kernel_for(notebook)
    if server.app == "lab":
        # a fresh, reset workspace per notebook: JupyterLab would otherwise reopen the tabs
        # (and reconnect the kernels) of the previous test
        workspace = Path(notebook).stem
        page.goto(server.url(f"lab/workspaces/{workspace}/tree/{notebook}") + "&reset")
    else:
        page.goto(server.url(f"notebooks/{notebook}"))  # Notebook 7's notebook page
    page.locator(".jp-NotebookPanel").first.wait_for(state="visible", timeout=90_000)
    if server.app == "lab":
        # the status bar says so once connected to the session's kernel and idle
        page.locator(
            ".jp-StatusBar-TextItem", has_text="Python 3 (ipykernel) | Idle"
        ).wait_for(timeout=90_000)
    # (Notebook 7 has no status bar; ask its app directly, in Lab too as a cross-check)
    page.wait_for_function(KERNEL_IDLE_JS, timeout=90_000, polling=250)
    page.locator(".lm-MenuBar-item", has_text="Run").first.click()
    page.locator(".lm-Menu-item[data-command='runmenu:run-all']").click()
    # the frontend may still ask which kernel to use (_wait_for_output keeps answering it).
    # Once a cell is queued or ran ("[*]:", "[1]:") no dialog will come: stop looking.
    started = page.locator(".jp-InputPrompt", has_text=re.compile(r"\[(\*|\d+)\]"))
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        if _accept_kernel_dialog(page) or started.count() > 0:
            break
        page.wait_for_timeout(100)


def _accept_kernel_dialog(page) -> bool:
    """Answer a "Select Kernel" dialog with the notebook's kernel (python3), if one is up."""
    select = page.locator(".jp-Dialog .jp-Dialog-button.jp-mod-accept", has_text="Select")
    if select.is_visible():
        select.click()
        return True
    return False


def _wait_for_output(page, server: Server, text: str, timeout_s: float) -> None:
    """Wait until a cell output shows ``text``; fail with any error output and the logs."""
    deadline = time.monotonic() + timeout_s
    out = page.locator(".jp-OutputArea-output", has_text=text)
    err = page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']")
    while time.monotonic() < deadline:
        if out.count() > 0:
            return
        _accept_kernel_dialog(page)
        tracebacks = page.locator(".jp-OutputArea-output", has_text="Traceback")
        if tracebacks.count() > 0:
            pytest.fail(f"a notebook cell failed:\n{tracebacks.first.inner_text()[-3000:]}")
        page.wait_for_timeout(500)
    stderr = "\n".join(err.all_inner_texts())[-3000:]
    page.screenshot(path=str(ARTIFACTS / f"{page.cw_prefix}timeout.png"), full_page=True)
    pytest.fail(
        f"no output {text!r} after {timeout_s} s. stderr outputs:\n{stderr}\n"
        f"console:\n{chr(10).join(page.cw_console[-30:])}\nserver log:\n{server.log_tail(2000)}"
    )


def test_harness_ipywidgets_button(lab: Server, browser_page) -> None:
    page = browser_page
    shutil.copy(NOTEBOOKS / "button.ipynb", lab.root / "button.ipynb")
    _open_and_run_all(page, lab, "button.ipynb")
    _wait_for_output(page, lab, "CW-HARNESS-READY", 120)
    button = page.locator("button.jupyter-button", has_text="cw-harness-button")
    button.wait_for(state="visible")
    label = page.locator(".widget-label", has_text="clicks:")
    assert label.inner_text() == "clicks: 0"
    button.click()
    button.click()
    # the click goes to the kernel over the comm and the label comes back updated
    page.locator(".widget-label", has_text="clicks: 2").wait_for(timeout=30_000)
    page.locator(".jp-NotebookPanel").first.screenshot(path=str(ARTIFACTS / "harness.png"))


# --------------------------------------------------------------------------- dashboard
CELLS_JS = """root => Object.fromEntries(
    [...root.querySelectorAll('[data-testid=cw-heatmap-cell]')]
        .map(e => [e.dataset.i + ',' + e.dataset.j, e.dataset.value]))"""


def _drawn(root) -> dict:
    """What the widget shows now: root attributes and heatmap cell values."""
    cells = root.evaluate(CELLS_JS)
    return {
        "epoch": root.get_attribute("data-epoch"),
        "layer": root.get_attribute("data-layer"),
        "cells": {k: float(v) for k, v in cells.items() if v not in ("", None)},
    }


def _marker(root, layer: str) -> dict:
    m = root.locator(f"[data-testid=cw-plane-marker][data-layer='{layer}']")
    return {a: m.get_attribute(a) for a in ("cx", "cy", "transform", "data-epoch", "class")}


def _matches(cells: dict, matrix: list[list[float]], tol: float = 2e-6) -> bool:
    """Drawn cells == the History's matrix (the widget sends 6 decimals: error <= 5e-7)."""
    want = {f"{i},{j}": v for i, row in enumerate(matrix) for j, v in enumerate(row)}
    return set(cells) == set(want) and all(abs(cells[k] - want[k]) <= tol for k in want)


def _wait_drawn(page, root, epoch: int, layer: str, expected: dict, timeout_s: float = 60):
    """Wait until the widget shows ``layer`` at ``epoch`` with exactly the History's numbers."""
    matrix = expected["ei_parts"][f"{epoch}/{layer}"]
    deadline = time.monotonic() + timeout_s
    while True:
        d = _drawn(root)
        if d["epoch"] == str(epoch) and d["layer"] == layer and _matches(d["cells"], matrix):
            return d
        if time.monotonic() > deadline:
            root.screenshot(path=str(ARTIFACTS / f"{page.cw_prefix}dashboard-timeout.png"))
            pytest.fail(
                f"widget never showed layer {layer!r} at epoch {epoch} with the History's "
                f"EI_parts matrix; it shows epoch={d['epoch']} layer={d['layer']} "
                f"cells={d['cells']}, expected {matrix}.\nconsole:\n"
                + "\n".join(page.cw_console[-20:])
            )
        page.wait_for_timeout(200)


def _drag_scrubber_to_start(page, scrubber) -> None:
    """Drag the range slider ``scrubber``'s thumb with the mouse from its right end (the
    newest epoch) to its left end, as a user does; checks it is a range input."""
    assert scrubber.get_attribute("type") == "range"
    scrubber.scroll_into_view_if_needed()
    box = scrubber.bounding_box()
    y = box["y"] + box["height"] / 2
    page.mouse.move(box["x"] + box["width"] - 4, y)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] / 2, y, steps=5)
    page.mouse.move(box["x"] + 1, y, steps=5)
    page.mouse.up()


def _dashboard_end_to_end(page, server: Server) -> None:
    """Run the dashboard notebook in ``server``'s frontend; scrub, pick a layer, check."""

    def shot(name: str) -> str:  # dashboard-*.png (Lab) or nb7-dashboard-*.png
        return str(ARTIFACTS / f"{page.cw_prefix}{name}")

    shutil.copy(NOTEBOOKS / "dashboard_e2e.ipynb", server.root / "dashboard_e2e.ipynb")
    _open_and_run_all(page, server, "dashboard_e2e.ipynb")
    _wait_for_output(page, server, "CW-DONE", 420)
    expected = json.loads((server.root / "cw_expected.json").read_text())
    epochs, layers = expected["epochs"], expected["layers"]
    assert epochs == [0, 10, 20, 30, 40], epochs
    assert layers == ["0", "2", "4"], layers
    assert expected["errors"] == []

    root = page.locator(".cw-dashboard").first
    root.wait_for(state="visible")
    root.scroll_into_view_if_needed()
    # after training the dashboard follows the newest epoch
    first_layer = root.get_attribute("data-layer") or layers[0]
    before = _wait_drawn(page, root, epochs[-1], first_layer, expected)
    marker_before = _marker(root, first_layer)
    assert root.locator("[data-testid=cw-plane-marker]").count() == len(layers)
    assert root.locator("[data-testid=cw-layer-button]").count() == len(layers)
    assert root.locator("[data-testid=cw-trajectory]").count() == len(layers)
    root.screenshot(path=shot("dashboard-before.png"))

    # drag the scrubber's thumb from the right end (newest epoch) to the left end
    _drag_scrubber_to_start(page, root.locator("[data-testid=cw-scrubber]"))
    scrubbed = _wait_drawn(page, root, epochs[0], first_layer, expected)
    marker_scrubbed = _marker(root, first_layer)
    assert scrubbed["epoch"] != before["epoch"]
    assert scrubbed["cells"] != before["cells"], "heatmap did not change with the epoch"
    assert (marker_scrubbed["cx"], marker_scrubbed["cy"], marker_scrubbed["transform"]) != (
        marker_before["cx"], marker_before["cy"], marker_before["transform"]
    ), f"plane marker did not move: {marker_before} -> {marker_scrubbed}"
    assert marker_scrubbed["data-epoch"] == str(epochs[0])

    # select another layer from the network diagram
    other = next(n for n in layers if n != first_layer)
    root.locator(f"[data-testid=cw-layer-button][data-layer='{other}']").click()
    after = _wait_drawn(page, root, epochs[0], other, expected)
    assert after["layer"] != scrubbed["layer"]
    assert after["cells"] != scrubbed["cells"], "heatmap did not change with the layer"
    assert "cw-selected" in (_marker(root, other)["class"] or "")
    root.screenshot(path=shot("dashboard-after.png"))
    page.screenshot(path=shot("dashboard-page.png"), full_page=True)

    errors = [m for m in page.cw_console if m.startswith("pageerror") and not _known_noise(m)]
    assert not errors, "\n".join(errors)


def _known_noise(pageerror: str) -> bool:
    """A page error of the frontend itself, unrelated to the widget, seen on every load.

    Notebook 7.6's bundled shortcuts settings plugin throws this while the app starts
    (with or without a kernel, any notebook, no user settings); JupyterLab does not.
    """
    return (
        "Cannot read properties of undefined (reading 'schema')" in pageerror
        and "/static/notebook/notebook_core." in pageerror
    )


def test_dashboard_end_to_end(lab: Server, browser_page) -> None:
    _dashboard_end_to_end(browser_page, lab)


def test_dashboard_end_to_end_notebook7(nb7: Server, nb7_page) -> None:
    """The same dashboard checks in Jupyter Notebook 7 (``jupyter notebook``)."""
    _dashboard_end_to_end(nb7_page, nb7)


# --------------------------------------------------------------------------- statuses
STATUS_JS = """root => {
    const look = (m) => ({
        status: m.getAttribute('data-status'), open: m.classList.contains('cw-open'),
        fill: getComputedStyle(m).fill, stroke: getComputedStyle(m).stroke,
        tip: m.textContent,
        bars: root.querySelectorAll('.cw-marker-group[data-layer="' + m.dataset.layer
            + '"] [data-testid=cw-bounds-bar] line').length,
    });
    return {
        markers: Object.fromEntries([...root.querySelectorAll('[data-testid=cw-plane-marker]')]
            .map(m => [m.dataset.layer, look(m)])),
        note: root.querySelector('.cw-plane-card .cw-note').textContent,
    };
}"""


def test_dashboard_shows_bounds(lab: Server, browser_page) -> None:
    """A bounded EI (its interval brackets the truth) is an open marker with its bars."""
    page = browser_page
    shutil.copy(NOTEBOOKS / "status_bounds.ipynb", lab.root / "status_bounds.ipynb")
    _open_and_run_all(page, lab, "status_bounds.ipynb")
    _wait_for_output(page, lab, "CW-STATUS-READY", 300)
    status = json.loads((lab.root / "cw_status.json").read_text())
    assert status["wide"]["ei"] == "bounds"  # the premise (engine/bounds.py)
    root = page.locator(".cw-dashboard").first
    root.wait_for(state="visible")
    root.scroll_into_view_if_needed()
    root.locator("[data-testid=cw-plane-marker][data-layer='wide']").wait_for(state="attached")
    deadline = time.monotonic() + 30
    while True:
        drawn = root.evaluate(STATUS_JS)
        wide = drawn["markers"].get("wide")
        if wide and wide["status"]:
            break
        if time.monotonic() > deadline:
            pytest.fail(f"the plane never drew the wide layer's status: {drawn}")
        page.wait_for_timeout(200)
    root.screenshot(path=str(ARTIFACTS / "status-bounds.png"))
    assert wide["status"] == "bounds" and wide["open"], wide
    assert wide["fill"] == "rgb(255, 255, 255)", wide  # hollow, with the stylesheet loaded
    assert wide["stroke"] != "rgb(255, 255, 255)", wide  # outlined in the layer's colour
    assert wide["bars"] == 2, wide  # its interval, drawn without "CI" ticked
    lo, hi = status["wide"]["ei_ci"]
    assert re.search(r"EI in \[[^\]]+\] \(bounds\)", wide["tip"]), wide["tip"]
    assert lo < hi
    assert "Open markers: EI bounded, not estimated" in drawn["note"]
    narrow = drawn["markers"]["narrow"]
    # a point's status is the less certain of its EI's and its sensitivity's
    from causal_widgets.engine.bounds import combined_status

    assert narrow["status"] == combined_status(
        (status["narrow"]["ei"], status["narrow"]["sensitivity"])), (narrow, status)
    if narrow["status"] != "bounds":
        assert not narrow["open"] and narrow["bars"] == 0, narrow
        assert "(bounds)" not in narrow["tip"].split("\n")[1], narrow["tip"]
    errors = [m for m in page.cw_console if m.startswith("pageerror") and not _known_noise(m)]
    assert not errors, "\n".join(errors)

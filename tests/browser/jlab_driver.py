"""Drive JupyterLab in Debian's Chromium through Playwright: the server, the browser, and what the tests ask of a page.

The server is `dlcourse lab` (the command students run) on a copy of the course, on a free loopback port, with
``--LabApp.expose_app_in_browser=True`` so that the page's ``window.jupyterapp`` can be scripted: notebooks are
opened, run, saved and closed through JupyterLab's own commands and models, and the DOM is read for what a person
would see. Jupyter's per-user folders point into the run's temporary folder, so neither the user's settings nor
their running servers play a part; the environment's own settings (``dlcourse.notebooks lab-settings``) do.

Nothing here downloads a browser: Playwright's Python package drives the ``chromium`` that apt installed.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
CHROMIUM_CANDIDATES = ("/usr/bin/chromium", "/usr/bin/chromium-browser")
APT_HINT = "sudo apt-get install chromium   (Debian/Ubuntu; or set CHROMIUM=/path/to/chromium)"
# The lead's flags: without them a headless Chromium tries the network (updates, sync, QUIC probes) at start.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--disable-default-apps"]
# A 1280x720 projector at 150% zoom: 853x480 CSS pixels, each drawn as 1.5 device pixels.
HALL_VIEWPORT = {"width": 853, "height": 480}
HALL_SCALE = 1.5
# What the course ships to students (`dlcourse release` bundles these) and what the tests open.
COURSE_PARTS = ("course", "lectures", "assignments", "README.md")
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


def find_chromium() -> str | None:
    """The Chromium to drive: $CHROMIUM, else Debian's."""
    env = os.environ.get("CHROMIUM")
    if env:
        return env if Path(env).exists() else None
    return next((c for c in CHROMIUM_CANDIDATES if Path(c).exists()), shutil.which("chromium"))


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def copy_course(dest: Path, extra: tuple[str, ...] = ()) -> Path:
    """Copy the student-facing parts of the repository (and ``extra`` paths) into ``dest``; returns ``dest``.
    Reference notebooks are copied as they are; JupyterLab may save over the copies, never over the repository."""
    dest.mkdir(parents=True, exist_ok=True)
    ignore = shutil.ignore_patterns(".ipynb_checkpoints", "__pycache__", "*.pyc")
    for part in (*COURSE_PARTS, *extra):
        src = REPO / part
        if src.is_dir():
            shutil.copytree(src, dest / part, ignore=ignore)
        elif src.exists():
            shutil.copy2(src, dest / part)
    return dest


def notebooks_in(root: Path, folder: str) -> list[str]:
    """Paths (relative to ``root``) of the notebooks in ``folder``, sorted: found, not listed, so that a new lecture
    is tested the day it is added."""
    return sorted(str(p.relative_to(root)) for p in (root / folder).glob("*.ipynb") if not p.name.startswith((".", "_")))


class LabServer:
    """`dlcourse lab` on ``root``; ``url(path)`` with the token. Stopped by `stop` (SIGINT twice, then SIGKILL)."""

    def __init__(self, root: Path, state_dir: Path) -> None:
        self.root, self.state_dir = root, state_dir
        self.port = free_port()
        self.token = os.urandom(12).hex()
        self.log_path = state_dir / "jupyterlab.log"
        env = {k: v for k, v in os.environ.items() if not k.startswith(("JUPYTER", "VIRTUAL_ENV"))}
        # The environment's commands are NOT on PATH here, as when a student runs .venv/bin/dlcourse lab from a
        # plain shell: `dlcourse lab` itself must put them there for JupyterLab's terminals.
        env["PATH"] = os.pathsep.join(p for p in env.get("PATH", os.defpath).split(os.pathsep)
                                      if p and Path(p).resolve() != VENV_BIN.resolve())
        for name, sub in (("JUPYTER_CONFIG_DIR", "config"), ("JUPYTER_DATA_DIR", "data"),
                          ("JUPYTER_RUNTIME_DIR", "runtime"), ("JUPYTERLAB_SETTINGS_DIR", "user-settings"),
                          ("JUPYTERLAB_WORKSPACES_DIR", "workspaces"), ("IPYTHONDIR", "ipython")):
            env[name] = str(state_dir / sub)
            (state_dir / sub).mkdir(parents=True, exist_ok=True)
        env["OMP_NUM_THREADS"] = "1"
        env["HOME"] = str(state_dir / "home")  # nothing from the user's ~/.jupyter, ~/.ipython or shell history
        (state_dir / "home").mkdir(exist_ok=True)
        env["SHELL"] = shutil.which("bash") or "/bin/sh"
        # Every cell in the DOM: widgets are looked for in cells that are off screen too (the default windowing
        # renders them as well, but only lazily; the tests should not depend on scroll timing).
        settings = state_dir / "user-settings" / "@jupyterlab" / "notebook-extension"
        settings.mkdir(parents=True, exist_ok=True)
        (settings / "tracker.jupyterlab-settings").write_text(json.dumps({"windowingMode": "none"}))
        cmd = [str(VENV_BIN / "dlcourse"), "lab", "--no-browser", f"--port={self.port}",
               f"--ServerApp.root_dir={root}", "--ServerApp.ip=127.0.0.1", f"--IdentityProvider.token={self.token}",
               "--LabApp.expose_app_in_browser=True", "--ServerApp.port_retries=0",
               "--LabServerApp.extensions_in_dev_mode=False"]
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(cmd, env=env, stdout=self._log, stderr=subprocess.STDOUT, cwd=root,
                                     start_new_session=True)
        self._wait_ready(timeout=120)

    def url(self, path: str = "lab") -> str:
        sep = "&" if "?" in path else "?"
        return f"http://127.0.0.1:{self.port}/{path}{sep}token={self.token}"

    def api(self, path: str) -> Any:
        with urllib.request.urlopen(self.url(f"api/{path}"), timeout=10) as r:
            return json.loads(r.read())

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"dlcourse lab exited with status {self.proc.returncode}; see {self.log_path}:\n"
                                   + self.log_path.read_text(errors="replace")[-3000:])
            try:
                self.api("status")
                return
            except OSError:
                time.sleep(0.5)
        raise RuntimeError(f"JupyterLab did not answer on port {self.port} within {timeout:.0f} s; see {self.log_path}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            for sig in (signal.SIGINT, signal.SIGINT):  # Jupyter asks for confirmation after the first Ctrl-C
                os.killpg(self.proc.pid, sig)
                time.sleep(0.5)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self._log.close()


# ---------------------------------------------------------------------------------------------------------------
# JavaScript run in the page. `window._nb` is the notebook panel a test works on.

JS_OPEN = """async (path) => {
  const app = window.jupyterapp;
  const w = await app.commands.execute('docmanager:open', {path, factory: 'Notebook'});
  await w.context.ready;
  await w.sessionContext.ready;
  app.shell.activateById(w.id);
  window._nb = w;
  return w.context.path;
}"""

JS_KERNEL = """() => {
  const s = window._nb.sessionContext;
  const k = s.session && s.session.kernel;
  return k ? {name: k.name, status: k.status, display: s.kernelDisplayName} : null;
}"""

JS_STATE = """() => {
  const w = window._nb;
  return {dirty: w.context.model.dirty, title: w.title.label, className: w.title.className,
          language_info: w.context.model.getMetadata('language_info') || null};
}"""

JS_RUN_ALL = """() => {
  const app = window.jupyterapp;
  app.shell.activateById(window._nb.id);
  window._runDone = null;
  window._runStart = performance.now();
  app.commands.execute('notebook:run-all-cells').then(
    (r) => { window._runDone = {ok: r, ms: performance.now() - window._runStart}; },
    (e) => { window._runDone = {error: String(e), ms: performance.now() - window._runStart}; });
}"""

JS_RUN_STATUS = """() => {
  const w = window._nb;
  let pending = 0, errors = 0, ran = 0, code = 0;
  for (const cell of w.content.model.cells) {
    if (cell.type !== 'code') continue;
    code += 1;
    if (cell.executionState === 'running') pending += 1;
    if (cell.executionCount !== null) ran += 1;
    for (let i = 0; i < cell.outputs.length; i++) if (cell.outputs.get(i).type === 'error') errors += 1;
  }
  const k = w.sessionContext.session && w.sessionContext.session.kernel;
  return {done: window._runDone, pending, errors, ran, code, kernel: k ? k.status : null};
}"""

# Per code cell: its index, the first line of its source, and its outputs (types, mime types, text of streams and
# errors) as the model holds them.
JS_OUTPUTS = """() => {
  const out = [];
  const cells = window._nb.content.model.cells;
  for (let c = 0; c < cells.length; c++) {
    const cell = cells.get(c);
    if (cell.type !== 'code') continue;
    const outputs = [];
    for (let i = 0; i < cell.outputs.length; i++) {
      const o = cell.outputs.get(i).toJSON();
      const text = o.text ? (Array.isArray(o.text) ? o.text.join('') : o.text) : '';
      outputs.push({type: o.output_type, name: o.name || null, mimes: Object.keys(o.data || {}),
                    text: text.slice(0, 2000), ename: o.ename || null, evalue: o.evalue || null,
                    model_id: o.data && o.data['__WV__'] ? o.data['__WV__'].model_id : null});
    }
    out.push({cell: c, first: cell.sharedModel.getSource().split('\\n')[0].slice(0, 80),
              count: cell.executionCount, outputs});
  }
  return out;
}"""

# Every output node of the notebook that shows a widget view: which cell, whether the view rendered, and the text
# of any error the widget renderer wrote instead.
JS_WIDGET_NODES = """() => window._widgetOutputs().map(({cell, i, node}) => {
  const text = node ? (node.textContent || '') : '';
  const error = !node ? 'no output node' : text.includes('Error displaying widget') ? text.trim().slice(0, 200) : null;
  const loading = text.trim().startsWith('Loading widget');
  const rendered = !error && !loading && node.querySelector('.jupyter-widgets, .widget-box, .widget-inline-hbox') !== null;
  return {cell, k: i, rendered, error, loading};
})"""

JS_ANY_MODEL_NOT_FOUND = """() => (window._nb.node.textContent || '').includes('model not found')"""

JS_IMAGE_OUTPUTS = """() => {
  const res = [];
  window._nb.content.widgets.forEach((cell, c) => {
    cell.node.querySelectorAll('.jp-OutputArea-output[data-mime-type="image/png"] img').forEach((img) => {
      res.push({cell: c, width: img.naturalWidth, height: img.naturalHeight, shown: img.getBoundingClientRect().width});
    });
  });
  return res;
}"""

# Geometry of the widget in cell `cell`, output `k`: its box, its pictures, and its controls grouped into lines
# (controls whose vertical extents overlap share a line), and the labels whose text does not fit.
JS_WIDGET_GEOMETRY = """({cell, k}) => {
  const node = window._widgetNode(cell, k);
  node.scrollIntoView({block: 'start'});
  const box = node.getBoundingClientRect();
  const imgs = [...node.querySelectorAll('img')].map((i) => {
    const r = i.getBoundingClientRect();
    return {width: r.width, height: r.height, natural: i.naturalWidth, naturalHeight: i.naturalHeight};
  });
  const controls = [...node.querySelectorAll(
      'button, .noUi-target, .widget-slider, .widget-label, .widget-readout, select, input, .widget-html-content, textarea')]
    .filter((e) => { const r = e.getBoundingClientRect(); return r.width > 0 && r.height > 0 && !e.closest('.widget-image'); })
    .map((e) => { const r = e.getBoundingClientRect(); return {top: r.top, bottom: r.bottom, left: r.left, right: r.right}; });
  controls.sort((a, b) => a.top - b.top);
  const lines = [];
  for (const r of controls) {
    const last = lines[lines.length - 1];
    if (last && r.top < last.bottom - 2) last.bottom = Math.max(last.bottom, r.bottom);
    else lines.push({top: r.top, bottom: r.bottom});
  }
  // A label is cut off when its natural width (a hidden copy, free to be as wide as its text and padding) is
  // more than the width it was given: the browser then paints an ellipsis or clips it.
  const truncated = [...node.querySelectorAll('button, .widget-label, label')].filter((e) => {
    if (e.getBoundingClientRect().width === 0 || !(e.textContent || '').trim()) return false;
    const css = getComputedStyle(e);
    if (css.overflowX === 'visible' && css.textOverflow !== 'ellipsis') return false;  // overflowing text shows
    const copy = e.cloneNode(true);
    Object.assign(copy.style, {width: 'max-content', maxWidth: 'none', minWidth: '0', position: 'absolute',
                               visibility: 'hidden', flex: 'none'});
    e.parentNode.appendChild(copy);
    const natural = copy.getBoundingClientRect().width;
    copy.remove();
    return natural > e.getBoundingClientRect().width + 1;
  }).map((e) => (e.textContent || e.title || '').trim());
  const content = window._nb.content.node.getBoundingClientRect();
  return {width: box.width, height: box.height, right: box.right, contentRight: content.right, imgs,
          lines: lines.length, truncated};
}"""

# Arm a measurement on the widget (cell, k): resolves with the milliseconds from the next user input on the widget
# (captured before any handler runs) to the first change of its largest picture, and when (if ever) an element of
# the widget carried the class `dlcourse-busy` in between. `window._latency` holds the promise.
JS_ARM = """({cell, k, timeout}) => {
  const node = window._widgetNode(cell, k);
  const look = window._widgetLook(node);
  window._latency = new Promise((resolve) => {
    const before = look();
    let t0 = null, busy = null, ms = null;
    const start = () => { if (t0 === null) t0 = performance.now(); };
    for (const ev of ['pointerdown', 'keydown', 'change', 'input']) node.addEventListener(ev, start, {capture: true, once: true});
    const finish = (why) => { obs.disconnect(); resolve({ms, busy, reason: why}); };
    const obs = new MutationObserver(() => {
      if (t0 === null) return;
      if (busy === null && node.querySelector('.dlcourse-busy')) busy = performance.now() - t0;
      if (ms === null && look() !== before) { ms = performance.now() - t0; finish('changed'); }
    });
    obs.observe(node, {attributes: true, childList: true, characterData: true, subtree: true});
    setTimeout(() => finish('timeout'), timeout);
  });
}"""

# What a person looks at in a widget: its largest picture if it has one, else its displayed text other than the
# controls' (a text player). Installed once per page.
JS_INSTALL_LOOK = """() => {
  // The outputs of the notebook that show a widget view, found in the model (output i of a cell is child i of its
  // output area); each node is tagged data-dlcourse-widget="CELL-I" so that Playwright can find it.
  window._widgetOutputs = () => {
    const res = [];
    window._nb.content.widgets.forEach((cw, c) => {
      if (cw.model.type !== 'code' || !cw.outputArea) return;
      const outs = cw.model.outputs;
      for (let i = 0; i < outs.length; i++) {
        const data = outs.get(i).data || {};
        if (!data['__WV__']) continue;
        const child = cw.outputArea.widgets[i];
        const node = child ? child.node : null;
        if (node) node.setAttribute('data-dlcourse-widget', `${c}-${i}`);
        res.push({cell: c, i, node});
      }
    });
    return res;
  };
  window._widgetNode = (cell, k) => window._nb.node.querySelector(`[data-dlcourse-widget="${cell}-${k}"]`);
  window._widgetLook = (node) => {
    const imgs = [...node.querySelectorAll('img')];
    if (imgs.length) {
      imgs.sort((a, b) => b.naturalWidth * b.naturalHeight - a.naturalWidth * a.naturalHeight);
      const img = imgs[0];
      return () => img.src;
    }
    return () => [...node.querySelectorAll('.widget-html-content, .jp-OutputArea-output pre, .widget-textarea textarea')]
      .map((e) => e.textContent + (e.value || '')).join('|');
  };
}"""

# While playing: the times at which the largest picture changes, for `ms` milliseconds after the Play click.
JS_ARM_PLAY = """({cell, k, ms}) => {
  const node = window._widgetNode(cell, k);
  const look = window._widgetLook(node);
  window._play = new Promise((resolve) => {
    let t0 = null; const times = []; let last = look();
    node.addEventListener('pointerdown', () => { t0 = performance.now(); }, {capture: true, once: true});
    const obs = new MutationObserver(() => {
      const now = look();
      if (t0 !== null && now !== last) { last = now; times.push(performance.now() - t0); }
    });
    obs.observe(node, {attributes: true, childList: true, characterData: true, subtree: true});
    setTimeout(() => { obs.disconnect(); resolve(times); }, ms);
  });
}"""

JS_SAVE = """async () => { await window._nb.context.save(); return window._nb.context.model.dirty; }"""

JS_CLOSE = """async (shutdown) => {
  const w = window._nb;
  if (shutdown && w.sessionContext.session) await w.sessionContext.shutdown();
  w.context.model.dirty = false;  // closing must not ask: the test saved what it meant to save
  w.dispose();
  window._nb = null;
}"""

JS_TERMINAL = """async () => {
  const app = window.jupyterapp;
  const t = await app.commands.execute('terminal:create-new');
  window._term = t;
  window._termText = '';
  const session = t.content.session;
  session.messageReceived.connect((s, msg) => { if (msg.type === 'stdout') window._termText += msg.content.join(''); });
  return t.content.session.name;
}"""

JS_TERMINAL_SEND = """(text) => { window._term.content.session.send({type: 'stdin', content: [text]}); }"""


for _name in [n for n in list(globals()) if n.startswith("JS_")]:
    globals()[_name] = globals()[_name].replace("__WV__", WIDGET_VIEW)


@dataclass
class WidgetReport:
    """What one widget output did: geometry, response times, and its screenshot."""

    cell: int
    k: int
    geometry: dict = field(default_factory=dict)
    latencies: dict[str, list[float | None]] = field(default_factory=dict)
    busy: list[float | None] = field(default_factory=list)
    play_times: list[float] = field(default_factory=list)
    screenshot: str = ""

    def all_latencies(self) -> list[float | None]:
        return [x for xs in self.latencies.values() for x in xs]


def summarise(ms: list[float | None]) -> tuple[float | None, float | None, int]:
    """(median, max) of the measured response times, and how many interactions did not change the picture."""
    got = [m for m in ms if m is not None]
    return (statistics.median(got) if got else None, max(got) if got else None, len(ms) - len(got))


def new_state_dir() -> Path:
    return Path(tempfile.mkdtemp(prefix="dlcourse-browser-"))

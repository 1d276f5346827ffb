"""Headless-Chromium checks of built book pages: ``check_page(url) -> PageReport``.

Drives the system Chromium (Debian package ``chromium``) over the Chrome DevTools Protocol with
a small client built on tornado's websocket (tornado comes with ipykernel/jupyter, so nothing
else is installed; no browser download). Used by ``tests/test_book.py`` and usable by hand on
any build::

    python tests/browser.py _build/html                # serve it, check every page, screenshots
    python tests/browser.py _build/html --pages book/_generated/rq1_transferability

or from Python::

    from tests.browser import Browser, serve
    with serve("_build/html") as base, Browser() as b:
        report = b.check_page(base + "book/_generated/rq1_transferability.html",
                              screenshot="test-artifacts/screenshots/rq1_transferability.png")
        print(report.problems(rq_page=True))

What one page report holds: every <img> with its naturalWidth, the number of tables in the
article and those too wide for their column (they scroll sideways: their width, the visible
width, whether it is a result table (``dataframe``) or one of the page's own, its columns and
first row; reported, not failed), error (traceback) and stderr output cells (myst-nb marks them
``div.output.traceback`` and ``div.output.stderr``), the widget areas (the live-kernel notes,
the widget views and how many the offline widget manager actually rendered), every request that
left the local server, failed requests, JavaScript exceptions and console errors, and the
screenshot path.
"""
from __future__ import annotations

import asyncio
import base64
import contextlib
import functools
import http.server
import itertools
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import urlsplit

__all__ = ["PageReport", "Browser", "BrowserError", "find_chromium", "serve", "check_page", "page_name",
           "CHROMIUM_FLAGS", "NOTE_SELECTOR"]

CHROMIUM_FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--no-default-browser-check", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--disable-dev-shm-usage", "--disable-extensions", "--mute-audio",
    "--hide-scrollbars", "--password-store=basic", "--use-mock-keychain",
)
"""Launch flags: headless, no sandbox (root in containers), no network activity of its own."""

NOTE_SELECTOR = ".dynn-widget-note"
"""The live-kernel note printed by ``dynn_lib.widgets_static`` before each widget area."""

_LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1", "[::1]"}
_LOCAL_SCHEMES = {"file", "data", "blob", "about", "chrome", "devtools", "chrome-extension"}
_IGNORED_FAILURES = ("/favicon.ico",)

# Collected in the page after load (and after widgets / MathJax had their chance to render).
_PROBE_JS = r"""
(() => {
  const main = document.querySelector('article.bd-article') || document.querySelector('main') || document.body;
  const text = (el) => (el.innerText || el.textContent || '').trim().slice(0, 300);
  return {
    title: document.title,
    images: Array.from(document.images).map((i) => ({
      src: i.currentSrc || i.src, naturalWidth: i.naturalWidth, naturalHeight: i.naturalHeight,
      complete: i.complete, inArticle: main.contains(i)})),
    tables: main.querySelectorAll('table').length,
    wideTables: Array.from(main.querySelectorAll('table')).map((t) => {
      let box = t;
      while (box && box !== main && !(['auto', 'scroll', 'hidden'].includes(getComputedStyle(box).overflowX)
                                      && box.scrollWidth > box.clientWidth + 1)) box = box.parentElement;
      return box && box !== main ? {width: box.scrollWidth, visible: box.clientWidth,
                                    result: t.classList.contains('dataframe'),
                                    columns: t.rows.length ? t.rows[0].cells.length : 0,
                                    head: text(t.rows.length ? t.rows[0] : t).slice(0, 80)} : null;
    }).filter((w) => w),
    errorOutputs: Array.from(document.querySelectorAll(
      '.output.traceback, .output.error, div.cell_output .traceback')).map(text),
    stderrOutputs: Array.from(document.querySelectorAll('.output.stderr')).map(text),
    widgetNotes: document.querySelectorAll('__NOTE__').length,
    widgetViews: document.querySelectorAll('script[type="application/vnd.jupyter.widget-view+json"]').length,
    widgetStates: document.querySelectorAll('script[type="application/vnd.jupyter.widget-state+json"]').length,
    widgetsRendered: document.querySelectorAll('.jupyter-widgets').length,
    scriptSrcs: Array.from(document.scripts).map((s) => s.src).filter((s) => s),
    mathjax: typeof window.MathJax === 'object' && !!window.MathJax.version,
    mathRendered: document.querySelectorAll('mjx-container').length,
    mathSource: document.querySelectorAll('.math').length,
    height: Math.max(document.documentElement.scrollHeight, document.body.scrollHeight),
  };
})()
""".replace("__NOTE__", NOTE_SELECTOR)

# Resolves when the offline widget manager and MathJax are done (or there is nothing to do).
_SETTLE_JS = r"""
new Promise((resolve) => {
  const t0 = Date.now();
  const done = () => {
    const views = document.querySelectorAll('script[type="application/vnd.jupyter.widget-view+json"]').length;
    const rendered = document.querySelectorAll('.jupyter-widgets').length;
    const mj = window.MathJax && window.MathJax.startup && window.MathJax.startup.promise;
    return (views === 0 || rendered >= views) && (!document.querySelector('.math') || !window.MathJax || mj);
  };
  const tick = () => {
    if (done() || Date.now() - t0 > __TIMEOUT__) {
      const mj = window.MathJax && window.MathJax.startup && window.MathJax.startup.promise;
      (mj ? mj.then(() => resolve(true), () => resolve(false)) : Promise.resolve()).then(() => resolve(true));
    } else { setTimeout(tick, 100); }
  };
  tick();
})
"""


class BrowserError(RuntimeError):
    """Chromium could not be started or stopped answering."""


@dataclass
class PageReport:
    """What a headless browser saw on one page (see the module docstring)."""

    url: str
    title: str = ""
    images: list[dict] = field(default_factory=list)
    tables: int = 0
    wide_tables: list[dict] = field(default_factory=list)
    error_outputs: list[str] = field(default_factory=list)
    stderr_outputs: list[str] = field(default_factory=list)
    widget_notes: int = 0
    widget_views: int = 0
    widget_states: int = 0
    widgets_rendered: int = 0
    script_srcs: list[str] = field(default_factory=list)
    mathjax_loaded: bool = False
    math_rendered: int = 0
    math_source: int = 0
    external_requests: list[str] = field(default_factory=list)
    failed_requests: list[str] = field(default_factory=list)
    js_exceptions: list[str] = field(default_factory=list)
    console_errors: list[str] = field(default_factory=list)
    screenshot: str | None = None
    seconds: float = 0.0

    @property
    def broken_images(self) -> list[str]:
        """Images that did not load (naturalWidth 0)."""
        return [i["src"] for i in self.images if not i.get("naturalWidth")]

    @property
    def external_scripts(self) -> list[str]:
        """<script src> that point off the local server."""
        return [s for s in self.script_srcs if _is_external(s)]

    def problems(self, *, rq_page: bool = False, allow_stderr: bool = False,
                 allow_console_errors: bool = False) -> list[str]:
        """Human-readable failures; empty when the page passes.

        Every page: no broken image, no error output, no request off the local server, no
        failed request, no JavaScript exception, every widget view rendered by the offline
        manager, and math rendered when the page has math. ``rq_page`` adds: at least one image
        (a figure), at least one table, and at least one widget area with its live-kernel note.
        """
        out: list[str] = []
        if self.broken_images:
            out.append(f"images not loaded (naturalWidth 0): {self.broken_images}")
        if self.error_outputs:
            out.append(f"{len(self.error_outputs)} error output cell(s): {self.error_outputs[:2]}")
        if self.stderr_outputs and not allow_stderr:
            out.append(f"{len(self.stderr_outputs)} stderr output cell(s): {self.stderr_outputs[:2]}")
        if self.external_scripts:
            out.append(f"scripts loaded from outside the site: {self.external_scripts}")
        if self.external_requests:
            out.append(f"requests left the local server: {self.external_requests[:5]}")
        if self.failed_requests:
            out.append(f"failed requests: {self.failed_requests[:5]}")
        if self.js_exceptions:
            out.append(f"JavaScript exceptions: {self.js_exceptions[:3]}")
        if self.console_errors and not allow_console_errors:
            out.append(f"console errors: {self.console_errors[:3]}")
        if self.widget_views and self.widgets_rendered < self.widget_views:
            out.append(f"{self.widget_views} widget view(s) but {self.widgets_rendered} rendered "
                       f"(offline widget manager missing or failing)")
        if self.widget_notes < self.widget_views:
            out.append(f"{self.widget_views} widget area(s) but {self.widget_notes} live-kernel note(s) "
                       f"(display widgets with dynn_lib.widgets_static.show_widget)")
        if self.math_source and not self.math_rendered:
            out.append(f"{self.math_source} math element(s) but none rendered by MathJax")
        if rq_page:
            if not [i for i in self.images if i.get("inArticle")]:
                out.append("no figure (<img>) in the article")
            if self.tables < 1:
                out.append("no table in the article")
            if self.widget_notes < 1 or self.widget_views < 1:
                out.append(f"no widget area (notes={self.widget_notes}, views={self.widget_views})")
        return out

    def as_dict(self) -> dict:
        return asdict(self)


def _is_external(url: str) -> bool:
    parts = urlsplit(url)
    if parts.scheme in _LOCAL_SCHEMES or not parts.scheme:
        return False
    return (parts.hostname or "") not in _LOCAL_HOSTS


def find_chromium() -> str | None:
    """The Chromium/Chrome executable: ``$DYNN_CHROMIUM`` or the first of chromium,
    chromium-browser, google-chrome on PATH; None when absent."""
    env = os.environ.get("DYNN_CHROMIUM")
    if env:
        return env if Path(env).exists() or shutil.which(env) else None
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        found = shutil.which(name)
        if found:
            return found
    return None


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: Any) -> None:  # keep test logs short
        pass


@contextlib.contextmanager
def serve(directory: str | Path) -> Iterator[str]:
    """Serve ``directory`` over HTTP on 127.0.0.1 at a free port; yields the base URL (ends in /)."""
    directory = Path(directory).resolve()
    if not directory.is_dir():
        raise FileNotFoundError(f"no site to serve at {directory}")
    handler = functools.partial(_Quiet, directory=str(directory))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, name="book-http", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


class _CDP:
    """A minimal Chrome DevTools Protocol client (flat sessions) on tornado's websocket."""

    def __init__(self, ws):
        self.ws = ws
        self.ids = itertools.count(1)
        self.pending: dict[int, asyncio.Future] = {}
        self.listeners: list = []
        self.reader = asyncio.ensure_future(self._read())

    @classmethod
    async def connect(cls, url: str) -> "_CDP":
        from tornado.websocket import websocket_connect

        ws = await websocket_connect(url, max_message_size=1 << 30, ping_interval=None)
        return cls(ws)

    async def _read(self) -> None:
        while True:
            msg = await self.ws.read_message()
            if msg is None:
                for fut in self.pending.values():
                    if not fut.done():
                        fut.set_exception(BrowserError("DevTools connection closed"))
                return
            data = json.loads(msg)
            if "id" in data:
                fut = self.pending.pop(data["id"], None)
                if fut is not None and not fut.done():
                    if "error" in data:
                        fut.set_exception(BrowserError(f"CDP error: {data['error']}"))
                    else:
                        fut.set_result(data.get("result", {}))
            else:
                for listener in list(self.listeners):
                    listener(data)

    async def send(self, method: str, params: dict | None = None, session: str | None = None,
                   timeout: float = 60.0) -> dict:
        msg_id = next(self.ids)
        fut = asyncio.get_running_loop().create_future()
        self.pending[msg_id] = fut
        msg: dict[str, Any] = {"id": msg_id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        await self.ws.write_message(json.dumps(msg))
        return await asyncio.wait_for(fut, timeout)

    def close(self) -> None:
        self.reader.cancel()
        self.ws.close()


class Browser:
    """One headless Chromium process, reused across pages. Use as a context manager."""

    def __init__(self, executable: str | None = None, width: int = 1280, height: int = 900,
                 timeout: float = 60.0, extra_flags: tuple[str, ...] = ()):
        self.executable = executable or find_chromium()
        if not self.executable:
            raise BrowserError("no Chromium found: install it (Debian: apt-get install chromium) "
                               "or set DYNN_CHROMIUM to its path")
        self.width, self.height, self.timeout = width, height, timeout
        self.extra_flags = tuple(extra_flags)
        self.loop = asyncio.new_event_loop()
        self.proc: subprocess.Popen | None = None
        self.profile: str | None = None
        self.cdp: _CDP | None = None

    # -- lifecycle
    def __enter__(self) -> "Browser":
        self.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def start(self) -> None:
        self.profile = tempfile.mkdtemp(prefix="dynn-chromium-")
        cmd = [self.executable, *CHROMIUM_FLAGS, *self.extra_flags, f"--user-data-dir={self.profile}",
               "--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0",
               f"--window-size={self.width},{self.height}", "about:blank"]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        port_file = Path(self.profile) / "DevToolsActivePort"
        t0 = time.monotonic()
        while not (port_file.exists() and len(port_file.read_text().splitlines()) >= 2):
            if self.proc.poll() is not None:
                err = self.proc.stderr.read().decode(errors="replace")[-2000:] if self.proc.stderr else ""
                raise BrowserError(f"Chromium exited with {self.proc.returncode} at start:\n{err}")
            if time.monotonic() - t0 > self.timeout:
                self.close()
                raise BrowserError(f"Chromium did not open its DevTools port within {self.timeout}s")
            time.sleep(0.05)
        # stderr is not read any more: let it go nowhere so a chatty browser never blocks
        threading.Thread(target=self._drain, daemon=True).start()
        port, path = port_file.read_text().splitlines()[:2]
        self.cdp = self.loop.run_until_complete(_CDP.connect(f"ws://127.0.0.1:{port.strip()}{path.strip()}"))

    def _drain(self) -> None:
        with contextlib.suppress(Exception):
            for _ in iter(lambda: self.proc.stderr.read(65536), b""):
                pass

    def close(self) -> None:
        if self.cdp is not None:
            with contextlib.suppress(Exception):
                self.loop.run_until_complete(self.cdp.send("Browser.close", timeout=10))
            with contextlib.suppress(Exception):
                self.cdp.close()
            self.cdp = None
        if self.proc is not None:
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()  # only the process this object started
                self.proc.wait(timeout=10)
            self.proc = None
        with contextlib.suppress(Exception):
            pending = asyncio.all_tasks(self.loop)
            for task in pending:
                task.cancel()
            self.loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        if self.profile:
            shutil.rmtree(self.profile, ignore_errors=True)
            self.profile = None

    # -- pages
    def check_page(self, url: str, screenshot: str | Path | None = None, settle: float = 15.0) -> PageReport:
        """Load ``url``, wait for load + widgets + MathJax + network quiet, and report (see PageReport).

        ``screenshot``: where to write a full-page PNG (parent folders are created).
        """
        if self.cdp is None:
            raise BrowserError("browser not started (use `with Browser() as b:`)")
        return self.loop.run_until_complete(self._check(url, screenshot, settle))

    async def _check(self, url: str, screenshot: str | Path | None, settle: float) -> PageReport:
        cdp = self.cdp
        assert cdp is not None
        t0 = time.monotonic()
        report = PageReport(url=url)
        target = (await cdp.send("Target.createTarget", {"url": "about:blank"}))["targetId"]
        session = (await cdp.send("Target.attachToTarget", {"targetId": target, "flatten": True}))["sessionId"]
        loaded = asyncio.get_running_loop().create_future()
        inflight: dict[str, str] = {}
        last_activity = [time.monotonic()]

        def on_event(msg: dict) -> None:
            if msg.get("sessionId") != session:
                return
            method, p = msg.get("method"), msg.get("params", {})
            if method == "Page.loadEventFired" and not loaded.done():
                loaded.set_result(True)
            elif method == "Network.requestWillBeSent":
                req_url = p.get("request", {}).get("url", "")
                inflight[p.get("requestId", "")] = req_url
                last_activity[0] = time.monotonic()
                if _is_external(req_url):
                    report.external_requests.append(req_url)
            elif method in ("Network.loadingFinished", "Network.loadingFailed"):
                req_url = inflight.pop(p.get("requestId", ""), "")
                last_activity[0] = time.monotonic()
                if method == "Network.loadingFailed" and not p.get("canceled"):
                    if not req_url.endswith(_IGNORED_FAILURES):
                        report.failed_requests.append(f"{req_url} ({p.get('errorText', '')})")
            elif method == "Network.responseReceived":
                status = p.get("response", {}).get("status", 200)
                resp_url = p.get("response", {}).get("url", "")
                if status >= 400 and not resp_url.endswith(_IGNORED_FAILURES):
                    report.failed_requests.append(f"{resp_url} (HTTP {status})")
            elif method == "Runtime.exceptionThrown":
                d = p.get("exceptionDetails", {})
                desc = d.get("exception", {}).get("description") or d.get("text", "")
                report.js_exceptions.append(str(desc)[:500])
            elif method == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
                args = " ".join(str(a.get("value", a.get("description", ""))) for a in p.get("args", []))
                report.console_errors.append(args[:500])
            elif method == "Log.entryAdded" and p.get("entry", {}).get("level") == "error":
                entry = p["entry"]
                if not str(entry.get("url", "")).endswith(_IGNORED_FAILURES):
                    report.console_errors.append(f"{entry.get('text', '')} {entry.get('url', '')}"[:500])

        cdp.listeners.append(on_event)
        try:
            for domain in ("Page", "Network", "Runtime", "Log"):
                await cdp.send(f"{domain}.enable", session=session)
            await cdp.send("Emulation.setDeviceMetricsOverride",
                           {"width": self.width, "height": self.height, "deviceScaleFactor": 1,
                            "mobile": False}, session=session)
            nav = await cdp.send("Page.navigate", {"url": url}, session=session)
            if nav.get("errorText"):
                report.failed_requests.append(f"{url} ({nav['errorText']})")
                return report
            await asyncio.wait_for(loaded, self.timeout)
            await self._evaluate(_SETTLE_JS.replace("__TIMEOUT__", str(int(settle * 1000))), session,
                                 await_promise=True)
            # a viewport as tall as the page: lazy images load and the screenshot is the full page
            height = int((await self._evaluate(
                "Math.max(document.documentElement.scrollHeight, document.body.scrollHeight)", session)) or 0)
            height = max(self.height, min(height, 16000))
            await cdp.send("Emulation.setDeviceMetricsOverride",
                           {"width": self.width, "height": height, "deviceScaleFactor": 1, "mobile": False},
                           session=session)
            await self._quiet(inflight, last_activity, settle)
            await self._evaluate(
                "Promise.all(Array.from(document.images).map((i) => i.complete ? null : "
                "new Promise((r) => { i.onload = i.onerror = r; setTimeout(r, 5000); })))", session,
                await_promise=True)
            probe = await self._evaluate(_PROBE_JS, session)
            report.title = probe["title"]
            report.images = probe["images"]
            report.tables = probe["tables"]
            report.wide_tables = probe["wideTables"]
            report.error_outputs = probe["errorOutputs"]
            report.stderr_outputs = probe["stderrOutputs"]
            report.widget_notes = probe["widgetNotes"]
            report.widget_views = probe["widgetViews"]
            report.widget_states = probe["widgetStates"]
            report.widgets_rendered = probe["widgetsRendered"]
            report.script_srcs = probe["scriptSrcs"]
            report.mathjax_loaded = probe["mathjax"]
            report.math_rendered = probe["mathRendered"]
            report.math_source = probe["mathSource"]
            if screenshot is not None:
                await self._evaluate("window.scrollTo(0, 0)", session)
                shot = await cdp.send("Page.captureScreenshot",
                                      {"format": "png", "captureBeyondViewport": False,
                                       "clip": {"x": 0, "y": 0, "width": self.width, "height": height,
                                                "scale": 1}}, session=session)
                path = Path(screenshot)
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(base64.b64decode(shot["data"]))
                report.screenshot = str(path)
        finally:
            cdp.listeners.remove(on_event)
            with contextlib.suppress(Exception):
                await cdp.send("Target.closeTarget", {"targetId": target}, timeout=10)
            report.seconds = round(time.monotonic() - t0, 2)
        return report

    async def _evaluate(self, expression: str, session: str, await_promise: bool = False) -> Any:
        assert self.cdp is not None
        res = await self.cdp.send("Runtime.evaluate", {"expression": expression, "returnByValue": True,
                                                       "awaitPromise": await_promise}, session=session,
                                  timeout=self.timeout)
        if "exceptionDetails" in res:
            raise BrowserError(f"page script failed: {res['exceptionDetails']}")
        return res.get("result", {}).get("value")

    @staticmethod
    async def _quiet(inflight: dict, last_activity: list, limit: float, idle: float = 0.5) -> None:
        """Wait until no request is in flight for ``idle`` seconds (at most ``limit`` seconds)."""
        t0 = time.monotonic()
        while time.monotonic() - t0 < limit:
            if not inflight and time.monotonic() - last_activity[0] >= idle:
                return
            await asyncio.sleep(0.1)


def check_page(url: str, screenshot: str | Path | None = None, executable: str | None = None) -> PageReport:
    """Check one page with a browser of its own (start-up costs about a second; for many pages
    use one :class:`Browser`)."""
    with Browser(executable) as browser:
        return browser.check_page(url, screenshot)


def page_name(docname: str) -> str:
    """Screenshot name of a TOC entry: ``book/_generated/rq1_transferability`` -> ``rq1_transferability``."""
    return Path(docname).name


def _main(argv: list[str] | None = None) -> int:
    import argparse

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from dynn_lib.book import toc_files

    p = argparse.ArgumentParser(description="Check every page of a built book in headless Chromium.")
    p.add_argument("html", help="the built site (e.g. _build/html)")
    p.add_argument("--pages", nargs="*", help="TOC entries to check (default: all)")
    p.add_argument("--screenshots", default="test-artifacts/screenshots")
    p.add_argument("--json", default=None, help="write all reports to this JSON file")
    a = p.parse_args(argv)
    pages = a.pages or toc_files()
    failed = 0
    reports = []
    with serve(a.html) as base, Browser() as browser:
        for doc in pages:
            r = browser.check_page(f"{base}{doc}.html", Path(a.screenshots) / f"{page_name(doc)}.png")
            probs = r.problems(rq_page=page_name(doc).startswith("rq"))
            failed += bool(probs)
            reports.append(r.as_dict())
            print(f"{'FAIL' if probs else 'ok  '} {doc}  imgs={len(r.images)} tables={r.tables} "
                  f"scrolling={len(r.wide_tables)} "
                  f"widgets={r.widgets_rendered}/{r.widget_views} notes={r.widget_notes} "
                  f"math={r.math_rendered}/{r.math_source} ext={len(r.external_requests)} {r.seconds}s")
            for msg in probs:
                print(f"     - {msg}")
    if a.json:
        Path(a.json).write_text(json.dumps(reports, indent=2))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(_main())

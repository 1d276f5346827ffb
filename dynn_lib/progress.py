"""Progress bars that never write carriage-return junk into a log.

* In a terminal (stderr is a TTY) or a live Jupyter kernel: a tqdm.auto bar, as before.
* Anywhere else (CI logs, ``nohup``, a pipe, a file): no bar; one plain line per step of
  :data:`LINE_STEP_PCT` percent (and at the end), each ending in a newline, so the log reads
  ``[label] 25% (32/128) 4.1 s``.
* ``DYNN_PROGRESS=0`` silences both (the book sets it); ``DYNN_PROGRESS=lines`` forces the
  line mode, ``DYNN_PROGRESS=bar`` the bar.
"""
from __future__ import annotations

import os
import sys
import time
from typing import Iterable, Iterator, TextIO, TypeVar

T = TypeVar("T")

LINE_STEP_PCT = 25
"""Line mode writes a line each time another this many percent are done (and at the end)."""


def _in_kernel() -> bool:
    try:
        from IPython import get_ipython

        shell = get_ipython()
    except ImportError:
        return False
    return shell is not None and "IPKernelApp" in getattr(shell, "config", {})


def mode(stream: TextIO | None = None) -> str:
    """``"off"``, ``"bar"`` or ``"lines"``: what :func:`progress` does here (see the module docstring)."""
    env = os.environ.get("DYNN_PROGRESS", "1").strip().lower()
    if env in ("0", "off", "false", "no"):
        return "off"
    if env in ("lines", "bar"):
        return env
    stream = stream if stream is not None else sys.stderr
    tty = bool(getattr(stream, "isatty", lambda: False)())
    return "bar" if tty or _in_kernel() else "lines"


class _Lines:
    """Line-mode progress (see the module docstring): iterate over it, or call :meth:`update` by hand.
    With ``quiet`` it writes nothing (``DYNN_PROGRESS=0``) but keeps the same interface."""

    def __init__(self, it: Iterable[T] | None, total: int | None, desc: str, stream: TextIO,
                 initial: int = 0, quiet: bool = False):
        self.it, self.total, self.stream, self.quiet = it, total, stream, quiet
        self.label = f"[{desc}] " if desc else ""
        self.n, self.postfix, self.t0 = initial, "", time.perf_counter()
        self._next = LINE_STEP_PCT * (1 + int(100 * initial / total) // LINE_STEP_PCT) if total else 0
        self._closed = False

    def _write(self, text: str) -> None:
        if not self.quiet:
            self.stream.write(text + "\n")
            self.stream.flush()

    def update(self, n: int = 1) -> None:
        self.n += n
        if self.total:
            pct = 100 * self.n / self.total
            if pct >= self._next and self.n < self.total:
                tail = f" {self.postfix}" if self.postfix else ""
                self._write(f"{self.label}{pct:.0f}% ({self.n}/{self.total}) {time.perf_counter() - self.t0:.1f} s{tail}")
                while self._next <= pct:
                    self._next += LINE_STEP_PCT

    def set_postfix_str(self, s: str = "", refresh: bool = True) -> None:
        self.postfix = str(s)

    def set_postfix(self, *args, **kwargs) -> None:
        self.postfix = ", ".join([*map(str, args), *(f"{k}={v}" for k, v in kwargs.items())])

    def set_description(self, desc: str = "", refresh: bool = True) -> None:
        self.label = f"[{desc}] " if desc else ""

    def write(self, text: str) -> None:
        self._write(text)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            total = f"/{self.total}" if self.total else ""
            self._write(f"{self.label}done: {self.n}{total} in {time.perf_counter() - self.t0:.1f} s")

    def __iter__(self) -> Iterator[T]:
        for item in self.it or ():
            yield item
            self.update(1)
        self.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def progress(it: Iterable[T], **kw) -> Iterable[T]:
    """Wrap an iterable: a tqdm.auto bar, plain log lines or nothing (see :func:`mode`).

    Keyword arguments are tqdm's; line mode reads ``desc``, ``total`` (else ``len(it)``) and
    ``file`` (default stderr).
    """
    m = mode(kw.get("file"))
    if m == "bar":
        from tqdm.auto import tqdm

        return tqdm(it, **kw)
    total = kw.get("total")
    if total is None and it is not None:
        try:
            total = len(it)  # type: ignore[arg-type]
        except TypeError:
            total = None
    return _Lines(it, total, str(kw.get("desc") or ""), kw.get("file") or sys.stderr,
                  initial=int(kw.get("initial") or 0), quiet=(m == "off"))

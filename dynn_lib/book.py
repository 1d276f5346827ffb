"""Build the companion book: execute the text notebooks with papermill, then render with Jupyter Book.

Layout (one direction only; nothing is executed by Jupyter Book itself)::

    notebooks/<name>.md              source: a jupytext MyST text notebook (committed)
        | jupytext -> temporary .ipynb -> papermill, with injected parameters
        v
    book/_generated/<name>.ipynb     executed copy (git-ignored); this is what _toc.yml lists
        | jupyter-book build --warningiserror   (execute_notebooks: "off" in _config.yml)
        v
    _build/html/                     the static site

Every notebook has a cell tagged ``parameters`` declaring at least ``profile``, ``dataset``,
``results_dir``, ``device`` and ``seed``; papermill inserts an ``injected-parameters`` cell
after it, so each page shows the values it was run with. Unknown parameter names are an error
(a typo would otherwise be silently ignored by the notebook). Notebooks run with the repository
root as working directory, like the ``dynn`` command line, so relative paths mean the same in
both; progress bars are switched off (``DYNN_PROGRESS=0``) so that no tqdm widget ends up in
the book.

The same pages run under plain papermill, as a reader would call it::

    jupytext --to ipynb notebooks/rq1_transferability.md -o rq1.ipynb
    papermill rq1.ipynb out.ipynb -p profile smoke -p dataset synthetic -p eps_255 "[4]"

Papermill only warns about a name the page does not declare and passes lists as text, so each
page's first code cell calls :func:`check_parameters`: an undeclared name fails there with the
accepted names, and a value given as JSON/YAML text (``"[4]"``, ``'{"n_train": 64}'``,
per-exit ``tau`` ``"[0.9, 0.8]"``) is read into the type of the page's default.

Command line::

    python -m dynn_lib.book --profile smoke                       # execute all, build with -W
    python -m dynn_lib.book --profile paper --dataset cifar10-jpeg --results-dir artefacts --device cuda
    python -m dynn_lib.book --only methods,rq1_transferability    # re-execute two pages, build
    python -m dynn_lib.book --no-execute                          # rebuild the HTML only
    python -m dynn_lib.book --jobs 2 ...                          # two pages at once (published results)
    python -m dynn_lib.book -p compute=False --allow-missing ...  # render a partial results folder
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping, Sequence

__all__ = ["GENERATED_DIR", "SOURCE_DIR", "COMMON_PARAMETERS", "NotebookExecutionError", "repo_root",
           "toc_files", "toc_notebooks", "source_for", "notebook_parameters", "execute_notebook",
           "execute_all", "check_jobs", "default_jobs", "build_book", "main", "check_parameters", "coerce_parameter",
           "site_status", "write_notice_page", "NOT_PUBLISHED"]

GENERATED_DIR = Path("book") / "_generated"
"""Where executed notebooks go, relative to the book root (the folder holding ``_toc.yml``)."""

SOURCE_DIR = Path("notebooks")
"""Where the text-notebook sources live, relative to the book root."""

COMMON_PARAMETERS = ("profile", "dataset", "results_dir", "device", "seed")
"""Parameters every notebook declares in its ``parameters`` cell."""

EXECUTION_REPORT = "_execution.json"
"""Written into :data:`GENERATED_DIR`: per notebook, parameters, seconds, status."""


class NotebookExecutionError(RuntimeError):
    """A notebook failed; ``failed_path`` holds the partially executed copy with the traceback."""

    def __init__(self, source: Path, failed_path: Path, cause: BaseException):
        self.source, self.failed_path, self.cause = source, failed_path, cause
        super().__init__(f"executing {source} failed; the executed copy with the error is at "
                         f"{failed_path}\n{cause}")


NOT_PUBLISHED = "NotPublishedError"
"""Name of the error a page raises when its results are not in the results folder
(:class:`dynn_lib.experiments.runner.NotPublishedError`, from ``runner.publish(compute=False)``)."""


def _not_published(cause: BaseException) -> str | None:
    """The message of a page that stopped only because its results are not published (the
    kernel raised :data:`NOT_PUBLISHED`; papermill reports it as ``ename`` / ``evalue``), else None."""
    if getattr(cause, "ename", None) == NOT_PUBLISHED:
        return str(getattr(cause, "evalue", "") or cause)
    return None


def write_notice_page(src: str | Path, out: str | Path, parameters: Mapping[str, Any], message: str) -> Path:
    """Write ``out``: the page ``src`` without results -- its opening text (the markdown cells before
    its first code cell: title, the paper's claim, what would confirm or refute it), then a warning
    that a result it needs is not published, with ``message`` (the page's
    :class:`~dynn_lib.experiments.runner.NotPublishedError`: the folder looked in, why, the command
    that computes them; the results folder's absolute path shortened to its name). The parameters go
    into the notebook's metadata as papermill's would (:func:`site_status` reads them), and the
    message under ``metadata.dynn.missing_results``. Written atomically."""
    import nbformat

    from .store import atomic_write_text

    src, out = Path(src), Path(out)
    nb = _read_text_notebook(src) if src.suffix != ".ipynb" else nbformat.read(src, as_version=4)
    head = []
    for cell in nb.cells:
        if cell.cell_type != "markdown":
            break
        head.append(cell)
    text = message.removeprefix("compute=False: ").strip()
    results = parameters.get("results_dir")
    if results:
        full = str(Path(results).resolve())
        text = text.replace(full, Path(full).name)
    notice = nbformat.v4.new_markdown_cell(
        ":::{warning}\n**A result this page needs is not in this build's results folder.** " + text[:1].upper()
        + text[1:] + "\n\nThe book was built with `--allow-missing` from a partial results folder (for example "
        "from a GPU run that stopped before this question), so the page stops here: its tables, figures and "
        "verdicts are left out, and the claims ledger marks every statement that needs this result "
        "'not testable'.\n:::")
    nb.cells = head + [notice]
    nb.metadata["papermill"] = {"parameters": json.loads(json.dumps(dict(parameters), default=str))}
    nb.metadata["dynn"] = {"missing_results": text}
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out, nbformat.writes(nb))
    return out


# ----------------------------------------------------------------------------------- locations

def repo_root() -> Path:
    """The repository root (the folder holding ``_toc.yml``, parent of ``dynn_lib``)."""
    return Path(__file__).resolve().parents[1]


def _walk_toc(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key in ("root", "file"):
            if isinstance(node.get(key), str):
                yield node[key]
        for key in ("parts", "chapters", "sections"):
            for child in node.get(key) or ():
                yield from _walk_toc(child)
    elif isinstance(node, list):
        for child in node:
            yield from _walk_toc(child)


def toc_files(root: str | Path | None = None) -> list[str]:
    """Every file entry of ``_toc.yml`` (without extension), in book order."""
    import yaml

    root = Path(root) if root is not None else repo_root()
    toc = yaml.safe_load((root / "_toc.yml").read_text(encoding="utf-8"))
    return list(_walk_toc(toc))


def toc_notebooks(root: str | Path | None = None) -> list[str]:
    """Names of the notebooks the TOC takes from :data:`GENERATED_DIR`, in book order."""
    prefix = GENERATED_DIR.as_posix() + "/"
    return [f[len(prefix):] for f in toc_files(root) if f.startswith(prefix)]


def source_for(name: str, root: str | Path | None = None) -> Path:
    """The text-notebook source ``notebooks/<name>.md`` of a generated page."""
    root = Path(root) if root is not None else repo_root()
    return root / SOURCE_DIR / f"{name}.md"


# ----------------------------------------------------------------------------------- execution

def _read_text_notebook(path: Path):
    import jupytext

    nb = jupytext.read(path)
    nb.metadata.setdefault("kernelspec", {"name": "python3", "display_name": "Python 3",
                                          "language": "python"})
    return nb


def notebook_parameters(path: str | Path) -> dict[str, Any]:
    """Names and default values (source text) declared in the ``parameters`` cell of a .md/.ipynb."""
    import nbformat
    import papermill

    path = Path(path)
    with tempfile.TemporaryDirectory(prefix="dynn-book-") as tmp:
        ipynb = path if path.suffix == ".ipynb" else Path(tmp) / f"{path.stem}.ipynb"
        if path.suffix != ".ipynb":
            nbformat.write(_read_text_notebook(path), ipynb)
        info = papermill.inspect_notebook(str(ipynb))
    return {name: spec.get("default") for name, spec in info.items()}


@contextlib.contextmanager
def _environ(updates: Mapping[str, str]) -> Iterator[None]:
    old = {k: os.environ.get(k) for k in updates}
    os.environ.update(updates)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


KERNEL_START_ATTEMPTS = 3
"""Kernel starts :func:`execute_notebook` tries before it fails a page whose kernel died before
running a cell. Jupyter picks a kernel's TCP ports by binding free ones and releasing them for the
kernel to take, so two pages started at the same moment from separate processes (``jobs > 1``)
can, rarely, be handed the same port: the second kernel then dies at start (``ZMQError: Address
already in use``; seen once in a smoke build). A new start picks new ports. A page whose cells
ran is never re-run: only a kernel that never answered is retried."""

_KERNEL_START_ERRORS = ("Kernel died before replying to kernel_info", "Kernel didn't respond in")
"""How jupyter_client's ``wait_for_ready`` says that a kernel never started (no cell ran yet)."""


def kernel_start_failed(error: BaseException) -> bool:
    """Whether ``error`` (from ``papermill.execute_notebook``) says the kernel never started, so
    that nothing of the page ran and starting another kernel is safe (:data:`KERNEL_START_ATTEMPTS`)."""
    return isinstance(error, RuntimeError) and str(error).startswith(_KERNEL_START_ERRORS)


def execute_notebook(path: str | Path, out_path: str | Path, parameters: Mapping[str, Any] | None = None,
                     *, kernel_name: str = "python3", cwd: str | Path | None = None,
                     timeout: float | None = None, allow_unknown: bool = False,
                     log_output: bool = False, env: Mapping[str, str] | None = None) -> Path:
    """Execute one text notebook with papermill and write the executed ``.ipynb`` to ``out_path``.

    Args:
        path: the source, a jupytext MyST ``.md`` (or an ``.ipynb``, used as is).
        out_path: the executed notebook. Written atomically: a failed run removes any older
            copy, leaves ``<stem>.failed.ipynb`` next to it (with the traceback) and raises.
        parameters: values injected after the cell tagged ``parameters``. Names the notebook
            does not declare raise ``ValueError`` unless ``allow_unknown``.
        kernel_name: Jupyter kernel (default ``python3``: this interpreter's ipykernel).
        cwd: working directory of the kernel (default: the repository root).
        timeout: seconds allowed per cell (None: no limit).
        log_output: echo cell output to this process's log (useful in CI).
        env: extra environment variables for the kernel; ``DYNN_PROGRESS=0`` is always set
            unless given here.
    Returns:
        ``out_path`` as a Path.
    Raises:
        NotebookExecutionError: a cell raised, or the kernel failed to start
            :data:`KERNEL_START_ATTEMPTS` times; see ``failed_path``.
    """
    import nbformat
    import papermill

    path, out_path = Path(path), Path(out_path)
    if not path.is_file():
        raise FileNotFoundError(f"notebook source {path} does not exist")
    parameters = dict(parameters or {})
    out_path.parent.mkdir(parents=True, exist_ok=True)
    partial = out_path.with_name(f"{out_path.stem}.partial.ipynb")
    failed = out_path.with_name(f"{out_path.stem}.failed.ipynb")
    environment = {"DYNN_PROGRESS": "0", **(env or {})}
    with tempfile.TemporaryDirectory(prefix="dynn-book-") as tmp:
        if path.suffix == ".ipynb":
            ipynb = path
        else:
            ipynb = Path(tmp) / f"{path.stem}.ipynb"
            nbformat.write(_read_text_notebook(path), ipynb)
        declared = papermill.inspect_notebook(str(ipynb))
        if parameters and not declared:
            raise ValueError(f"{path} has no cell tagged 'parameters'; cannot inject {sorted(parameters)}")
        unknown = sorted(set(parameters) - set(declared))
        if unknown and not allow_unknown:
            raise ValueError(f"{path} does not declare parameter(s) {unknown}; "
                             f"its parameters cell declares {sorted(declared)}")
        try:
            for attempt in range(1, KERNEL_START_ATTEMPTS + 1):
                try:
                    with _environ(environment):
                        papermill.execute_notebook(
                            str(ipynb), str(partial), parameters=parameters, kernel_name=kernel_name,
                            cwd=str(Path(cwd) if cwd is not None else repo_root()), progress_bar=False,
                            log_output=log_output, execution_timeout=timeout)
                    break
                except Exception as e:
                    if attempt == KERNEL_START_ATTEMPTS or not kernel_start_failed(e):
                        raise
                    print(f"[book] {path.stem}: the kernel did not start ({e}); starting another "
                          f"(attempt {attempt + 1} of {KERNEL_START_ATTEMPTS})", file=sys.stderr, flush=True)
        except Exception as e:  # papermill.PapermillExecutionError and kernel failures alike
            if partial.exists():
                os.replace(partial, failed)
            # never leave an older successful copy behind: it would be built as if current
            out_path.unlink(missing_ok=True)
            raise NotebookExecutionError(path, failed, e) from e
    failed.unlink(missing_ok=True)
    os.replace(partial, out_path)
    return out_path


def _execute_one(src: str, out: str, parameters: dict, cwd: str, timeout: float | None, log_output: bool,
                 env: dict[str, str]) -> tuple[str | None, str | None, str | None, str | None]:
    """:func:`execute_notebook` in a pool worker: (error type, error text, failed copy, the
    not-published message of :func:`_not_published`), all None when the page ran; never raises, so
    that nothing unpicklable crosses the process boundary."""
    try:
        execute_notebook(src, out, parameters, cwd=cwd, timeout=timeout, log_output=log_output, env=env)
        return None, None, None, None
    except NotebookExecutionError as e:
        return type(e.cause).__name__, str(e.cause), str(e.failed_path), _not_published(e.cause)
    except Exception as e:  # a bad parameter, a missing source: reported like a failed page
        return type(e).__name__, str(e), None, None


def _rebuild_error(src: Path, kind: str, text: str, failed: str | None) -> BaseException:
    """The exception :func:`execute_notebook` raised in a pool worker, rebuilt in this process."""
    if failed is not None:
        return NotebookExecutionError(src, Path(failed), RuntimeError(f"{kind}: {text}"))
    cls = {"ValueError": ValueError, "FileNotFoundError": FileNotFoundError}.get(kind)
    return cls(text) if cls else RuntimeError(f"{kind}: {text}")


def check_jobs(jobs: Any) -> int:
    """``jobs`` (notebooks executed at once) as an int >= 1, else a ValueError naming it."""
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise ValueError(f"jobs (notebooks executed at once) must be an integer >= 1, got {jobs!r}")
    return jobs


MAX_DEFAULT_JOBS = 4
"""At most this many pages at once by default: each kernel holds PyTorch and the page's tables and
models in memory (several hundred MB), and past 4 the 8 pages gain little (2 rounds instead of 1)."""


def default_jobs(n_notebooks: int) -> int:
    """Notebooks executed at once by ``dynn reproduce``: one per CPU core, at most
    :data:`MAX_DEFAULT_JOBS` and ``n_notebooks``. A page that only renders published results is a
    single-threaded Python process for most of its run (kernel start, imports, tables, figures), so
    pages side by side use the cores one page leaves idle. Measured on 2 cores (AMD EPYC, quiet), the
    8 pages and the site of a smoke run: 106 s one after another, 58 s two at a time."""
    return max(1, min(n_notebooks, os.cpu_count() or 1, MAX_DEFAULT_JOBS))


def execute_all(root: str | Path | None = None, parameters: Mapping[str, Any] | None = None,
                names: Sequence[str] | None = None, *, timeout: float | None = None,
                log_output: bool = False, keep_going: bool = False, jobs: int = 1,
                allow_missing: bool = False) -> dict[str, dict]:
    """Execute every notebook of the TOC (or ``names``) into :data:`GENERATED_DIR`.

    The same ``parameters`` go to every notebook. Returns (and writes to
    ``book/_generated/_execution.json``, merged with earlier runs) one record per notebook:
    source, output, parameters, seconds, ok, error. With ``keep_going`` the remaining
    notebooks still run after a failure; the first failure (in book order) is raised at the end.

    jobs: notebooks executed at once (default 1: one after another, in book order). With more,
    each runs from its own worker process (kernels are separate processes anyway) and the kernels
    get ``OMP_NUM_THREADS`` = cores // jobs, so that the pages together use the cores once; the
    records and the ``[book]`` lines come in the order pages finish. Meant for pages that render
    published results (what ``dynn reproduce`` runs after its experiment stage, or with
    ``--no-experiments``): pages that still have to compute would each compute the models they
    share (the store keeps one copy; the work is done twice). ``log_output`` with several jobs
    interleaves the pages' outputs.

    allow_missing: a page that stops only because its results are not in the results folder (its
    ``compute`` parameter False and :class:`~dynn_lib.experiments.runner.NotPublishedError` raised)
    is not a failure: it is written as a notice page (:func:`write_notice_page`: its opening text and
    what is missing) and its record says ``missing_results``. For a partial results folder, e.g. from a
    GPU run that stopped early (``dynn reproduce --no-experiments --allow-missing``). Any other error
    still fails the page.
    """
    root = Path(root).resolve() if root is not None else repo_root()
    jobs = check_jobs(jobs)
    if not isinstance(allow_missing, bool):
        raise TypeError(f"allow_missing must be True or False, got {allow_missing!r}")
    all_names = toc_notebooks(root)
    names = list(names) if names is not None else all_names
    missing = [n for n in names if n not in all_names]
    if missing:
        raise ValueError(f"not in _toc.yml under {GENERATED_DIR}: {missing}; known: {all_names}")
    report_path = root / GENERATED_DIR / EXECUTION_REPORT
    report: dict[str, dict] = {}
    if report_path.exists():
        with contextlib.suppress(ValueError, OSError):
            report = json.loads(report_path.read_text(encoding="utf-8"))
    errors: dict[str, BaseException] = {}

    def finish(name: str, record: dict, t0: float) -> None:
        record["seconds"] = round(time.perf_counter() - t0, 2)
        report[name] = record
        report_path.parent.mkdir(parents=True, exist_ok=True)
        report_path.write_text(json.dumps(report, indent=2, default=str) + "\n", encoding="utf-8")
        status = ("no published results: rendered as a notice" if record.get("missing_results")
                  else "ok" if record["ok"] else "FAILED")
        print(f"[book] {name}: {status} in {record['seconds']:.1f}s", file=sys.stderr, flush=True)

    def as_notice(src: Path, out: Path, record: dict, message: str | None, failed: str | Path | None) -> bool:
        """Write the notice page when ``message`` says the results are missing and that is allowed."""
        if not allow_missing or message is None:
            return False
        write_notice_page(src, out, parameters or {}, message)
        if failed is not None:
            Path(failed).unlink(missing_ok=True)
        record.update(ok=True, missing_results=message)
        return True

    def new_record(name: str) -> tuple[Path, Path, dict]:
        src, out = source_for(name, root), root / GENERATED_DIR / f"{name}.ipynb"
        return src, out, {"source": str(src.relative_to(root)), "output": str(out.relative_to(root)),
                          "parameters": dict(parameters or {}), "ok": False, "error": None}

    if jobs == 1 or len(names) == 1:
        for name in names:
            src, out, record = new_record(name)
            t0 = time.perf_counter()
            try:
                execute_notebook(src, out, parameters, cwd=root, timeout=timeout, log_output=log_output)
                record["ok"] = True
            except Exception as e:
                cause = e.cause if isinstance(e, NotebookExecutionError) else e
                if as_notice(src, out, record, _not_published(cause), getattr(e, "failed_path", None)):
                    continue
                record["error"] = f"{type(e).__name__}: {e}"[:2000]
                errors[name] = e
                if not keep_going:
                    raise
            finally:
                finish(name, record, t0)
    else:
        _execute_pooled(names, new_record, finish, as_notice, errors, dict(parameters or {}), root, timeout,
                        log_output, keep_going, jobs)
    if errors:
        raise errors[next(n for n in names if n in errors)]
    return {n: report[n] for n in names}


def _execute_pooled(names, new_record, finish, as_notice, errors, parameters, root, timeout, log_output,
                    keep_going, jobs) -> None:
    """:func:`execute_all`'s ``jobs > 1`` path: up to ``jobs`` pages at once, in book order; after a
    failure (without ``keep_going``) no further page starts and the running ones finish."""
    import multiprocessing
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    env = {"OMP_NUM_THREADS": str(max(1, (os.cpu_count() or 1) // jobs))}
    queue = list(names)
    running: dict = {}
    with ProcessPoolExecutor(min(jobs, len(names)), mp_context=multiprocessing.get_context("spawn")) as pool:
        while queue or running:
            while queue and len(running) < jobs and (keep_going or not errors):
                name = queue.pop(0)
                src, out, record = new_record(name)
                fut = pool.submit(_execute_one, str(src), str(out), parameters, str(root), timeout, log_output, env)
                running[fut] = (name, src, out, record, time.perf_counter())
            if not running:
                break
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for fut in done:
                name, src, out, record, t0 = running.pop(fut)
                try:
                    kind, text, failed, missing = fut.result()
                except Exception as e:  # the worker process itself died
                    kind, text, failed, missing = type(e).__name__, str(e), None, None
                record["ok"] = kind is None
                if kind is not None and not as_notice(src, out, record, missing, failed):
                    errors[name] = err = _rebuild_error(src, kind, text, failed)
                    record["error"] = f"{type(err).__name__}: {err}"[:2000]
                finish(name, record, t0)


# ----------------------------------------------------------------------------------- inside a page

_INJECTED_HEADER = "# Parameters"
"""First line of the cell papermill injects (its Python translator writes it)."""


def _assigned_names(source: str) -> list[str]:
    import ast

    try:
        tree = ast.parse(source)
    except SyntaxError:
        return []
    names = []
    for node in tree.body:
        targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(
            node, (ast.AnnAssign, ast.AugAssign)) else []
        for t in targets:
            if isinstance(t, ast.Name):
                names.append(t.id)
    return names


def _defaults(source: str) -> dict[str, Any]:
    import ast

    out: dict[str, Any] = {}
    with contextlib.suppress(SyntaxError):
        for node in ast.parse(source).body:
            if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name):
                with contextlib.suppress(ValueError, SyntaxError):
                    out[node.targets[0].id] = ast.literal_eval(node.value)
    return out


def coerce_parameter(value: Any, default: Any) -> Any:
    """A value injected from the command line, given the type of the page's default.

    ``papermill -p NAME VALUE`` passes anything that is not a number or a boolean as a
    string, so ``-p eps_255 "[4]"`` arrives as ``"[4]"``. A string where the default is not a
    string is read as YAML (a superset of JSON): ``"[4]"`` -> ``[4]``, ``"{n_train: 64}"`` ->
    a dict, ``"[0.9, 0.8]"`` -> a list (per-exit τ). A scalar where the default is a list is
    wrapped in one (``-p eps_255 8`` -> ``[8]``). Anything else is returned unchanged.
    """
    if isinstance(value, str) and default is not None and not isinstance(default, str):
        import yaml

        try:
            parsed = yaml.safe_load(value)
        except yaml.YAMLError as e:
            raise ValueError(f"cannot read {value!r} as a value like the default {default!r}: {e}") from e
        value = parsed
    if isinstance(default, list) and not isinstance(value, (list, tuple)) and value is not None:
        return [value]
    return value


def check_parameters(history: Sequence[str] | None = None, namespace: dict | None = None) -> list[str]:
    """Fail when papermill injected a parameter the page does not declare; returns the injected names.

    Called in the first code cell after a page's ``parameters`` cell. Papermill executes the
    cells in order, so the kernel's input history (IPython's ``In``) holds the ``parameters``
    cell and, right after it, the cell papermill injected (it starts with ``# Parameters``).
    Every name assigned in the injected cell must be assigned in the parameters cell; plain
    ``papermill nb.ipynb out.ipynb -p eps_255 "[4]" -p sede 1`` therefore stops here with the
    accepted names, as ``python -m dynn_lib.book`` does before executing anything (papermill
    itself only warns). Outside papermill (JupyterLab, no injected cell) nothing is checked.

    Injected values are then brought to the type of their defaults in ``namespace`` with
    :func:`coerce_parameter` (so the plain papermill route may pass lists and dicts as JSON).

    Args:
        history: the cell sources executed so far, oldest first (default: IPython's ``In``).
        namespace: the page's globals to coerce in place (default: IPython's user namespace).
    Raises:
        ValueError: naming the unknown parameter(s) and the accepted ones.
    """
    if history is None or namespace is None:
        try:
            from IPython import get_ipython

            shell = get_ipython()
        except ImportError:
            shell = None
        if history is None:
            history = list(shell.user_ns.get("In", [])) if shell is not None else []
        if namespace is None and shell is not None:
            namespace = shell.user_ns
    history = [h for h in history if isinstance(h, str)]
    for i in range(len(history) - 1, 0, -1):
        if history[i].lstrip().startswith(_INJECTED_HEADER):
            injected = _assigned_names(history[i])
            declared = _assigned_names(history[i - 1])
            unknown = sorted(set(injected) - set(declared))
            if unknown:
                raise ValueError(f"unknown parameter(s) {unknown}: this page declares {sorted(declared)} in its "
                                 f"parameters cell (papermill -p NAME VALUE accepts only those)")
            if namespace is not None:
                defaults = _defaults(history[i - 1])
                for name in injected:
                    if name in namespace and name in defaults:
                        namespace[name] = coerce_parameter(namespace[name], defaults[name])
            return injected
    return []


def site_status(root: str | Path | None = None) -> dict[str, Any]:
    """What built this site, read from the executed pages in :data:`GENERATED_DIR`.

    For every executed notebook: the ``profile`` and ``dataset`` it ran with (papermill's
    recorded parameters over the defaults of its ``parameters`` cell). Returns ``profiles``
    and ``datasets`` (sorted unique values), ``pages`` (name -> {profile, dataset}) and
    ``indicative`` (True when any page ran a profile other than ``paper``/``fast`` or on
    generated data: :func:`dynn_lib.display.is_indicative`), ``tag`` (e.g. ``[smoke]``) and
    ``missing`` (the pages written as notices because their results were not published:
    :func:`write_notice_page`; in TOC order) and ``failed_checks``: the FAILs of the GPU self-check
    records that travel with the results the pages read (:func:`dynn_lib.gpu_checks.run_dir` of each
    page's ``results_dir``, profile and dataset; a relative folder is read from ``root``).
    """
    import ast

    from .display import is_indicative, profile_tag

    root = Path(root) if root is not None else repo_root()
    pages: dict[str, dict[str, Any]] = {}
    missing: list[str] = []
    for path in sorted((root / GENERATED_DIR).glob("*.ipynb")):
        if path.name.endswith((".partial.ipynb", ".failed.ipynb")):
            continue
        try:
            nb = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        values: dict[str, Any] = {}
        for cell in nb.get("cells", []):
            if cell.get("cell_type") == "code" and "parameters" in cell.get("metadata", {}).get("tags", []):
                src = "".join(cell.get("source", ""))
                with contextlib.suppress(SyntaxError):
                    for node in ast.parse(src).body:
                        if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name):
                            with contextlib.suppress(ValueError):
                                values[node.targets[0].id] = ast.literal_eval(node.value)
                break
        values.update(nb.get("metadata", {}).get("papermill", {}).get("parameters") or {})
        pages[path.stem] = {"profile": values.get("profile"), "dataset": values.get("dataset"),
                            "results_dir": values.get("results_dir")}
        if (nb.get("metadata", {}).get("dynn") or {}).get("missing_results"):
            missing.append(path.stem)
    profiles = sorted({str(p["profile"]) for p in pages.values() if p["profile"] is not None})
    datasets = sorted({str(p["dataset"]) for p in pages.values() if p["dataset"] is not None})
    indicative = any(is_indicative(p["profile"], p["dataset"]) for p in pages.values())
    tag = " ".join(dict.fromkeys(profile_tag(p["profile"], p["dataset"]) for p in pages.values()
                                 if profile_tag(p["profile"], p["dataset"])))
    with contextlib.suppress(OSError, ValueError, KeyError, TypeError, ImportError):  # no readable TOC (or no yaml): file-name order
        order = {n: i for i, n in enumerate(toc_notebooks(root))}
        missing.sort(key=lambda n: order.get(n, len(order)))
    return {"profiles": profiles, "datasets": datasets, "pages": pages, "indicative": indicative, "tag": tag,
            "missing": missing, "failed_checks": _failed_checks(root, pages.values())}


def _failed_checks(root: Path, pages: Iterable[Mapping[str, Any]]) -> list[str]:
    """The FAILs of the self-check records behind the results the executed pages read, once each."""
    from .gpu_checks import check_records, failed_checks, run_dir

    folders = dict.fromkeys(run_dir(root / p["results_dir"], p["profile"], p["dataset"]).resolve() for p in pages
                            if all(isinstance(p.get(k), str) for k in ("results_dir", "profile", "dataset")))
    return list(dict.fromkeys(f for folder in folders for f in failed_checks(check_records(folder))))


# ----------------------------------------------------------------------------------- building

def _jupyter_book_cmd() -> list[str]:
    sibling = Path(sys.executable).with_name("jupyter-book")
    if sibling.exists():
        return [str(sibling)]
    found = shutil.which("jupyter-book")
    if found:
        return [found]
    return [sys.executable, "-c", "from jupyter_book.cli.main import main; main()"]


def build_book(root: str | Path | None = None, results_dir: str | Path | None = None, strict: bool = True,
               *, parameters: Mapping[str, Any] | None = None, execute: bool = True,
               names: Sequence[str] | None = None, build_dir: str | Path | None = None,
               fresh: bool | None = None, timeout: float | None = None, log_output: bool = False,
               builder: str = "html", jobs: int = 1, allow_missing: bool = False) -> Path:
    """Execute the notebooks (unless ``execute=False``), then build the book; returns the HTML folder.

    Args:
        root: the book root (default: this repository).
        results_dir: injected as the ``results_dir`` parameter of every notebook (made absolute);
            None leaves each notebook's default.
        strict: ``--warningiserror --keep-going``: any Sphinx warning fails the build (after
            reporting all of them).
        parameters: further injected parameters (``profile``, ``dataset``, ``device``, ``seed``...).
        names: execute only these notebooks (the others must already exist in book/_generated).
        build_dir: ``--path-output`` (default: the root; the site lands in ``<build_dir>/_build/html``).
        fresh: rebuild every page (``--all``); default: same as ``strict``, so that warnings of
            unchanged pages are not hidden by Sphinx's cache.
        timeout: seconds per cell.
        jobs: notebooks executed at once (see :func:`execute_all`).
        allow_missing: pages whose results are not published become notice pages (see
            :func:`execute_all`); every page of the site then says which pages lack results.
    Raises:
        NotebookExecutionError, FileNotFoundError (a TOC page was never executed),
        subprocess.CalledProcessError (the build failed; its output was printed).
    """
    root = Path(root).resolve() if root is not None else repo_root()
    params = dict(parameters or {})
    if results_dir is not None:
        params["results_dir"] = str(Path(results_dir).resolve())
    if execute:
        execute_all(root, params, names, timeout=timeout, log_output=log_output, jobs=jobs,
                    allow_missing=allow_missing)
    absent = [n for n in toc_notebooks(root) if not (root / GENERATED_DIR / f"{n}.ipynb").exists()]
    if absent:
        raise FileNotFoundError(f"executed notebooks missing in {root / GENERATED_DIR}: {absent}; "
                                f"run build_book(execute=True) or `python -m dynn_lib.book` first")
    fresh = strict if fresh is None else fresh
    out = Path(build_dir).resolve() if build_dir is not None else root
    cmd = [*_jupyter_book_cmd(), "build", str(root), "--builder", builder, "--path-output", str(out)]
    if strict:
        cmd += ["--warningiserror", "--keep-going"]
    if fresh:
        cmd += ["--all"]
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, cwd=root)
    print(f"[book] jupyter-book build: {time.perf_counter() - t0:.1f}s", file=sys.stderr, flush=True)
    return out / "_build" / builder


# ----------------------------------------------------------------------------------- command line

def _parse_value(text: str) -> Any:
    import yaml

    return yaml.safe_load(text)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m dynn_lib.book", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--root", default=None, help="book root (default: this repository)")
    p.add_argument("--profile", default=None, help="injected `profile` (smoke or paper)")
    p.add_argument("--dataset", default=None, help="injected `dataset` (e.g. cifar10-jpeg)")
    p.add_argument("--results-dir", default=None, help="injected `results_dir` (made absolute)")
    p.add_argument("--device", default=None, help="injected `device` (cpu, cuda)")
    p.add_argument("--seed", type=int, default=None, help="injected `seed`")
    p.add_argument("-p", "--parameter", action="append", default=[], metavar="NAME=VALUE",
                   help="any other injected parameter; VALUE is read as YAML (repeatable)")
    p.add_argument("--only", default=None, help="comma-separated notebook names to execute")
    p.add_argument("--no-execute", action="store_true", help="build from the existing executed copies")
    p.add_argument("--execute-only", action="store_true", help="execute, do not build")
    p.add_argument("--no-strict", action="store_true", help="do not turn warnings into errors")
    p.add_argument("--build-dir", default=None, help="jupyter-book --path-output")
    p.add_argument("--timeout", type=float, default=None, help="seconds per cell")
    p.add_argument("--log-output", action="store_true", help="echo cell output while executing")
    p.add_argument("--jobs", type=int, default=1,
                   help="notebooks executed at once (default 1; for pages that render published results)")
    p.add_argument("--allow-missing", action="store_true",
                   help="a page whose results are not published (with -p compute=False) becomes a notice page "
                        "saying what is missing, instead of failing")
    a = p.parse_args(argv)
    try:
        check_jobs(a.jobs)
    except ValueError as e:
        p.error(str(e))

    params: dict[str, Any] = {k: v for k, v in (("profile", a.profile), ("dataset", a.dataset),
                                                ("device", a.device), ("seed", a.seed)) if v is not None}
    for item in a.parameter:
        name, sep, value = item.partition("=")
        if not sep or not name:
            p.error(f"-p expects NAME=VALUE, got {item!r}")
        params[name.strip()] = _parse_value(value)
    names = [n.strip() for n in a.only.split(",") if n.strip()] if a.only else None
    try:
        if a.execute_only:
            root = Path(a.root).resolve() if a.root else repo_root()
            if a.results_dir is not None:
                params["results_dir"] = str(Path(a.results_dir).resolve())
            execute_all(root, params, names, timeout=a.timeout, log_output=a.log_output, jobs=a.jobs,
                        allow_missing=a.allow_missing)
            return 0
        html = build_book(a.root, a.results_dir, strict=not a.no_strict, parameters=params,
                          execute=not a.no_execute, names=names, build_dir=a.build_dir,
                          timeout=a.timeout, log_output=a.log_output, jobs=a.jobs, allow_missing=a.allow_missing)
    except (NotebookExecutionError, FileNotFoundError, ValueError) as e:
        print(f"dynn-book: error: {e}", file=sys.stderr)
        return 1
    except subprocess.CalledProcessError as e:
        print(f"dynn-book: error: jupyter-book build failed (exit {e.returncode}); see the log above",
              file=sys.stderr)
        return 1
    print(f"[book] site: {html / 'index.html'}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

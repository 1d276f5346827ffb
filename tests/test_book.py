"""The book: sources wired to the TOC, notebooks executed by papermill, a clean -W build, every
page checked in headless Chromium (figures loaded, tables, no error cells, offline widgets).

Environment knobs:
    DYNN_BOOK_HTML=_build/html   check an existing build instead of building (fast)
    DYNN_BOOK_PROFILE=smoke      profile injected when building (default smoke)
    DYNN_BOOK_EXECUTE=0          build from the executed copies already in book/_generated
    DYNN_CHROMIUM=/path          the browser (default: chromium on PATH)
Screenshots go to test-artifacts/screenshots/<page>.png, page reports to test-artifacts/pages/.
"""
from __future__ import annotations

import html
import json
import math
import os
import re
import sys
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote

import pytest

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "test-artifacts"
sys.path.insert(0, str(Path(__file__).resolve().parent))

from browser import Browser, find_chromium, page_name, serve  # noqa: E402

from dynn_lib.book import COMMON_PARAMETERS, GENERATED_DIR, source_for, toc_files, toc_notebooks  # noqa: E402

try:
    PAGES = toc_files(ROOT)
except ImportError:  # PyYAML comes with the `book` extra; without it only the wiring tests skip
    PAGES = []


# ------------------------------------------------------------------ fast: wiring of sources and TOC

@pytest.mark.book
def test_every_generated_page_has_a_text_notebook_with_parameters():
    pytest.importorskip("jupytext")
    pytest.importorskip("papermill")
    from dynn_lib.book import notebook_parameters

    names = toc_notebooks(ROOT)
    assert names, "the TOC lists no generated notebook"
    for name in names:
        src = source_for(name, ROOT)
        assert src.is_file(), f"{GENERATED_DIR / name} is in _toc.yml but {src} does not exist"
        head = src.read_text(encoding="utf-8")[:400]
        assert "format_name: myst" in head, f"{src} is not a jupytext MyST notebook"
        declared = notebook_parameters(src)
        missing = [p for p in COMMON_PARAMETERS if p not in declared]
        assert not missing, f"{src}: parameters cell lacks {missing}"


@pytest.mark.book
def test_static_pages_exist():
    for doc in PAGES:
        if not doc.startswith(GENERATED_DIR.as_posix()):
            assert (ROOT / f"{doc}.md").is_file() or (ROOT / f"{doc}.ipynb").is_file(), doc


def _text_notebook(code: str, parameters: str = "seed = 0") -> str:
    """A jupytext MyST notebook: a parameters cell (``parameters``), then one cell of ``code``."""
    return ("---\njupytext:\n  formats: md:myst\n  text_representation:\n    extension: .md\n"
            "    format_name: myst\nkernelspec:\n  display_name: Python 3\n  language: python\n"
            "  name: python3\n---\n\n# Page\n\n```{code-cell} ipython3\n:tags: [parameters]\n\n"
            f"{parameters}\n```\n\n```{{code-cell}} ipython3\n{code}\n```\n")


@pytest.mark.book
def test_execute_notebook_injects_and_rejects_unknown(tmp_path):
    pytest.importorskip("papermill")
    from dynn_lib.book import execute_notebook

    src = tmp_path / "tiny.md"
    src.write_text(_text_notebook("print(seed * 2)"), encoding="utf-8")
    with pytest.raises(ValueError, match="does not declare"):
        execute_notebook(src, tmp_path / "out.ipynb", {"sede": 1})
    out = execute_notebook(src, tmp_path / "out.ipynb", {"seed": 21})
    nb = json.loads(out.read_text())
    texts = ["".join(o.get("text", "")) for c in nb["cells"] for o in c.get("outputs", [])]
    assert "42\n" in texts
    assert any("injected-parameters" in c["metadata"].get("tags", []) for c in nb["cells"])


@pytest.mark.book
def test_a_kernel_that_never_started_is_started_again_but_a_failed_cell_is_not_rerun(tmp_path, monkeypatch):
    """Two kernels started at once from separate processes can be handed the same TCP port, and the
    second dies before answering (seen once in a smoke build): execute_notebook starts another
    kernel, up to KERNEL_START_ATTEMPTS in all; an error raised by a cell (even one with the same
    words) is never retried, since the page's cells already ran."""
    papermill = pytest.importorskip("papermill")
    from dynn_lib import book

    real, calls = papermill.execute_notebook, []
    died = RuntimeError("Kernel died before replying to kernel_info")

    def flaky(failures):
        def run(*args, **kwargs):
            calls.append(1)
            if len(calls) <= failures:
                raise died
            return real(*args, **kwargs)
        return run

    src = tmp_path / "tiny.md"
    src.write_text(_text_notebook("print(seed * 2)"), encoding="utf-8")
    monkeypatch.setattr(papermill, "execute_notebook", flaky(book.KERNEL_START_ATTEMPTS - 1))
    out = book.execute_notebook(src, tmp_path / "out.ipynb", {"seed": 21})
    assert _outputs(out) == ["42\n"] and len(calls) == book.KERNEL_START_ATTEMPTS

    calls.clear()
    monkeypatch.setattr(papermill, "execute_notebook", flaky(book.KERNEL_START_ATTEMPTS))
    with pytest.raises(book.NotebookExecutionError) as e:
        book.execute_notebook(src, tmp_path / "out2.ipynb", {"seed": 21})
    assert e.value.cause is died and len(calls) == book.KERNEL_START_ATTEMPTS
    assert not (tmp_path / "out2.ipynb").exists()

    calls.clear()
    src.write_text(_text_notebook("raise RuntimeError('Kernel died before replying to kernel_info')"),
                   encoding="utf-8")
    monkeypatch.setattr(papermill, "execute_notebook", flaky(0))
    with pytest.raises(book.NotebookExecutionError, match="kernel_info"):
        book.execute_notebook(src, tmp_path / "out3.ipynb", {"seed": 21})
    assert len(calls) == 1
    assert book.kernel_start_failed(died) and not book.kernel_start_failed(ValueError(str(died)))


def _mini_book(root: Path, pages: dict[str, str], parameters: str = "seed = 0") -> Path:
    """A book root whose TOC lists ``pages`` (name -> the code of its one cell after the parameters)."""
    (root / "notebooks").mkdir(parents=True)
    for name, code in pages.items():
        (root / "notebooks" / f"{name}.md").write_text(_text_notebook(code, parameters), encoding="utf-8")
    (root / "_toc.yml").write_text("format: jb-book\nroot: intro\nchapters:\n" + "".join(
        f"  - file: {GENERATED_DIR.as_posix()}/{n}\n" for n in pages))
    return root


def _outputs(path: Path) -> list[str]:
    nb = json.loads(path.read_text())
    return ["".join(o.get("text", "")) for c in nb["cells"] for o in c.get("outputs", [])]


@pytest.mark.book
def test_pages_executed_side_by_side_equal_pages_executed_in_turn(tmp_path):
    """``execute_all(jobs=2)`` (what ``dynn reproduce`` uses on 2 cores): the same executed pages as
    one after another, kernels told to use cores // jobs threads; a failing page is reported like
    in the serial run (its failed copy named, the others still run with keep_going), and without
    keep_going no page starts after a failure."""
    pytest.importorskip("papermill")
    from dynn_lib.book import NotebookExecutionError, check_jobs, execute_all

    pages = {"a": "import os\nprint(seed * 2, os.environ.get('OMP_NUM_THREADS'))", "b": "raise KeyError('boom')",
             "c": "print(seed + 1)"}
    runs = {}
    for jobs in (1, 2):
        root = _mini_book(tmp_path / f"j{jobs}", pages)
        with pytest.raises(NotebookExecutionError, match="boom") as e:
            execute_all(root, {"seed": 21}, jobs=jobs, keep_going=True)
        assert e.value.failed_path == root / GENERATED_DIR / "b.failed.ipynb" and e.value.failed_path.is_file()
        report = json.loads((root / GENERATED_DIR / "_execution.json").read_text())
        assert {n: r["ok"] for n, r in report.items()} == {"a": True, "b": False, "c": True}
        assert "KeyError" in report["b"]["error"] and "b.failed.ipynb" in report["b"]["error"]
        runs[jobs] = {n: _outputs(root / GENERATED_DIR / f"{n}.ipynb") for n in ("a", "c")}
    threads = str(max(1, (os.cpu_count() or 1) // 2))
    assert runs[1] == {"a": [f"42 {os.environ.get('OMP_NUM_THREADS')}\n"], "c": ["22\n"]}
    assert runs[2] == {"a": [f"42 {threads}\n"], "c": ["22\n"]}

    # b fails while a runs (a ends only once b's failed copy exists): c, next in line, never starts
    failed = tmp_path / "stop" / GENERATED_DIR / "b.failed.ipynb"
    wait_b = f"import pathlib, time\nt = time.time()\nwhile not pathlib.Path({str(failed)!r}).exists() and time.time() - t < 120:\n    time.sleep(0.1)"
    root = _mini_book(tmp_path / "stop", {"b": pages["b"], "a": wait_b, "c": pages["c"]})
    with pytest.raises(NotebookExecutionError, match="boom"):
        execute_all(root, {"seed": 21}, jobs=2)
    report = json.loads((root / GENERATED_DIR / "_execution.json").read_text())
    assert "c" not in report and not (root / GENERATED_DIR / "c.ipynb").exists()  # started after b failed: no
    for bad in (0, True, 1.5):
        with pytest.raises(ValueError, match=re.escape(f"integer >= 1, got {bad!r}")):
            check_jobs(bad)


@pytest.mark.book
def test_pages_without_published_results_become_notices_with_allow_missing(tmp_path):
    """A page that stops only because its results are not published (``NotPublishedError``, what
    ``runner.publish(compute=False)`` raises) fails the build by default; with ``allow_missing`` it is
    written as a notice page (its opening text, then what is missing, the results folder's absolute
    path shortened to its name) that ``site_status`` lists, in turn and side by side alike. Any
    other error still fails its page."""
    pytest.importorskip("papermill")
    from dynn_lib.book import NotebookExecutionError, execute_all, site_status

    results = tmp_path / "results"
    # the kernel raises an error of that name (the page imports runner.NotPublishedError; a class of the
    # same name here spares each kernel the PyTorch import: papermill reports errors by name)
    missing = ("class NotPublishedError(FileNotFoundError):\n    pass\n"
               f"raise NotPublishedError('compute=False: no published rq2 result of this configuration in '\n"
               f"                        '{results}/smoke/x/rq2 (no record.json there); run `dynn run rq2`')")
    pages = {"a": "print(seed + 1)", "m": missing, "b": "raise FileNotFoundError('broken')"}
    params = {"seed": 1, "results_dir": str(results)}
    for jobs in (1, 2):
        root = _mini_book(tmp_path / f"j{jobs}", pages, parameters='seed = 0\nresults_dir = "r"')
        if jobs == 1:
            with pytest.raises(NotebookExecutionError, match="no published rq2 result"):
                execute_all(root, params, names=["m"])
        names = ["a", "m", "b"] if jobs == 1 else ["m", "b"]  # page a: pages with results run as before
        with pytest.raises(NotebookExecutionError, match="broken"):
            execute_all(root, params, names, jobs=jobs, keep_going=True, allow_missing=True)
        gen = root / GENERATED_DIR
        report = json.loads((gen / "_execution.json").read_text())
        want = {"a": (True, False), "m": (True, True), "b": (False, False)}
        assert {n: (r["ok"], bool(r.get("missing_results"))) for n, r in report.items()} == \
            {n: want[n] for n in names}
        assert not (gen / "m.failed.ipynb").exists() and (gen / "b.failed.ipynb").exists()
        nb = json.loads((gen / "m.ipynb").read_text())
        assert [c["cell_type"] for c in nb["cells"]] == ["markdown", "markdown"]
        assert "".join(nb["cells"][0]["source"]).startswith("# Page")
        notice = "".join(nb["cells"][1]["source"])
        assert notice.startswith(":::{warning}") and "No published rq2 result of this configuration in " \
            "results/smoke/x/rq2 (no record.json there)" in notice and "`dynn run rq2`" in notice
        assert str(tmp_path) not in notice
        assert nb["metadata"]["papermill"]["parameters"] == params
        assert nb["metadata"]["dynn"]["missing_results"].startswith("no published rq2 result")
        assert site_status(root)["missing"] == ["m"]
        assert jobs == 2 or _outputs(gen / "a.ipynb") == ["2\n"]
    with pytest.raises(TypeError, match="allow_missing must be True or False"):
        execute_all(root, params, allow_missing="yes")


def _dynn_site():
    """book/_ext/dynn_site.py loaded as a module (it is a Sphinx extension, not a package module)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("dynn_site_under_test", ROOT / "book" / "_ext" / "dynn_site.py")
    site = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(site)
    return site


def test_a_partial_build_says_so_at_the_top_of_every_page():
    """book/_ext/dynn_site.py: pages written as notices (``site_status()["missing"]``) are linked from
    a banner on every page, after the profile banner of a smoke build; a complete build has none."""
    from types import SimpleNamespace

    site = _dynn_site()
    title = SimpleNamespace(astext=lambda: "RQ1: <transfer>")
    app = SimpleNamespace(env=SimpleNamespace(titles={"book/_generated/rq1_transferability": title}),
                          builder=SimpleNamespace(get_relative_uri=lambda frm, to: f"../{to}.html"))

    def body(status: dict) -> str:
        app._dynn_status = status
        ctx = {"body": "<p>page</p>"}
        site._add_banner(app, "book/intro", "page.html", ctx, None)
        return ctx["body"]

    partial = body({"indicative": False, "missing": ["rq1_transferability", "appendix"]})
    assert partial.startswith('<div class="dynn-missing-banner" role="note"><b>Partial build.</b>')
    assert ('lacks results that 2 pages need: <a href="../book/_generated/rq1_transferability.html">RQ1: '
            '&lt;transfer&gt;</a>; <a href="../book/_generated/appendix.html">appendix</a>.') in partial
    assert partial.endswith("<p>page</p>")
    assert body({"indicative": False, "missing": []}) == "<p>page</p>"
    both = body({"indicative": True, "missing": ["appendix"], "profiles": ["smoke"], "datasets": ["synthetic"],
                 "tag": "[smoke]"})
    assert both.startswith('<div class="dynn-profile-banner"') and "1 page needs: <a" in both
    assert both.index("dynn-profile-banner") < both.index("dynn-missing-banner") < both.index("<p>page</p>")


def test_a_failed_self_check_behind_the_results_says_so_on_every_page(tmp_path):
    """site_status reads the self-check records that travel with the results the executed pages read
    (results_dir/profile/dataset/gpu-checks/, as gpu_run.sh puts them), not the committed ones;
    dynn_site then opens every page with a banner naming the failed checks and linking the methods page."""
    import shutil
    from types import SimpleNamespace

    from dynn_lib import gpu_checks
    from dynn_lib.book import GENERATED_DIR, site_status

    root = tmp_path / "site"
    gen = root / GENERATED_DIR
    gen.mkdir(parents=True)
    for name in ("methods", "rq1_transferability"):
        nb = {"cells": [], "metadata": {"papermill": {"parameters": {
            "profile": "fast", "dataset": "cifar10-jpeg", "results_dir": "results"}}}, "nbformat": 4, "nbformat_minor": 5}
        (gen / f"{name}.ipynb").write_text(json.dumps(nb))
    assert site_status(root)["failed_checks"] == []
    h100 = ROOT / gpu_checks.GPU_CHECKS_DIR / "2026-12-05-nvidia-h100-80gb-hbm3"
    shutil.copytree(h100, root / gpu_checks.GPU_CHECKS_DIR / h100.name)  # committed: not the run's own
    assert site_status(root)["failed_checks"] == []
    shutil.copytree(h100, gpu_checks.run_dir(root / "results", "fast", "cifar10-jpeg") / h100.name)
    failed = site_status(root)["failed_checks"]
    assert failed == [f"{h100.name}: forward/mobilenet/cnn/grad_cosine"]

    site = _dynn_site()
    app = SimpleNamespace(env=SimpleNamespace(titles={"book/_generated/methods": "Methods"}),
                          builder=SimpleNamespace(get_relative_uri=lambda frm, to: f"../{to}.html"),
                          _dynn_status={"indicative": False, "missing": [], "failed_checks": failed})
    ctx = {"body": "<p>page</p>"}
    site._add_banner(app, "book/intro", "page.html", ctx, None)
    assert ctx["body"].startswith('<div class="dynn-check-banner" role="note"><b>The GPU self-check failed.</b>')
    assert (f"failed 1 check: {h100.name}: forward/mobilenet/cnn/grad_cosine. Read what it means on "
            '<a href="../book/_generated/methods.html">the methods page</a> (Table M.4)') in ctx["body"]
    assert ctx["body"].endswith("<p>page</p>")


def test_code_in_the_books_own_tables_breaks_at_its_punctuation_only():
    """book/_ext/dynn_site.py: inside a Markdown table, a code word gets a <wbr> after '_', ',', '/',
    '=' and a '.' before a letter (never inside a number such as 0.9); code outside those tables
    and the result tables (dynn-table) are left alone."""

    site = _dynn_site()
    words = '<span class="pre">attacks.early_attack.success</span> <span class="pre">tau=&quot;[0.9,</span>'
    broken = ('<span class="pre">attacks.<wbr>early_<wbr>attack.<wbr>success</span> '
              '<span class="pre">tau=<wbr>&quot;[0.9,</span>')
    page = ('<p><code>{}</code></p><table class="table"><tr><td><code>{}</code></td></tr></table>'
            '<table class="dataframe dynn-table"><tr><td><code>{}</code></td></tr></table>')
    ctx = {"body": page.format(words, words, words)}
    site._code_breaks(None, "book/_generated/methods", "page.html", ctx, None)
    assert ctx["body"] == page.format(words, broken, words)
    ctx = {"body": "<p>no table</p>"}
    site._code_breaks(None, "book/intro", "page.html", ctx, None)
    assert ctx["body"] == "<p>no table</p>"


def test_default_jobs_is_one_page_per_core_up_to_four(monkeypatch):
    from dynn_lib import book
    for cores, pages, want in ((2, 8, 2), (16, 8, 4), (1, 8, 1), (16, 1, 1), (None, 8, 1)):
        monkeypatch.setattr(book.os, "cpu_count", lambda: cores)
        assert book.default_jobs(pages) == want, (cores, pages)


# ------------------------------------------------------------------ slow: build and browse

TINY = {"n_train": 32, "n_query": 8, "n_eval": 8, "ea_images": 4, "ea_iters": 5, "attack_steps": 2}
"""The book's run at sizes CI can afford (the full smoke profile takes over ten minutes on 2 CPU cores).
n_query sets the surrogates' training set (11 x n_query x 0.9 images) and n_eval every attack table's
images, the two largest costs here: 8 of each (16 before) cut the run's experiments by a fifth
(65 -> 52 s, measured back to back on 2 cores), and every page still has rows to show."""


@pytest.fixture(scope="session")
def book_run(tmp_path_factory) -> tuple[Path, Path | None]:
    """(the built site, the artefact store its run trained into; None for DYNN_BOOK_HTML)."""
    env = os.environ.get("DYNN_BOOK_HTML")
    if env:
        html = Path(env).resolve()
        if not (html / "index.html").is_file():
            pytest.fail(f"DYNN_BOOK_HTML={env} holds no built site (index.html missing)")
        return html, None
    for mod in ("jupyter_book", "papermill", "jupytext"):
        pytest.importorskip(mod)
    from dynn_lib.reproduce import reproduce

    # the real `dynn reproduce --profile smoke` path on generated data, at tiny sizes
    tmp = tmp_path_factory.mktemp("book-run")
    html = reproduce("smoke", datasets=["synthetic"], device="cpu", results_dir=tmp / "results",
                     store=tmp / "store", overrides=TINY, build=True,
                     execute=os.environ.get("DYNN_BOOK_EXECUTE", "1") != "0")
    return html, tmp / "store"


@pytest.fixture(scope="session")
def book_html(book_run) -> Path:
    return book_run[0]


@pytest.fixture(scope="session")
def site_url(book_html):
    with serve(book_html) as base:
        yield base


@pytest.fixture(scope="session")
def browser():
    if find_chromium() is None:
        pytest.skip("Chromium not found: install it (Debian: apt-get install -y chromium) or set "
                    "DYNN_CHROMIUM to a Chromium/Chrome executable")
    with Browser() as b:
        yield b


class _AssetParser(HTMLParser):
    """Collects what a page loads by itself: script/img/iframe/source src, stylesheet/icon/preload href."""

    LINK_RELS = {"stylesheet", "preload", "modulepreload", "icon", "shortcut"}

    def __init__(self):
        super().__init__()
        self.assets: list[str] = []
        self.links: list[str] = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag in ("script", "img", "iframe", "source", "embed") and a.get("src"):
            self.assets.append(a["src"])
        if tag == "a" and a.get("href"):
            self.links.append(a["href"])
        elif tag == "link" and set((a.get("rel") or "").lower().split()) & self.LINK_RELS and a.get("href"):
            self.assets.append(a["href"])


def _is_off_site(url: str) -> bool:
    return url.lower().startswith(("http:", "https:", "//"))


@pytest.mark.slow
@pytest.mark.book
def test_book_run_published_rq1_to_rq3_for_every_pair_on_trained_models(book_run):
    """The book's run is RQ1-RQ3 on really trained networks (every architecture, all six pairs):
    each summary holds one row per pair (or setting), attack and ε of its record, every RQ3 row
    has an early-exit network, and the findings computed from the published per-image tables are
    verdicts of the ledger's vocabulary."""
    from dynn_lib import verdicts
    from dynn_lib.blackbox import PAIRS
    from dynn_lib.experiments import rq1, rq3, runner

    if book_run[1] is None:
        pytest.skip("DYNN_BOOK_HTML checks a built site: no run to read")
    results = book_run[1].parent / "results"
    out = {q: runner.load_results(results, "smoke", "synthetic", q) for q in ("rq1", "rq2", "rq3")}
    s1 = out["rq1"]["summary"]
    cells = len(set(s1["attack"])) * len(set(s1["eps_255"]))
    assert set(s1["attack"]) == {"fgsm", "pgd"} and cells == 2
    for q, by in (("rq1", "direction"), ("rq2", "setting"), ("rq3", "setting")):  # RQ2/3: 3 white-box, 3 S2D
        rows = out[q]["summary"].groupby([by, "pair"]).size()
        assert len(rows) == len(PAIRS) and (rows == cells).all(), (q, rows)
    assert len(out["rq1"]["exit_used"]) > 0 and (out["rq3"]["summary"]["num_exits"] > 1).all()
    found = [rq1.finding_1(out["rq1"]["per_image"]), rq3.finding_6(out["rq3"]["per_image"]),
             rq3.finding_7(out["rq3"]["per_image"])]
    assert all(verdicts.family(f["verdict"]) in verdicts.VERDICTS for f in found), [f["verdict"] for f in found]
    zoo = runner.load_results(results, "smoke", "synthetic", "zoo")["models"]  # τ's rule: said per DyNN
    dyn = zoo["kind"] != "cnn"
    assert zoo.loc[dyn, "tau_meets_rule"].map(type).eq(bool).all() and zoo.loc[~dyn, "tau_meets_rule"].isna().all()


@pytest.mark.slow
@pytest.mark.book
def test_built_site_loads_nothing_from_outside(book_html):
    offenders = {}
    for page in sorted(book_html.rglob("*.html")):
        parser = _AssetParser()
        parser.feed(page.read_text(encoding="utf-8", errors="replace"))
        hits = [u for u in parser.assets if _is_off_site(u)]
        if hits:
            offenders[str(page.relative_to(book_html))] = hits
    assert not offenders, f"pages referencing scripts/styles/images off the site: {offenders}"


@pytest.mark.slow
@pytest.mark.book
def test_built_site_local_links_resolve(book_html):
    """Every relative <a href> (navigation, citations, download buttons) names a file of the site."""
    broken = {}
    for page in sorted(book_html.rglob("*.html")):
        parser = _AssetParser()
        parser.feed(page.read_text(encoding="utf-8", errors="replace"))
        for href in parser.links:
            if href.startswith(("#", "mailto:", "javascript:")) or re.match(r"^[a-z][a-z0-9+.-]*:", href, re.I):
                continue
            target = href.split("#", 1)[0].split("?", 1)[0]
            if target and not (page.parent / unquote(target)).exists():
                broken.setdefault(str(page.relative_to(book_html)), []).append(href)
    assert not broken, f"relative links to missing files: {broken}"
    assert (book_html / "_static" / "jupyter-widgets" / "embed.js").is_file()
    assert (book_html / "_static" / "mathjax" / "tex-chtml-full.js").is_file()


@pytest.mark.slow
@pytest.mark.book
@pytest.mark.parametrize("doc", PAGES, ids=[page_name(d) for d in PAGES])
def test_page_renders_in_chromium(doc, site_url, browser):
    name = page_name(doc)
    report = browser.check_page(f"{site_url}{doc}.html", ARTIFACTS / "screenshots" / f"{name}.png")
    (ARTIFACTS / "pages").mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / "pages" / f"{name}.json").write_text(json.dumps(report.as_dict(), indent=2))
    problems = report.problems(rq_page=name.startswith("rq"))
    assert not problems, f"{doc}:\n  " + "\n  ".join(problems)
    # the page's own (Markdown) tables fit the text column at 1280 px: their code breaks at its
    # punctuation (book/_ext/dynn_site.py); only result tables of many columns may scroll sideways
    own = [w for w in report.wide_tables if not w["result"]]
    assert not own, f"{doc}: tables of the page's own text wider than their column: {own}"


# ------------------------------------------------------------------ papermill as users call it (issue 11.7)

def _plain_route(tmp_path, page: str, *params: str):
    """``jupytext --to ipynb notebooks/<page>.md`` then ``papermill <page>.ipynb out.ipynb -p ...``, as the
    landing page tells readers (run in ``tmp_path``; the CLIs of this interpreter's environment)."""
    import subprocess

    for mod in ("jupytext", "papermill"):
        pytest.importorskip(mod)
    nb = tmp_path / f"{page}.ipynb"
    subprocess.run([sys.executable, "-m", "jupytext", "--to", "ipynb", str(source_for(page, ROOT)), "-o", str(nb)],
                   check=True, capture_output=True, text=True)
    env = {**os.environ, "DYNN_PROGRESS": "0"}
    return subprocess.run([sys.executable, "-m", "papermill", str(nb), str(tmp_path / "out.ipynb"), *params],
                          cwd=tmp_path, capture_output=True, text=True, env=env, timeout=900)


@pytest.mark.slow  # a kernel start and a jupytext conversion: 34 s on a loaded 2-core machine
@pytest.mark.book
def test_plain_papermill_rejects_an_unknown_parameter_with_the_accepted_list(tmp_path):
    run = _plain_route(tmp_path, "methods", "-p", "sede", "1")
    assert run.returncode != 0
    log = run.stdout + run.stderr
    assert "unknown parameter(s) ['sede']" in log and "'seed'" in log and "'profile'" in log, log[-2000:]


@pytest.mark.slow
@pytest.mark.book
def test_a_page_with_compute_off_renders_only_published_results(tmp_path):
    """``-p compute False`` (what ``dynn reproduce --no-experiments`` passes): with nothing published
    the page stops, naming the folder and the command, and trains nothing. It stops with the
    ``NotPublishedError`` by which ``execute_all(allow_missing=True)`` tells a missing result from a
    broken page (papermill reports the kernel's error by that name)."""
    run = _plain_route(tmp_path, "rq2_efficiency", "-p", "profile", "smoke", "-p", "dataset", "synthetic",
                       "-p", "device", "cpu", "-p", "results_dir", str(tmp_path / "results"),
                       "-p", "store", str(tmp_path / "store"), "-p", "compute", "False")
    assert run.returncode != 0
    log = run.stdout + run.stderr
    assert "compute=False: no published rq2 result" in log and "dynn run rq2" in log, log[-3000:]
    assert "NotPublishedError" in log, log[-3000:]
    assert not list(tmp_path.rglob("*.pt"))


@pytest.mark.slow
@pytest.mark.book
def test_plain_papermill_route_runs_a_page_with_new_parameters(tmp_path, book_run):
    """A tiny synthetic RQ1 through plain papermill: lists and dicts passed as JSON text arrive as lists
    and dicts (``-p eps_255 "[4]"``), and the published table holds exactly the requested budget.
    The page trains into the book run's store (same sizes), so it finds those models and surrogates
    and computes only its new attack tables (a fresh store: about 35 s more on 2 cores)."""
    from dynn_lib.experiments import runner

    store = book_run[1] or tmp_path / "store"
    run = _plain_route(tmp_path, "rq1_transferability", "-p", "profile", "smoke", "-p", "dataset", "synthetic",
                       "-p", "device", "cpu", "-p", "results_dir", str(tmp_path / "results"),
                       "-p", "store", str(store), "-p", "eps_255", "[4]", "-p", "attacks", '["fgsm"]',
                       "-p", "overrides", json.dumps(TINY))
    assert run.returncode == 0, (run.stdout + run.stderr)[-3000:]
    summary = runner.load_results(tmp_path / "results", "smoke", "synthetic", "rq1")["summary"]
    assert sorted(set(summary["eps_255"].round(6))) == [4.0] and set(summary["attack"]) == {"fgsm"}
    out = json.loads((tmp_path / "out.ipynb").read_text())
    html = "".join("".join(o.get("data", {}).get("text/html", "")) for c in out["cells"] for o in c.get("outputs", []))
    assert "dynn-verdict" in html and "[smoke · generated data]" in html  # findings as tagged boxes


@pytest.mark.slow  # a kernel start and a jupytext conversion; nothing is computed
@pytest.mark.book
def test_appendix_shows_a_second_datasets_rq1_with_its_surrogates(tmp_path, book_run):
    """The appendix with ``secondary_dataset`` set (what ``dynn reproduce`` passes when a second
    dataset ran) renders that dataset's RQ1: Figure A.2's values (Table A.2) and its early-exit
    surrogates as deployed (Table A.3, one row per DyNN surrogate, and the sentence on the fallback
    τ). The book run's synthetic results stand in for Tiny ImageNet (compute off: rendered only)."""
    from dynn_lib import plots
    from dynn_lib.experiments import rq1, runner

    store = book_run[1]
    if store is None:
        pytest.skip("DYNN_BOOK_HTML names a built site without the results of its run")
    results = store.parent / "results"
    run = _plain_route(tmp_path, "appendix", "-p", "profile", "smoke", "-p", "dataset", "synthetic",
                       "-p", "secondary_dataset", "synthetic", "-p", "device", "cpu",
                       "-p", "results_dir", str(results), "-p", "store", str(store), "-p", "compute", "False",
                       "-p", "overrides", json.dumps(TINY))
    assert run.returncode == 0, (run.stdout + run.stderr)[-3000:]
    out = json.loads((tmp_path / "out.ipynb").read_text())
    shown = "".join("".join(o.get("data", {}).get(kind, "")) for c in out["cells"] for o in c.get("outputs", [])
                    for kind in ("text/html", "text/markdown"))
    assert "Table A.2. The values of Figure A.2" in shown and "Table A.3. The early-exit surrogates" in shown
    sur = runner.load_results(results, "smoke", "synthetic", "rq1")["surrogates"]
    assert len(sur) == 3  # the DyNN surrogates of the RQ1 pairs
    cells = html.unescape(re.sub(r"<[^>]+>", "", shown))  # a pair's cell holds its halves in two spans
    assert all(plots.pretty_pair(p) in cells for p in sur["pair"]), list(sur["pair"])
    assert rq1.fallback_note(sur) in shown
    assert "Table A.4. Mean PSNR" in shown and "Table A.5. The values of Figure A.5" in shown


@pytest.mark.slow  # a kernel, a jupytext conversion and nine tiny trainings: about a minute on 2 cores
@pytest.mark.book
def test_model_zoo_page_sets_fast_beside_paper(tmp_path):
    """The model-zoo page at ``fast`` (the branch only a GPU run's book takes: floors judged,
    no smoke tag) with a ``paper`` zoo of the same dataset in the results folder shows both runs
    side by side (Table Z.3); the paper zoo is this run's table with other accuracies, written as
    a published result would be."""
    import pandas as pd

    from dynn_lib.experiments import runner

    results = tmp_path / "results"
    paper = pd.DataFrame([{"dataset": "synthetic", "arch": a, "kind": k, "exits": 1, "params": 1, "full_macs": 1,
                           "train_seconds": 1.0, "seconds_per_epoch": 1.0, "seconds_shared": False, "epochs": 100,
                           "n_train": 32, "device": "GPU", "exit_accuracy": [0.5, 0.75], "n_eval": 16,
                           "tau": 0.9 if k != "cnn" else math.nan, "early_exit_accuracy": 0.625, "mean_exit": 1.0,
                           "mean_macs": 1.0, "macs_ratio": 0.5}
                          for a in ("vgg16", "resnet56", "mobilenet") for k in ("cnn", "sdn", "ic_only")])
    runner.write_results(runner.results_path(results, "paper", "synthetic", "zoo"), {"models": paper},
                         {"config": {"profile": {"name": "paper"}}, "git_commit": "feedfacecafe0000"})
    run = _plain_route(tmp_path, "model_zoo", "-p", "profile", "fast", "-p", "dataset", "synthetic",
                       "-p", "device", "cpu", "-p", "results_dir", str(results), "-p", "store", str(tmp_path / "store"),
                       "-p", "overrides", json.dumps({**TINY, "cnn_epochs": 1, "ic_epochs": 1}))
    assert run.returncode == 0, (run.stdout + run.stderr)[-3000:]
    out = json.loads((tmp_path / "out.ipynb").read_text())
    html = "".join("".join(o.get("data", {}).get("text/html", "")) for c in out["cells"] for o in c.get("outputs", []))
    assert "Table Z.3. The same models trained with the fast schedule and the paper recipe" in html
    assert "final exit % paper" in html and "final exit: fast − paper" in html and "feedfacecafe" in html
    assert "75.0 [" in re.sub(r"<[^>]+>", "", html)  # the interval's bracket is its own span on the page
    assert "(Wilson for an accuracy; Newcombe for the difference)" in html
    assert "[smoke" not in html and "Table Z.2." not in html  # synthetic data: no floor to judge


# ------------------------------------------------------------------ the library page's scripts

@pytest.mark.slow  # trains two smoke models and runs the Early Attack for 200 iterations: about a minute on 2 cores
def test_library_page_scripts_run_as_written(tmp_path):
    """book/library.md: its Python blocks, pasted one after another into one script and run in a
    fresh folder as a reader would (on cifar10-jpeg when DYNN_DATA_DIR is set, else on generated
    images), finish, print what the page says they print, and their numbers are coherent."""
    import subprocess

    blocks = re.findall(r"```python\n(.*?)```", (ROOT / "book" / "library.md").read_text(), re.S)
    assert len(blocks) == 2, "the page's Python blocks changed: update this test's expectations"
    script = "\n".join(blocks)
    if not os.environ.get("DYNN_DATA_DIR"):
        script = script.replace('"cifar10-jpeg"', '"synthetic"')
    (tmp_path / "script.py").write_text(script)
    run = subprocess.run([sys.executable, "script.py"], cwd=tmp_path, capture_output=True, text=True, timeout=1200,
                         env={**os.environ, "DYNN_PROGRESS": "0"})
    assert run.returncode == 0, (run.stdout + run.stderr)[-3000:]
    out = run.stdout
    acc, mean_exit, macs, full = map(float, re.search(
        r"accuracy ([\d.]+) %, mean exit ([\d.]+), mean MMACs ([\d.]+) of ([\d.]+)", out).groups())
    assert 0 <= acc <= 100 and 0 <= mean_exit <= 6 and 0 < macs <= full
    raised = float(re.search(r"exit raised by more than one: ([\d.]+) % of 100 inputs", out).group(1))
    assert 0 <= raised <= 100
    rate, lo, hi = map(float, re.search(r"Early Attack success ([\d.]+) % \[([\d.]+), ([\d.]+)\] of 100 images",
                                        out).groups())
    assert lo <= rate <= hi
    assert "table1" in out and "early_attack" in out  # the second block's tables
    assert (tmp_path / "artefacts").is_dir()          # the models it trained were stored where it said

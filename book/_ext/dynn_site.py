"""Small Sphinx fixes for the companion site (loaded through _config.yml `local_extensions`).

* sphinx-thebe 0.3.1 registers its inline configuration script (``const THEBE_JS_URL = ...``)
  on every ``env-before-read-docs`` event; Jupyter Book emits it more than once, so pages carried
  the script twice and the second copy threw "Identifier 'THEBE_JS_URL' has already been
  declared". Duplicate script entries (same file, same inline body) are dropped per page.
* Launch buttons (Binder, JupyterHub, Colab) of a page rendered from ``book/_generated/<name>.ipynb``
  would open that path in the repository, where it does not exist (executed copies are not
  committed). They are pointed at the committed source ``notebooks/<name>.md`` instead, which
  JupyterLab opens as a notebook when jupytext is installed (it is, in environment.yml).
* **The profile travels with every page.** When any executed page ran a profile other than
  ``paper``/``fast`` or on generated data (``dynn_lib.book.site_status``), every page of the
  site, static ones included, opens with a banner saying so (CSS class ``dynn-profile-banner``).
* **A partial build says so on every page.** When pages were written as notices because their
  results were not published (``dynn reproduce --no-experiments --allow-missing``; ``missing`` of
  ``site_status``), every page opens with a banner linking them (CSS class ``dynn-missing-banner``).
* **A failed GPU self-check says so on every page.** When the results behind the pages carry a
  self-check record with a FAIL (``benchmarks/gpu_run.sh`` with ``DYNN_GPU_RUN_ON_FAIL=continue``;
  ``failed_checks`` of ``site_status``), every page opens with a banner naming the failed checks
  and linking the methods page, where Table M.4 and its reading are (CSS class
  ``dynn-check-banner``).
* **Long code in the book's own tables wraps at its punctuation.** Inside the Markdown tables
  (``<table class="table">``; the result tables are ``dynn-table``), a code word such as
  ``attacks.early_attack.early_attack_success`` gets a line-break opportunity (``<wbr>``, which a
  copy does not carry) after each ``_``, ``,``, ``/``, ``=`` and a ``.`` before a letter, and the
  CSS lets such code wrap: the word breaks where a reader expects instead of pushing the table past
  the text column.
* **The landing page's results summary.** The line ``<!-- dynn:results-summary -->`` of the
  root page is replaced by the Markdown the claims page glued under the name
  ``site_summary`` (profile, data, headline verdicts, read from the same ledger), so the two
  pages cannot disagree; without an executed claims page it says so.
"""
from __future__ import annotations

import html
import json
import re
import sys
from pathlib import Path

_GENERATED = re.compile(r"book/_generated/([A-Za-z0-9_.-]+?)\.ipynb")
_GENERATED_ESCAPED = re.compile(r"book%2F_generated%2F([A-Za-z0-9_.-]+?)\.ipynb")


def _dedupe_scripts(app, pagename, templatename, context, doctree) -> None:
    scripts = context.get("script_files")
    if not scripts:
        return
    seen, kept = set(), []
    for js in scripts:
        # the copies differ only in an empty filename written as None or '': normalise it
        key = (getattr(js, "filename", None) or "", repr(sorted(getattr(js, "attributes", {}).items())))
        if key in seen:
            continue
        seen.add(key)
        kept.append(js)
    scripts[:] = kept


_MARKDOWN_TABLE = re.compile(r'<table class="table">.*?</table>', re.S)
_PRE = re.compile(r'(<span class="pre">)([^<]+)(</span>)')
_BREAK_AFTER = re.compile(r"([_,/=]|\.(?=[A-Za-z_]))(?=[^\s<])")  # not inside a number such as 0.9


def _code_breaks(app, pagename, templatename, context, doctree) -> None:
    body = context.get("body")
    if not isinstance(body, str) or '<table class="table">' not in body:
        return

    def pre(m: re.Match) -> str:
        return m.group(1) + _BREAK_AFTER.sub(r"\1<wbr>", m.group(2)) + m.group(3)

    context["body"] = _MARKDOWN_TABLE.sub(lambda t: _PRE.sub(pre, t.group(0)), body)


def _retarget(node) -> None:
    if isinstance(node, dict):
        url = node.get("url")
        if isinstance(url, str) and url.startswith(("http://", "https://")):  # launchers, not downloads
            url = _GENERATED.sub(r"notebooks/\1.md", url)
            node["url"] = _GENERATED_ESCAPED.sub(r"notebooks%2F\1.md", url)
        for value in node.values():
            if isinstance(value, (list, dict)):
                _retarget(value)
    elif isinstance(node, list):
        for item in node:
            _retarget(item)


def _launch_sources(app, pagename, templatename, context, doctree) -> None:
    """Runs after sphinx-book-theme's add_launch_buttons (priority 501)."""
    buttons = context.get("header_buttons")
    if buttons and pagename.startswith("book/_generated/"):
        _retarget(buttons)


SUMMARY_MARKER = "<!-- dynn:results-summary -->"
GLUE_NAME = "site_summary"


def _status(app) -> dict:
    if not hasattr(app, "_dynn_status"):
        root = Path(app.srcdir)
        sys.path.insert(0, str(root))
        try:
            from dynn_lib.book import site_status

            app._dynn_status = site_status(root)
        except Exception as e:  # a banner must never break the build; say why it is missing
            app._dynn_status = {"indicative": False, "error": f"{type(e).__name__}: {e}"}
    return app._dynn_status


def _banner_html(status: dict) -> str:
    profiles = ", ".join(status.get("profiles") or ["?"])
    datasets = ", ".join(status.get("datasets") or ["?"])
    return (f'<div class="dynn-profile-banner" role="note"><b>{html.escape(status.get("tag") or "[not real]")} '
            f'Not a real result.</b> This site was built with profile <b>{html.escape(profiles)}</b> on '
            f'<b>{html.escape(datasets)}</b>: its numbers only show that the code runs and must not be '
            f'cited. Build it with <code>--profile paper</code> (or <code>fast</code>) on real data for '
            f'results.</div>')


def _missing_html(app, pagename: str, missing: list[str]) -> str:
    links = []
    for stem in missing:
        doc = f"book/_generated/{stem}"
        title = app.env.titles.get(doc)
        text = title.astext() if title is not None else stem
        links.append(f'<a href="{html.escape(app.builder.get_relative_uri(pagename, doc))}">{html.escape(text)}</a>')
    return (f'<div class="dynn-missing-banner" role="note"><b>Partial build.</b> The results folder of this '
            f'site lacks results that {len(missing)} {"pages need" if len(missing) > 1 else "page needs"}: '
            f'{"; ".join(links)}. Each says what is missing and how to compute it; the claims ledger marks the '
            f'statements that need them "not testable".</div>')


def _check_html(app, pagename: str, failed: list[str]) -> str:
    doc = "book/_generated/methods"
    link = (f'<a href="{html.escape(app.builder.get_relative_uri(pagename, doc))}">the methods page</a>'
            if doc in app.env.titles else "the methods page")
    shown = failed[:5] + ([f"and {len(failed) - 5} more"] if len(failed) > 5 else [])
    return (f'<div class="dynn-check-banner" role="note"><b>The GPU self-check failed.</b> The run behind these '
            f'results went on although its self-check failed {len(failed)} '
            f'{"checks" if len(failed) > 1 else "check"}: {html.escape("; ".join(shown))}. Read what '
            f'{"they mean" if len(failed) > 1 else "it means"} on {link} (Table M.4) before citing a number.</div>')


def _add_banner(app, pagename, templatename, context, doctree) -> None:
    status = _status(app)
    if "body" not in context:
        return
    if status.get("failed_checks"):
        context["body"] = _check_html(app, pagename, status["failed_checks"]) + context["body"]
    if status.get("missing"):
        context["body"] = _missing_html(app, pagename, status["missing"]) + context["body"]
    if status.get("indicative"):
        context["body"] = _banner_html(status) + context["body"]


def _glued_summary(root: Path) -> str | None:
    path = root / "book" / "_generated" / "claims.ipynb"
    if not path.is_file():
        return None
    nb = json.loads(path.read_text(encoding="utf-8"))
    for cell in nb.get("cells", []):
        for out in cell.get("outputs", []):
            if (out.get("metadata", {}).get("scrapbook") or {}).get("name") == GLUE_NAME:
                # glue stores its MIME types under a prefix ("application/papermill.record/text/markdown")
                md = next((v for k, v in out.get("data", {}).items() if k.endswith("text/markdown")), None)
                if md is not None:
                    return "".join(md) if isinstance(md, list) else md
    return None


def _results_summary(app, docname, source) -> None:
    if SUMMARY_MARKER not in source[0]:
        return
    md = _glued_summary(Path(app.srcdir))
    if md is None:
        md = ("*No results summary: the claims page has not been executed for this build "
              "(`python -m dynn_lib.book --only claims`).*")
    source[0] = source[0].replace(SUMMARY_MARKER, md)


def setup(app):
    app.connect("html-page-context", _dedupe_scripts, priority=900)
    app.connect("html-page-context", _launch_sources, priority=600)
    app.connect("html-page-context", _add_banner, priority=700)
    app.connect("html-page-context", _code_breaks, priority=800)
    app.connect("source-read", _results_summary)
    return {"parallel_read_safe": True, "parallel_write_safe": True}

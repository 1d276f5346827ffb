"""Small Sphinx fixes for the companion site (loaded through _config.yml `local_extensions`).

* sphinx-thebe 0.3.1 registers its inline configuration script (``const THEBE_JS_URL = ...``)
  on every ``env-before-read-docs`` event; Jupyter Book emits it more than once, so pages carried
  the script twice and the second copy threw "Identifier 'THEBE_JS_URL' has already been
  declared". Duplicate script entries (same file, same inline body) are dropped per page.
* Launch buttons (Binder, JupyterHub, Colab) of a page rendered from ``book/_generated/<name>.ipynb``
  would open that path in the repository, where it does not exist (executed copies are not
  committed). They are pointed at the committed source ``notebooks/<name>.md`` instead, which
  JupyterLab opens as a notebook when jupytext is installed (it is, in environment.yml).
"""
from __future__ import annotations

import re

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


def setup(app):
    app.connect("html-page-context", _dedupe_scripts, priority=900)
    app.connect("html-page-context", _launch_sources, priority=600)
    return {"parallel_read_safe": True, "parallel_write_safe": True}

"""Small Sphinx fixes for the companion site (loaded through _config.yml `local_extensions`).

* sphinx-thebe 0.3.1 registers its inline configuration script (``const THEBE_JS_URL = ...``)
  on every ``env-before-read-docs`` event; Jupyter Book emits it more than once, so pages carried
  the script twice and the second copy threw "Identifier 'THEBE_JS_URL' has already been
  declared". Duplicate script entries (same file, same inline body) are dropped per page.
"""
from __future__ import annotations


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


def setup(app):
    app.connect("html-page-context", _dedupe_scripts, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True}

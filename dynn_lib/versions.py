"""What computed a stored artefact: a fingerprint of the library code it depends on.

A stored model or table is reused only when its configuration *and* the code that computes it
are unchanged, so a fix in an attack, a metric or the trainer can never leave an old number in
place silently. The fingerprint of a group of modules (:data:`GROUPS`) is the SHA-256 of their
syntax trees with docstrings removed: editing prose or comments keeps every artefact, changing
code recomputes what depends on it.

* ``models``: data loading and splits, the architectures, the trainer and the workspace (which
  picks the training images); a change retrains.
* ``tables``: ``models`` plus early exit, attacks, the black-box pipeline, metrics and the
  per-image tables (``experiments/common.py``, ``rq4.py``, ``appendix.py``).
* ``results``: ``tables`` plus every experiment module and the verdict rules: what a published
  results folder (``results/<profile>/<dataset>/<question>/``) was computed with.

The store adds the group's fingerprint to every artefact key (:func:`dynn_lib.store.Store.dir`),
and records it in ``record.json`` as ``code_version``; a page built from stored results says
when they predate the current code (:func:`is_current`).
"""
from __future__ import annotations

import ast
import functools
import hashlib
from pathlib import Path

_ROOT = Path(__file__).resolve().parent

_MODELS = ("data", "models", "train.py", "zoo.py")
_TABLES = _MODELS + ("early_exit.py", "attacks", "blackbox.py", "metrics.py", "numerics.py",
                     "experiments/common.py", "experiments/rq4.py", "experiments/appendix.py")
GROUPS: dict[str, tuple[str, ...]] = {
    "models": _MODELS,
    "tables": _TABLES,
    "results": _TABLES + ("experiments", "verdicts.py"),
}
"""Group -> paths (modules or packages) under ``dynn_lib/``."""

KIND_GROUP: dict[str, str] = {"models": "models"}
"""Store kind -> group; every other kind (tables, calibrations, labels) uses ``tables``."""


def _files(group: str) -> list[Path]:
    if group not in GROUPS:
        raise ValueError(f"unknown code group {group!r}; accepted: {', '.join(GROUPS)}")
    out: set[Path] = set()
    for rel in GROUPS[group]:
        p = _ROOT / rel
        out.update(p.rglob("*.py") if p.is_dir() else [p])
    return sorted(out)


def _strip_docstrings(tree: ast.AST) -> ast.AST:
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if (isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and body
                and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant)
                and isinstance(body[0].value.value, str)):
            node.body = body[1:] or [ast.Pass()]
    return tree


@functools.lru_cache(maxsize=None)
def code_version(group: str) -> str:
    """12-hex-digit fingerprint of the code of ``group`` (module docstring)."""
    h = hashlib.sha256()
    for f in _files(group):
        tree = _strip_docstrings(ast.parse(f.read_text(), filename=str(f)))
        h.update(str(f.relative_to(_ROOT)).encode())
        h.update(ast.dump(tree, include_attributes=False).encode())
    return h.hexdigest()[:12]


def group_for(kind: str) -> str:
    """The code group a store kind depends on."""
    return KIND_GROUP.get(kind, "tables")


def is_current(record: dict, group: str = "results") -> bool | None:
    """Whether a record's ``code_version`` equals the current one (None: the record has none)."""
    v = record.get("code_version")
    return None if v is None else v == code_version(group)

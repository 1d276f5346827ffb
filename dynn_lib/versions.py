"""What computed a stored artefact: a fingerprint of the library code it depends on.

A stored model or table is reused only when its configuration *and* the code that computes it
are unchanged, so a fix in an attack, a metric or the trainer can never leave an old number in
place silently. The fingerprint of a group of modules (:data:`GROUPS`) is the SHA-256 of their
syntax trees with docstrings removed: editing prose or comments keeps every artefact, changing
code recomputes what depends on it. The trees are written out by :func:`canonical_dump`, not
``ast.dump``, whose text changes between Python versions (3.12 adds an empty ``type_params`` to
every function and class, 3.13 leaves empty fields out): results computed on a GPU machine's Python
3.12 must stay current for a book rendered on another machine's 3.11.

* ``models``: data loading and splits, the architectures, the trainer and the workspace (which
  picks the training images); a change retrains.
* ``tables``: ``models`` plus early exit, attacks, the black-box pipeline, metrics, the attack
  timing (``timing.py``) and the per-image tables (``experiments/common.py``, ``rq4.py``,
  ``appendix.py``).
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
_TABLES = _MODELS + ("early_exit.py", "attacks", "blackbox.py", "metrics.py", "numerics.py", "timing.py",
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


def _merge_strings(values: list[ast.expr]) -> list[ast.expr]:
    """An f-string's parts with empty literal parts dropped and neighbouring literals joined."""
    out: list[ast.expr] = []
    for v in values:
        if isinstance(v, ast.Constant) and isinstance(v.value, str):
            if not v.value:
                continue
            if out and isinstance(out[-1], ast.Constant) and isinstance(out[-1].value, str):
                out[-1] = ast.Constant(value=out[-1].value + v.value)
                continue
        out.append(v)
    return out


def canonical_dump(node: object) -> str:
    """A syntax tree as text that is the same on every Python version that parses it alike: node
    type, then its fields in order, leaving out fields that are None or empty lists (a field a
    newer Python adds, such as ``type_params``, is empty in code that does not use it) and every
    position attribute; an f-string's literal parts are joined, empty ones dropped."""
    if isinstance(node, ast.JoinedStr):  # f-string parts: 3.12.1 adds empty strings to format specs
        node = ast.JoinedStr(values=_merge_strings(node.values))
    if isinstance(node, ast.AST):
        parts = [f"{name}={canonical_dump(value)}" for name, value in ast.iter_fields(node)
                 if value is not None and value != []]
        return f"{type(node).__name__}({', '.join(parts)})"
    if isinstance(node, list):
        return f"[{', '.join(canonical_dump(v) for v in node)}]"
    return repr(node)


@functools.lru_cache(maxsize=None)
def code_version(group: str) -> str:
    """12-hex-digit fingerprint of the code of ``group`` (module docstring)."""
    h = hashlib.sha256()
    for f in _files(group):
        tree = _strip_docstrings(ast.parse(f.read_text(), filename=str(f)))
        h.update(f.relative_to(_ROOT).as_posix().encode())
        h.update(canonical_dump(tree).encode())
    return h.hexdigest()[:12]


def group_for(kind: str) -> str:
    """The code group a store kind depends on."""
    return KIND_GROUP.get(kind, "tables")


def is_current(record: dict, group: str = "results") -> bool | None:
    """Whether a record's ``code_version`` equals the current one (None: the record has none)."""
    v = record.get("code_version")
    return None if v is None else v == code_version(group)

"""Alembic's version files: read their identifiers from the text, find them in the backend, rewrite a link.

Files are parsed with `ast` from their text, never imported, so no user code runs in runbook's process.
They are read and written through the run's target, in the backend service.
"""

from __future__ import annotations

import ast
import posixpath
import re
from typing import TYPE_CHECKING, Any

from runbook.alembic_ini import AlembicConfigError, config_file, config_section, read_config
from runbook.errors import StepFailed
from runbook.frameworks.alembic.graph import GraphError, Revision, RevisionGraph
from runbook.frameworks.backend import backend_exec, split_manage
from runbook.targets.base import MissingFile

if TYPE_CHECKING:
    from runbook.frameworks.context import RunContext

DEFAULT_VERSIONS_DIR = "alembic/versions"


# --- reading a version file --------------------------------------------------------------------------

def _module_assignments(tree: ast.Module) -> dict[str, ast.expr]:
    """Map each module-level `name = value` / `name: T = value` to its value node (the last one wins)."""
    found: dict[str, ast.expr] = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            found[node.targets[0].id] = node.value
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.value is not None:
            found[node.target.id] = node.value
    return found


def _ids(node: ast.expr | None, path: str, name: str) -> tuple[str, ...]:
    """Return the revision ids of a literal None, string, or tuple/list of strings."""
    if node is None:
        return ()
    try:
        value = ast.literal_eval(node)
    except ValueError:
        raise GraphError(f"{path}:{node.lineno}: {name} is not a literal runbook can read") from None
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    if isinstance(value, tuple | list) and all(isinstance(v, str) for v in value):
        return tuple(value)
    raise GraphError(f"{path}:{node.lineno}: {name} must be None, a string or a tuple of strings")


def _parse(text: str, path: str) -> ast.Module:
    try:
        return ast.parse(text, filename=path)
    except SyntaxError as exc:
        raise GraphError(f"{path}:{exc.lineno}: not valid Python: {exc.msg}") from None


def parse_revision(text: str, path: str = "") -> Revision | None:
    """Read a version file's identifiers from its text; None when it defines no `revision`."""
    tree = _parse(text, path)
    names = _module_assignments(tree)
    if "revision" not in names:
        return None
    ids = _ids(names["revision"], path, "revision")
    if len(ids) != 1:
        raise GraphError(f"{path}: revision must be one string")
    if "down_revision" not in names:
        raise GraphError(f"{path}: revision {ids[0]} has no down_revision")
    docstring = ast.get_docstring(tree) or ""
    return Revision(
        revision=ids[0],
        down_revisions=_ids(names["down_revision"], path, "down_revision"),
        path=path,
        message=docstring.strip().splitlines()[0] if docstring.strip() else "",
        branch_labels=_ids(names.get("branch_labels"), path, "branch_labels"),
        depends_on=_ids(names.get("depends_on"), path, "depends_on"),
    )


def versions_dirs_from_ini(text: str, here: str = ".", ini: str = "alembic.ini") -> list[str]:
    """Return the version directories an alembic.ini names (`version_locations`, else script_location/versions)."""
    try:
        return read_config(text, ini, workdir=here).versions_dirs()
    except AlembicConfigError as exc:
        raise GraphError(str(exc)) from None


# --- rewriting a version file ------------------------------------------------------------------------

def _lines(text: str) -> list[str]:
    """Split like the Python tokenizer: after \\n, \\r\\n or a lone \\r, keeping the endings."""
    return [part for part in re.split(r"(?<=\n)|(?<=\r)(?!\n)", text) if part]


def _offset(lines: list[str], lineno: int, col_bytes: int) -> int:
    """Turn an ast position (1-based line, UTF-8 byte column) into an index into the text."""
    line = lines[lineno - 1] if lineno <= len(lines) else ""
    return sum(len(x) for x in lines[: lineno - 1]) + len(line.encode("utf-8")[:col_bytes].decode("utf-8"))


def _format_ids(ids: tuple[str, ...], quote: str) -> str:
    def one(value: str) -> str:
        return f"{quote}{value}{quote}" if quote not in value and "\\" not in value else repr(value)

    if not ids:
        return "None"
    if len(ids) == 1:
        return one(ids[0])
    return "(" + ", ".join(one(i) for i in ids) + ")"


def rewrite_down_revision(text: str, new: tuple[str, ...], path: str = "") -> str:
    """Return the file text with `down_revision` (and the docstring's `Revises:` line) set to new."""
    tree = _parse(text, path)
    names = _module_assignments(tree)
    node = names.get("down_revision")
    if node is None or node.end_lineno is None or node.end_col_offset is None:
        raise GraphError(f"{path}: no down_revision assignment to rewrite")
    lines = _lines(text)
    start = _offset(lines, node.lineno, node.col_offset)
    end = _offset(lines, node.end_lineno, node.end_col_offset)
    # Keep the file's quoting: that of the old value, else that of `revision`.
    revision_node = names.get("revision")
    samples = [text[start:end], (ast.get_source_segment(text, revision_node) or "") if revision_node else ""]
    quote = next((m.group(0) for m in map(re.compile("['\"]").search, samples) if m), "'")
    result = text[:start] + _format_ids(new, quote) + text[end:]
    docstring = tree.body[0] if tree.body and isinstance(tree.body[0], ast.Expr) else None
    if docstring is not None and isinstance(docstring.value, ast.Constant) and isinstance(docstring.value.value, str):
        doc_start = _offset(lines, docstring.lineno, docstring.col_offset)
        doc_end = _offset(lines, docstring.end_lineno or docstring.lineno, docstring.end_col_offset or 0)
        revises = ", ".join(new)
        doc = re.sub(r"(?m)^([ \t]*Revises:)[^\r\n]*", lambda m: f"{m.group(1)} {revises}".rstrip(),
                     result[doc_start:doc_end], count=1)
        result = result[:doc_start] + doc + result[doc_end:]
    return result


def reparse(text: str, path: str) -> Revision:
    """Read a rewritten file back: it must still define its revision."""
    revision = parse_revision(text, path)
    if revision is None:
        raise GraphError(f"{path}: the rewritten file defines no revision")
    return revision


# --- the files in the backend, through the target ----------------------------------------------------

def _backend_path(ctx: RunContext, path: str) -> str:
    """Place a relative path like the backend's commands see it (in runbook.yml's backend workdir)."""
    workdir = ctx.config.backend.workdir
    # A target with a workdir of its own (local) resolves relative paths against it already.
    if posixpath.isabs(path) or not workdir or ctx.target.workdir is not None:
        return path
    return posixpath.join(workdir, path)


def _resolve_resource(ctx: RunContext, location: str) -> str:
    """Ask the backend's python where a package resource (`package:dir`) is, as Alembic finds it."""
    interpreter = split_manage(list(ctx.config.backend.manage))[0]
    code = ("import importlib.resources as r, sys; p, _, d = sys.argv[1].partition(':'); "
            "print(r.files(p).joinpath(d) if d else r.files(p))")
    result = backend_exec(ctx, [*interpreter, "-c", code, location])
    found = result.stdout.strip().splitlines()[-1:] if result.exit_code == 0 else []
    if not found:
        raise GraphError(f"cannot find the package resource {location} in the backend: "
                         f"{(result.stderr.strip().splitlines() or ['?'])[-1]}",
                         hint="pass versions_dir with the directory of the version files")
    return found[0]


def _versions_dirs(ctx: RunContext, args: dict[str, Any]) -> list[str]:
    if args.get("versions_dir"):
        return [_backend_path(ctx, str(args["versions_dir"]))]
    alembic_argv = list(ctx.config.backend.alembic)
    ini = config_file(alembic_argv, args.get("config"))
    try:
        text = ctx.target.read_file("backend", _backend_path(ctx, ini)).decode("utf-8")
    except MissingFile:
        return [_backend_path(ctx, DEFAULT_VERSIONS_DIR)]
    except UnicodeDecodeError as exc:
        raise StepFailed(f"cannot read {ini} in backend: {exc}") from exc
    try:
        config = read_config(text, ini, section=config_section(alembic_argv))
    except AlembicConfigError as exc:
        raise GraphError(str(exc)) from None
    return [_backend_path(ctx, d) for d in config.versions_dirs(lambda loc: _resolve_resource(ctx, loc))]


def read_revisions(ctx: RunContext, args: dict[str, Any]) -> tuple[RevisionGraph, dict[str, str], list[str]]:
    """Return the graph, each version file's text by path, and the version directories read."""
    dirs = _versions_dirs(ctx, args)
    texts: dict[str, str] = {}
    revisions = []
    for directory in dirs:
        for path in ctx.target.list_files("backend", directory, "*.py"):
            try:
                text = ctx.target.read_file("backend", path).decode("utf-8")
            except UnicodeDecodeError as exc:
                raise StepFailed(f"cannot read {path} in backend: {exc}") from exc
            revision = parse_revision(text, path)
            if revision is not None:
                texts[path] = text
                revisions.append(revision)
    if not revisions:
        raise GraphError(f"no Alembic version files in {', '.join(dirs)} in backend",
                         hint="pass versions_dir, or set backend.workdir in runbook.yml")
    return RevisionGraph(revisions), texts, dirs


def write_version_file(ctx: RunContext, path: str, text: str) -> None:
    """Write a rewritten version file in the backend, and drop its cached bytecode."""
    ctx.target.write_file("backend", path, text.encode("utf-8"))
    _drop_bytecode(ctx, path)


def _drop_bytecode(ctx: RunContext, path: str) -> None:
    """Delete cached bytecode of a rewritten file: a same-size rewrite within a second can look unchanged."""
    stem = posixpath.splitext(posixpath.basename(path))[0]
    cache = posixpath.join(posixpath.dirname(path), "__pycache__")
    try:
        for pyc in ctx.target.list_files("backend", cache, f"{stem}.*.pyc"):
            ctx.target.delete_file("backend", pyc)
    except StepFailed:
        pass  # best effort: Python also checks the source's size and mtime


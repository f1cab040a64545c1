"""Django migration files: find each app's migrations directory, regenerate files, rewrite dependencies.

Used by `reset-all-migrations` and `squash-reset`. Files are read, deleted and written through the target
(in the backend service); `makemigrations` runs there too. A regeneration that fails puts every file it
touched back as it was. History rows are edited directly (only the rows of the apps being reset: deleting
every row and running `migrate --fake-initial` fails on contenttypes.0002), and the new migrations are
recorded by the guarded `django.fake`, never blindly.
"""

from __future__ import annotations

import ast
import os
import posixpath
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from runbook.errors import InputError, StepFailed
from runbook.frameworks.actions import ActionResult, action, allow_keys
from runbook.frameworks.backend import manage, run_script, split_manage
from runbook.frameworks.diff import unified_diff
from runbook.frameworks.django import inspection as django

if TYPE_CHECKING:
    from runbook.frameworks.context import RunContext

PLACEHOLDER = "__first__"
DEPENDENCY_LISTS = ("dependencies", "run_before")

@dataclass
class AppFiles:
    """One installed app's migrations package as the backend sees it."""

    app: str
    module: str | None
    path: str | None
    local: bool
    files: list[str] = field(default_factory=list)

    def paths(self) -> list[str]:
        return [posixpath.join(self.path, f) for f in self.files] if self.path else []


def locate(ctx: RunContext) -> dict[str, AppFiles]:
    """Return {app label: AppFiles}: a local app's migrations live under the backend's workdir, not in site-packages."""
    interpreter, manage_py = split_manage(list(ctx.config.backend.manage))
    data = run_script(ctx, "django_locate.py", [manage_py], interpreter=interpreter,
                      what="locating the migration files")
    return {a["app"]: AppFiles(a["app"], a["module"], a["path"], bool(a["local"]), list(a["files"]))
            for a in data["apps"]}


# ---- pure helpers: dependency literals in migration files ----

def _dependency_constants(text: str) -> list[tuple[ast.Constant, ast.Constant]]:
    """Return the (app, name) string pairs written in `dependencies` / `run_before` of the Migration classes."""
    pairs = []
    for node in ast.walk(ast.parse(text)):
        if not isinstance(node, ast.ClassDef):
            continue
        for stmt in node.body:
            targets = stmt.targets if isinstance(stmt, ast.Assign) else (
                [stmt.target] if isinstance(stmt, ast.AnnAssign) else [])
            if not any(isinstance(t, ast.Name) and t.id in DEPENDENCY_LISTS for t in targets):
                continue
            value = stmt.value
            if not isinstance(value, ast.List | ast.Tuple):
                continue
            for item in value.elts:
                if (isinstance(item, ast.Tuple) and len(item.elts) == 2
                        and all(isinstance(e, ast.Constant) and isinstance(e.value, str) for e in item.elts)):
                    pairs.append((item.elts[0], item.elts[1]))  # type: ignore[arg-type]
    return pairs


def dependency_literals(text: str) -> list[tuple[str, str]]:
    """Return the (app, migration) pairs written literally in a migration file's dependency lists."""
    return [(a.value, n.value) for a, n in _dependency_constants(text)]


def rewrite_dependencies(text: str, app: str, names: Iterable[str], new: str) -> tuple[str, list[str]]:
    """Point the literal `(app, name)` dependencies whose name is in names at `(app, new)`.

    Only the string literal of the name changes (found with ast, replaced by position, quotes kept), so
    comments, formatting and every other line stay byte for byte. Returns the text and the names replaced.
    """
    wanted = set(names)
    data = text.encode("utf-8")
    starts = [0]
    for line in data.splitlines(keepends=True):
        starts.append(starts[-1] + len(line))
    spots = []
    for app_node, name_node in _dependency_constants(text):
        if app_node.value == app and name_node.value in wanted and name_node.value != new:
            begin = starts[name_node.lineno - 1] + name_node.col_offset
            end = starts[(name_node.end_lineno or name_node.lineno) - 1] + (name_node.end_col_offset or 0)
            spots.append((begin, end, name_node.value))
    replaced = []
    for begin, end, old in sorted(spots, reverse=True):
        literal = data[begin:end].decode("utf-8")
        quote = literal[-1] if literal[-1] in "'\"" else '"'
        data = data[:begin] + f"{quote}{new}{quote}".encode() + data[end:]
        replaced.append(old)
    return data.decode("utf-8"), sorted(replaced)


def names_list(args: dict[str, Any], key: str) -> list[str]:
    value = args.get(key)
    if value in (None, "", []):
        return []
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, list):
        raise InputError(f"`with: {key}` must be a list of app labels")
    return list(dict.fromkeys(str(i).strip() for i in items if str(i).strip()))


def local_apps(located: dict[str, AppFiles], apps: list[str]) -> list[AppFiles]:
    """Return the AppFiles of apps; raise InputError for an unknown app or one whose files are not the project's."""
    chosen = []
    for app in apps:
        found = located.get(app)
        if found is None:
            raise InputError(f"unknown app {app!r} (installed: {', '.join(sorted(located))})")
        if not found.path or not found.local:
            where = found.path or "no migrations package"
            raise InputError(f"app {app} is not one of the project's own apps ({where}): runbook regenerates "
                             "only migration files under the backend's working directory")
        chosen.append(found)
    return chosen


def outside_dependants(found: django.Inspection, apps: Iterable[str]) -> dict[str, list[str]]:
    """Return {migration of another app: [its dependencies on apps]} from the migration graph."""
    chosen = set(apps)
    result: dict[str, list[str]] = {}
    for node in found.migrations:
        if node.app in chosen:
            continue
        deps = [d for d in node.dependencies if d.split(".", 1)[0] in chosen]
        if deps:
            result[node.key] = deps
    return result


# ---- actions ----

def _read(ctx: RunContext, path: str) -> str:
    return ctx.target.read_file("backend", path).decode("utf-8")


@action("django.regenerate-migrations")
def regenerate(ctx: RunContext, args: dict[str, Any]) -> ActionResult:
    """Delete the apps' migration files (keeping __init__.py), run makemigrations for them, and with
    `rewrite_dependants: true` point other apps' migrations at the new initial migration.

    Other apps' files that name a deleted migration are detached (`__first__`) while makemigrations runs,
    since Django cannot load a graph with a dangling dependency. Any failure puts every file back.
    """
    allow_keys(args, "apps", "rewrite_dependants")
    apps = names_list(args, "apps")
    if not apps:
        raise InputError("django.regenerate-migrations needs `with: apps` (a list of app labels)")
    located = locate(ctx)
    chosen = local_apps(located, apps)
    found = django.inspect(ctx, schema=False)
    deleted_names = {a.app: {f[:-3] for f in a.files} for a in chosen}
    dependants = outside_dependants(found, apps)
    if dependants and not args.get("rewrite_dependants"):
        why = [f"{key} depends on {', '.join(deps)}: reset its app too, or use squash-reset"
               for key, deps in dependants.items()]
        return ActionResult(1, "", "\n".join(why) + "\n", problems=why)
    originals: dict[str, str] = {}
    edits: dict[str, str] = {}
    for key in dependants:
        other, name = key.split(".", 1)
        home = located.get(other)
        if home is None or not home.path or not home.local:
            why = f"{key} depends on the migrations being deleted but is not a file of the project"
            return ActionResult(1, "", why + "\n", problems=[why])
        path = posixpath.join(home.path, name + ".py")
        originals[path] = text = _read(ctx, path)
        for app in apps:
            text, _ = rewrite_dependencies(text, app, deleted_names[app], PLACEHOLDER)
        edits[path] = text
    saved = {path: ctx.target.read_file("backend", path) for a in chosen for path in a.paths()}
    lines: list[str] = []
    try:
        for path in saved:
            ctx.target.delete_file("backend", path)
            lines.append(f"deleted {path}")
        _delete_bytecode(ctx, chosen, deleted_names)
        for path, text in edits.items():
            if text != originals[path]:
                ctx.target.write_file("backend", path, text.encode("utf-8"))
        code, output = manage(ctx, ["makemigrations", *apps, "--noinput"])
        lines += [f"$ manage.py makemigrations {' '.join(apps)} --noinput", output.rstrip()]
        if code != 0:
            raise StepFailed(f"makemigrations failed (exit {code})")
        after = {a.app: a for a in local_apps(locate(ctx), apps)}
        created = {app: sorted(after[app].files) for app in apps}
        initial = {app: created[app][0][:-3] for app in apps if created[app]}
        diffs = []
        for path, text in originals.items():
            final = text
            for app in apps:
                if app in initial:
                    final, _ = rewrite_dependencies(final, app, deleted_names[app], initial[app])
            ctx.target.write_file("backend", path, final.encode("utf-8"))
            diffs.append(unified_diff(path, text, final))
    except StepFailed as exc:  # FileAccessError too: a file that cannot be written or deleted
        lines.append(f"failed: {exc}; putting the migration files back")
        _restore(ctx, chosen, saved, originals)
        return ActionResult(1, "\n".join(lines) + "\n", problems=[str(exc)],
                            data={"deleted": [], "created": [], "rewritten": [], "migrations": []})
    created_paths = [posixpath.join(after[app].path or "", f) for app in apps for f in created[app]]
    lines += [f"created {p}" for p in created_paths]
    if diffs:
        lines.append("rewrote the dependencies of other apps' migrations:")
        lines += [d.rstrip("\n") for d in diffs]
    data = {
        "apps": apps,
        "deleted": sorted(saved),
        "created": created_paths,
        "recreated": sorted(set(saved) & set(created_paths)),
        "rewritten": sorted(originals),
        "migrations": [f"{app}.{f[:-3]}" for app in apps for f in created[app]],
        "initial": initial,
    }
    lines.append(f"file diff: {len(data['deleted'])} deleted, {len(created_paths)} created "
                 f"({len(data['recreated'])} reuse a deleted file's name), {len(originals)} rewritten")
    return ActionResult(0, "\n".join(lines) + "\n", data=data)


def _delete_bytecode(ctx: RunContext, chosen: list[AppFiles], names: dict[str, set[str]]) -> None:
    """Remove the cached bytecode of deleted migration files, as the guides' `find -name '*.pyc' -delete` does."""
    for app in chosen:
        cache = posixpath.join(app.path or "", "__pycache__")
        for path in ctx.target.list_files("backend", cache, "*.pyc"):
            if posixpath.basename(path).split(".", 1)[0] in names[app.app]:
                ctx.target.delete_file("backend", path)


def _restore(ctx: RunContext, chosen: list[AppFiles], saved: dict[str, bytes], originals: dict[str, str]) -> None:
    """Put the migration files back as they were before a failed regeneration."""
    for app in chosen:
        for path in ctx.target.list_files("backend", app.path or "", "*.py"):
            if posixpath.basename(path) != "__init__.py" and path not in saved:
                ctx.target.delete_file("backend", path)
    for path, data in saved.items():
        ctx.target.write_file("backend", path, data)
    for path, text in originals.items():
        ctx.target.write_file("backend", path, text.encode("utf-8"))


@action("django.reset-history")
def reset_history(ctx: RunContext, args: dict[str, Any]) -> ActionResult:
    """Delete every django_migrations row of the given apps (their tables and data stay); no other app's."""
    allow_keys(args, "apps")
    apps = names_list(args, "apps")
    if not apps:
        raise InputError("django.reset-history needs `with: apps` (a list of app labels)")
    _, rows, _ = ctx.database.query(
        "DELETE FROM django_migrations WHERE app = ANY(%(apps)s::text[]) RETURNING app, name", {"apps": apps})
    deleted = sorted(f"{a}.{n}" for a, n in rows)
    lines = [f"deleted the row of {key}" for key in deleted] or ["no rows to delete"]
    lines.append(f"{len(deleted)} rows deleted for {', '.join(apps)}; the rows of other apps are untouched")
    return ActionResult(0, "\n".join(lines) + "\n", data={"deleted": deleted})


@action("django.createsuperuser")
def create_superuser(ctx: RunContext, args: dict[str, Any]) -> ActionResult:
    """Run `createsuperuser --noinput`; the password comes from `with: password` or the host's
    DJANGO_SUPERUSER_PASSWORD and reaches the backend only in the command's environment. An existing
    user of that name is left as it is."""
    allow_keys(args, "username", "email", "password")
    username = str(args.get("username") or "").strip()
    if not username:
        raise InputError("django.createsuperuser needs `with: username`")
    password = str(args.get("password") or os.environ.get("DJANGO_SUPERUSER_PASSWORD") or "")
    env = {"DJANGO_SUPERUSER_PASSWORD": password} if password else {}
    code, output = manage(ctx, ["createsuperuser", "--noinput", "--username", username,
                                 "--email", str(args.get("email") or "")], env)
    if code != 0 and "already taken" in output:
        return ActionResult(0, f"user {username} already exists: left as it is\n",
                            data={"created": False, "username": username})
    if code != 0:
        return ActionResult(1, output, problems=[f"createsuperuser failed (exit {code})"])
    note = "" if password else " (no password given: it cannot log in until one is set)"
    return ActionResult(0, output.rstrip() + f"\nsuperuser {username} created{note}\n",
                        data={"created": True, "username": username, "password_set": bool(password)})


"""Read Django's migration graph and the history rows: what is recorded, what is missing, what conflicts.

A part of the Django inspection (runbook/frameworks/backend.py concatenates the parts: answer.py,
django_settings.py, this one, django_schema.py, django_proof.py, and django_inspect.py last), run by the
BACKEND's python. history_problems is pure: runbook's unit tests load it without Django.
"""

import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # defined by the part concatenated before this one
    from answer import EXIT_GRAPH, fail


def history_problems(parents, applied, replacements):
    """Return applied migrations whose dependency is not applied, as Django's consistency check sees it.

    parents: {key: [parent keys]} of the graph; applied: set of keys; replacements: {squashed: [replaced]}.
    """
    problems = []
    for key in sorted(applied):
        for parent in sorted(parents.get(key, ())):
            if parent in applied:
                continue
            # An unapplied squashed migration whose replaced migrations are all applied counts as applied.
            if parent in replacements and all(r in applied for r in replacements[parent]):
                continue
            problems.append({
                "kind": "inconsistent-history", "migration": ".".join(key), "dependency": ".".join(parent),
                "message": f"{'.'.join(key)} is applied but its dependency {'.'.join(parent)} is not"})
    return problems



def key_text(key):
    return f"{key[0]}.{key[1]}"


def is_initial(migration):
    if migration.initial is not None:
        return bool(migration.initial)
    return not any(dep[0] == migration.app_label for dep in migration.dependencies)


def operation_text(op):
    try:
        return f"{type(op).__name__}: {op.describe()}"
    except Exception:
        return type(op).__name__


def migrations_part(loader, recorder):
    graph, applied = loader.graph, loader.applied_migrations
    rows = recorder.applied_migrations() if recorder.has_table() else {}
    nodes = []
    for key in sorted(graph.nodes):
        migration = graph.nodes[key]
        nodes.append({
            "app": key[0], "name": key[1],
            "dependencies": [list(p) for p in sorted(graph.node_map[key].parents)],
            "replaces": [list(r) for r in migration.replaces],
            "initial": is_initial(migration), "applied": key in applied,
            "operations": [operation_text(op) for op in migration.operations],
        })
    apps = sorted({key[0] for key in graph.nodes})
    leaves = {app: [k[1] for k in graph.leaf_nodes(app)] for app in apps}
    replacements = {key: list(m.replaces) for key, m in loader.replacements.items()}
    problems = history_problems({k: list(graph.node_map[k].parents) for k in graph.nodes}, set(applied),
                                replacements)
    for key in sorted(set(graph.nodes) - set(applied)):
        problems.append({"kind": "unapplied", "migration": key_text(key),
                         "message": f"{key_text(key)} is not applied"})
    replaced = {r for values in replacements.values() for r in values}
    installed = set(loader.migrated_apps) | set(loader.unmigrated_apps)
    for key in sorted(rows):
        if key in graph.nodes or key in replaced or key in loader.disk_migrations:
            continue
        why = "" if key[0] in installed else f" (app {key[0]} is not installed)"
        problems.append({"kind": "no-file", "migration": key_text(key),
                         "message": f"django_migrations records {key_text(key)} but no migration file "
                                    f"defines it{why}"})
    for key, replaced_keys in sorted(replacements.items()):
        # Django records the squash itself on the next `migrate`; until then the history only has the originals.
        if key not in rows and replaced_keys and all(r in rows for r in replaced_keys):
            problems.append({"kind": "squash-unrecorded", "migration": key_text(key),
                             "message": f"{key_text(key)} replaces {', '.join(key_text(r) for r in replaced_keys)}, "
                                        "which are all recorded, but has no row of its own"})
    for app, names in sorted(loader.detect_conflicts().items()):
        problems.append({"kind": "conflict", "app": app, "leaves": sorted(names),
                         "message": f"app {app} has {len(names)} leaf migrations: {', '.join(sorted(names))}"})
    return {
        "migrations": nodes,
        "history_table": recorder.has_table(),
        "applied": [[k[0], k[1], r.applied.isoformat() if r.applied else None] for k, r in sorted(rows.items())],
        "leaves": leaves,
        "conflicts": {app: sorted(names) for app, names in loader.detect_conflicts().items()},
    }, problems



def resolve(loader, text):
    """Return the graph key of `app.name` or `app.prefix`, or raise ValueError saying why."""
    app, sep, name = text.strip().partition(".")
    if not sep or not app or not name:
        raise ValueError(f"{text!r} is not APP.MIGRATION")
    if (app, name) in loader.graph.nodes:
        return (app, name)
    try:
        migration = loader.get_migration_by_prefix(app, name)
    except KeyError:
        raise ValueError(f"no migration file {app}.{name}") from None
    except Exception as exc:  # AmbiguityError
        raise ValueError(str(exc)) from None
    key = (migration.app_label, migration.name)
    if key not in loader.graph.nodes:
        raise ValueError(f"{app}.{migration.name} is replaced by a squashed migration; fake that one")
    return key



def load_graph(loader_class, connection):
    """Load the migration graph; a file Django cannot load is one line naming it (exit EXIT_GRAPH)."""
    try:
        return loader_class(connection, ignore_no_migrations=True)
    except SyntaxError as exc:
        fail(EXIT_GRAPH, f"migration file {exc.filename} cannot be loaded: SyntaxError: {exc.msg} (line {exc.lineno})")
    except Exception as exc:
        origin = getattr(exc, "origin", None)
        where = ""
        if origin is not None:
            module = sys.modules.get(type(origin).__module__)
            where = f"migration file {getattr(module, '__file__', None) or key_text(origin)}: "
        text = " ".join(str(exc).split())
        if type(exc).__name__ in ("NodeNotFoundError", "BadMigrationError", "CircularDependencyError",
                                  "ImportError", "ModuleNotFoundError", "InconsistentMigrationHistory"):
            fail(EXIT_GRAPH, f"{where}Django cannot load the migration graph: {type(exc).__name__}: {text}")
        raise


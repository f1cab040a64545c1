"""The proof: which migrations the live schema shows ran, judged against Django's migration state.

What the history claims is Django's ProjectState after a set of migrations, rendered as tables; what the
database has is the live schema. A migration may be recorded when the live tables of its app match the
state of everything recorded plus that migration. Checking one migration's operations against the final
schema cannot work on a real history, where a table is created early and altered, renamed or re-keyed later.

A part of the Django inspection (runbook/frameworks/backend.py concatenates the parts: answer.py,
django_settings.py, django_history.py, django_schema.py, this one, and django_inspect.py last), run by the
BACKEND's python (3.9 or later: graphlib).
"""

import heapq
from graphlib import TopologicalSorter
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # defined by the parts concatenated before this one
    from django_history import is_initial, key_text, operation_text, resolve
    from django_schema import describe_models, schema_problems

UNAPPLIED = "@unapplied"
STATE_ONLY_OPERATIONS = ("AlterModelOptions", "AlterModelManagers")
EXPECTS = "Django's migration state expects"
# How many earlier states `infer` tries per app before it gives up on finding one the schema matches.
MAX_INFER_ROUNDS = 25


def flat_operations(operations):
    """Yield the operations that touch the database, SeparateDatabaseAndState opened up."""
    from django.db.migrations import operations as ops

    for op in operations:
        if isinstance(op, ops.SeparateDatabaseAndState):
            yield from flat_operations(op.database_operations)
        else:
            yield op


def effect_of(migration):
    """Return 'schema' when a migration changes tables, 'data' when it only runs code, else 'state'."""
    from django.db.migrations import operations as ops

    kinds = set()
    for op in flat_operations(migration.operations):
        if isinstance(op, ops.RunPython):
            kinds.add("state" if op.code is ops.RunPython.noop else "data")
        elif isinstance(op, ops.RunSQL):
            kinds.add("state" if op.sql in ("", [], ()) else "data")
        elif type(op).__name__ not in STATE_ONLY_OPERATIONS:
            kinds.add("schema")
    return "schema" if "schema" in kinds else "data" if "data" in kinds else "state"


def graph_order(graph):
    """Return {key: position}: every migration after its dependencies; of those ready together, the smallest first.

    The same order as runbook's own (runbook/frameworks/ordering.py), so that its lists read the same.
    """
    sorter = TopologicalSorter({key: [p.key for p in graph.node_map[key].parents] for key in graph.nodes})
    sorter.prepare()
    ready, order = [], {}
    while sorter.is_active():
        for key in sorter.get_ready():
            heapq.heappush(ready, key)
        key = heapq.heappop(ready)
        order[key] = len(order)
        sorter.done(key)
    return order


def related(graph, keys, attribute):
    """Return the keys with all their parents (attribute 'parents') or children ('children'), transitively."""
    found, stack = set(), [k for k in keys if k in graph.nodes]
    while stack:
        key = stack.pop()
        if key not in found:
            found.add(key)
            stack.extend(n.key for n in getattr(graph.node_map[key], attribute))
    return found


def state_of(loader, order, keys):
    """Return Django's ProjectState after these migrations and their dependencies, as `migrate` builds it."""
    from django.db.migrations.state import ProjectState

    state = ProjectState(real_apps=loader.unmigrated_apps)
    for key in sorted(related(loader.graph, keys, "parents"), key=order.__getitem__):
        state = loader.graph.nodes[key].mutate_state(state, preserve=False)
    return state


def default_table(app, model_name, connection):
    from django.db.backends.utils import truncate_name

    return truncate_name(f"{app}_{model_name.lower()}", connection.ops.max_name_length())


def state_table(state, app, model_name, connection):
    """Return the table of a model in an unrendered state (db_table, or Django's default name)."""
    model = state.models.get((app, model_name.lower()))
    table = model.options.get("db_table") if model is not None else None
    return table or default_table(app, model_name, connection)


def state_tables(state, labels, connection):
    return {state_table(state, app, name, connection) for (app, name), model in state.models.items()
            if app in labels and model.options.get("managed", True) and not model.options.get("proxy")}


def column_of(name, field):
    if field.db_column:
        return field.db_column
    return f"{name}_id" if getattr(field, "many_to_one", False) or getattr(field, "one_to_one", False) else name


def created_names(connection, key, migration, state):
    """Return [(operation, kind, table, name)] of what `migrate` would create; moves `state` past the migration."""
    from django.db.backends.utils import truncate_name
    from django.db.migrations import operations as ops

    app, limit = key[0], connection.ops.max_name_length()
    found = []
    for op in migration.operations:
        for inner in flat_operations([op]):
            table = None
            if isinstance(inner, ops.CreateModel):
                table = inner.options.get("db_table") or default_table(app, inner.name, connection)
                found.append((inner, "table", table, table))
                for name, field in inner.fields:
                    if field.many_to_many and getattr(field.remote_field, "through", None) is None:
                        through = field.db_table or truncate_name(f"{table}_{name}", limit)
                        found.append((inner, "table", through, through))
            elif isinstance(inner, (ops.AddField, ops.RenameField, ops.AddIndex, ops.AddConstraint,
                                    ops.RenameIndex)):
                table = state_table(state, app, inner.model_name, connection)
            if isinstance(inner, ops.AddField):
                if not inner.field.many_to_many:
                    found.append((inner, "column", table, column_of(inner.name, inner.field)))
                elif getattr(inner.field.remote_field, "through", None) is None:
                    through = inner.field.db_table or truncate_name(f"{table}_{inner.name}", limit)
                    found.append((inner, "table", through, through))
            elif isinstance(inner, ops.RenameField):
                model = state.models.get((app, inner.model_name_lower))
                field = model.fields.get(inner.old_name) if model is not None else None
                if field is not None and not field.db_column and not field.many_to_many:
                    found.append((inner, "column", table, column_of(inner.new_name, field)))
            elif isinstance(inner, ops.RenameModel):
                model = state.models.get((app, inner.old_name_lower))
                if model is not None and not model.options.get("db_table"):
                    new = default_table(app, inner.new_name, connection)
                    found.append((inner, "table", new, new))
            elif isinstance(inner, ops.AlterModelTable) and inner.table:
                found.append((inner, "table", inner.table, inner.table))
            elif isinstance(inner, ops.AddIndex) and inner.index.name:
                found.append((inner, "index", table, inner.index.name))
            elif isinstance(inner, ops.RenameIndex):
                found.append((inner, "index", table, inner.new_name))
            elif isinstance(inner, ops.AddConstraint):
                found.append((inner, "constraint", table, inner.constraint.name))
        op.state_forwards(app, state)
    return found


def created_by(loader, connection, order, keys):
    """Return {key: created_names} for these migrations, from one pass over the graph."""
    from django.db.migrations.state import ProjectState

    graph, wanted, names = loader.graph, set(keys), {}
    state = ProjectState(real_apps=loader.unmigrated_apps)
    for key in sorted(related(graph, wanted, "parents"), key=order.__getitem__):
        if key in wanted:
            names[key] = created_names(connection, key, graph.nodes[key], state)
        else:
            state = graph.nodes[key].mutate_state(state, preserve=False)
    return names


def exists(tables, kind, table, name):
    info = tables.get(table)
    if info is None:
        return False
    if kind == "table":
        return True
    if kind == "column":
        return name in info["columns"]
    return name in {i["name"] for i in info["indexes"]} | {c["name"] for c in info["constraints"]}


def compare_state(loader, connection, alias, tables, order, claimed, labels):
    """Compare the live tables of the apps `labels` with the state after the migrations `claimed`.

    Returns ({app: [problems]}, with an empty list where the app matches; the unrendered state; an error
    text when Django cannot build that state).
    """
    state = state_of(loader, order, claimed)
    try:
        models = describe_models(state.apps.get_models(include_auto_created=True), connection, alias, labels)
    except Exception as exc:
        return {app: [] for app in labels}, state, f"cannot build Django's migration state: {type(exc).__name__}: {exc}"
    problems = {app: [] for app in labels}
    for problem in schema_problems(models, tables, strict=True, expects=EXPECTS):
        problems.setdefault(problem["app"], []).append(problem)
    return problems, state, None


def item(subject, ok, message, problem=None):
    return {"subject": subject, "ok": ok, "message": message,
            "problem": problem if ok is False else ("cannot-prove" if ok is None else None)}


def status_of(items):
    if any(i["ok"] is False and i["problem"] == "missing" for i in items):
        return "missing"
    if any(i["ok"] is False for i in items):
        return "differs"
    if any(i["ok"] is None for i in items):
        return "cannot-prove"
    return "proven" if items else "no-op"


def operation_entry(op, checks):
    return {"type": type(op).__name__, "describe": operation_text(op), "checks": checks, "note": None,
            "status": status_of(checks) if checks else "no-op"}


def judge(loader, tables, key, created, app_problems, error, proven_schema):
    """Return one migration's result: proven by the state comparison, or what exists of what it creates."""
    graph = loader.graph
    migration = graph.nodes[key]
    effect = effect_of(migration)
    label, name = key_text(key), key[0]
    later = related(graph, [key], "children") - {key}
    operations = []

    def created_checks(only_existing):
        for op, kind, table, what in created:
            subject = f"table {table}" if kind == "table" else f"{kind} {table}.{what}"
            if exists(tables, kind, table, what):
                operations.append(operation_entry(op, [item(subject, True, f"{subject} exists")]))
            elif not only_existing:
                operations.append(operation_entry(op, [item(subject, False, f"{subject} does not exist",
                                                             "missing")]))

    if error is None and not app_problems and (effect != "data" or later & proven_schema):
        # Evidence: what it creates that is there; a later migration may have renamed or dropped the rest.
        created_checks(only_existing=True)
        why = ("a migration that depends on it is proven" if effect == "data" else
               f"the live tables of app {name} match Django's migration state with {label}")
        operations.append({"type": "State", "describe": "Django's migration state", "note": None,
                           "status": "proven", "checks": [item(f"state of {name}", True, why)]})
    elif effect == "data":
        from django.db.migrations.operations import RunPython, RunSQL

        code = [op for op in flat_operations(migration.operations) if isinstance(op, (RunPython, RunSQL))]
        why = (f"{label} only runs code ({'; '.join(operation_text(op) for op in code)[:200]}), which leaves no "
               "trace in the schema, and no proven migration depends on it")
        kind = "RunSQL" if isinstance(code[0], RunSQL) else "RunPython"
        operations.append({**operation_entry(code[0], [item(f"operation {kind}", None, why)]), "type": kind})
    else:
        created_checks(only_existing=False)
        first = (app_problems or [{"message": error or "the schema differs"}])[0]["message"]
        if not operations:
            operations.append({"type": "State", "describe": "Django's migration state", "note": None,
                               "status": "missing", "checks": [item(f"state of {name}", False,
                                                                    f"not in the schema yet: {first}", "missing")]})
        elif all(c["ok"] for o in operations for c in o["checks"]):
            # Everything it creates is there, yet its app does not match the state with it: say each difference.
            checks = [item(f"state of {p['table']}.{p.get('column') or ''}", False, p["message"],
                           "missing" if p["kind"].endswith("-missing") else "differs")
                      for p in app_problems[:12]] or [item(f"state of {name}", False, first, "differs")]
            operations.append({"type": "State", "describe": f"the live tables of app {name} against Django's "
                               f"migration state with {label}", "note": None, "status": "differs",
                               "checks": checks})
    parents = sorted(p.key for p in graph.node_map[key].parents)
    checks = [c for o in operations for c in o["checks"]]
    return {"requested": label, "migration": label, "app": key[0], "name": key[1],
            "applied": key in loader.applied_migrations, "initial": is_initial(migration),
            "replaces": [key_text(r) for r in migration.replaces], "effect": effect,
            "dependencies": [key_text(p) for p in parents],
            "unapplied_dependencies": [key_text(p) for p in parents if p not in loader.applied_migrations],
            "operations": operations, "status": status_of(checks), "error": None,
            "state_problems": [p["message"] for p in app_problems][:20]}


def prove(loader, connection, alias, tables, order, candidates, recorded):
    """Prove a batch of migrations against the state of everything recorded plus the batch: the one proof."""
    graph = loader.graph
    claimed = related(graph, recorded | set(candidates), "parents")
    labels = {k[0] for k in candidates}
    problems, state, error = compare_state(loader, connection, alias, tables, order, claimed, labels)
    new = set(candidates) - recorded
    if new and error is None:
        # A table the batch deletes or renames must be gone, which comparing the tables that stay cannot see.
        before = {k for k in claimed if not related(graph, [k], "parents") & new}
        now = state_tables(state, labels, connection)
        earlier = state_of(loader, order, before)  # replayed once, not once per app
        for app in labels:
            for table in sorted(state_tables(earlier, {app}, connection) - now):
                if table in tables:
                    problems.setdefault(app, []).append({"kind": "table-unexpected", "app": app, "table": table,
                                                         "message": f"table {table} exists, {EXPECTS} it gone"})
    proven_schema = {k for k in claimed if effect_of(graph.nodes[k]) == "schema"
                     and (k in recorded or (error is None and not problems.get(k[0])))}
    created = created_by(loader, connection, order, candidates)
    return [judge(loader, tables, key, created[key], problems.get(key[0], []), error, proven_schema)
            for key in candidates]


def infer(loader, connection, alias, tables, order):
    """Find, per app, the latest unapplied migration whose state the live schema matches; judge all of them.

    With history rows lost (a restored dump, a DELETE) the schema is the only witness. Each app starts with
    all its unapplied migrations claimed; an app whose tables do not match gives back its last schema change,
    and the comparison is made again (all apps in one state, so cross-app dependencies stay consistent).
    """
    graph = loader.graph
    recorded = {k for k in loader.applied_migrations if k in graph.nodes}
    unapplied = sorted((k for k in graph.nodes if k not in recorded), key=order.__getitem__)
    if not unapplied:
        return []
    by_app = {}
    for key in unapplied:
        by_app.setdefault(key[0], []).append(key)
    effects = {k: effect_of(graph.nodes[k]) for k in unapplied}
    taken = {app: len(keys) for app, keys in by_app.items()}
    settled = set()
    for _ in range(MAX_INFER_ROUNDS):
        chosen = {k for app, keys in by_app.items() for k in keys[:taken[app]]}
        # A migration whose unapplied dependency is not chosen cannot be claimed either.
        chosen = {k for k in chosen if related(graph, [k], "parents") - recorded <= chosen}
        for app, keys in by_app.items():
            taken[app] = next((i for i, k in enumerate(keys) if k not in chosen), len(keys))
        problems, _, error = compare_state(loader, connection, alias, tables, order, recorded | chosen,
                                           set(by_app) - settled)
        if error:
            break
        moved = False
        for app in set(by_app) - settled:
            if not problems.get(app):
                settled.add(app)
                continue
            keys = by_app[app]
            # Give back the last schema change taken (and whatever follows it).
            schema_at = [i for i in range(taken[app]) if effects[keys[i]] == "schema"]
            if schema_at:
                taken[app], moved = schema_at[-1], True
            else:
                settled.add(app)
        if not moved:
            break
    chosen = {k for app, keys in by_app.items() for k in keys[:taken[app]]}
    chosen = {k for k in chosen if related(graph, [k], "parents") - recorded <= chosen}
    results = prove(loader, connection, alias, tables, order, sorted(chosen, key=order.__getitem__), recorded)
    rest = [k for k in unapplied if k not in chosen]
    if rest:
        # What was not claimed is judged against the state the schema does match. One that is proven there
        # but waits on a migration that is not stays unrecordable: django.fake refuses a missing dependency.
        rest_results = prove(loader, connection, alias, tables, order, rest, recorded | chosen)
        results += rest_results
    return sorted(results, key=lambda r: order[(r["app"], r["name"])])


def fake_check(loader, connection, alias, tables, requested):
    """Judge the requested migrations (APP.NAME, or @unapplied for every migration without a row)."""
    order = graph_order(loader.graph)
    recorded = {k for k in loader.applied_migrations if k in loader.graph.nodes}
    if UNAPPLIED in requested:
        return infer(loader, connection, alias, tables, order)
    results, keys = [], []
    for text in requested:
        try:
            key = resolve(loader, text)
        except ValueError as exc:
            results.append({"requested": text, "migration": None, "status": "unknown", "error": str(exc)})
            continue
        if key not in keys:
            keys.append(key)
    keys.sort(key=order.__getitem__)
    return results + (prove(loader, connection, alias, tables, order, keys, recorded) if keys else [])


"""Answer runbook's questions about a Django project from inside its backend; print one JSON document.

Shipped as package data and run by the BACKEND's python (Django 5.x), never imported by runbook:

    python -c "$(cat django_inspect.py)" [--manage manage.py] [--database default] [--no-schema]
        [--fake-check APP.NAME[,APP.NAME...]] [--makemigrations-check] [--output FILE | --compress]
        [--add-missing-columns APP.NAME[,...]] [--restore-schema APP[,...]]   (the two that change the schema)

It reads the migration files, the history rows, the models and the live schema, and computes what is
wrong without calling anything that raises on a broken history (`check_consistent_history`, `migrate`).
Exit codes: 0 answered; 2 Django cannot start; 3 database unreachable; 5 Django not importable; 6 the
migration graph cannot be loaded (a broken migration file).
The last line of stderr always says why it failed.
"""

import argparse
import json
import os
import re
import sys
import traceback

FORMAT = 1
EXIT_DJANGO, EXIT_DATABASE, EXIT_NO_DJANGO, EXIT_GRAPH = 2, 3, 5, 6
MARKER = "RUNBOOK-ANSWER:"
UNAPPLIED = "@unapplied"
SETTINGS_RE = re.compile(r"""['"]DJANGO_SETTINGS_MODULE['"]\s*,\s*['"]([\w.]+)['"]""")

# Spellings of one PostgreSQL type: Django's db_type() on the left, format_type() on the right.
TYPE_ALIASES = [
    (r"^varchar\b", "character varying"),
    (r"^char\b", "character"),
    (r"^(int|int4|serial|serial4)$", "integer"),
    (r"^(int8|bigserial|serial8)$", "bigint"),
    (r"^(int2|smallserial|serial2)$", "smallint"),
    (r"^bool$", "boolean"),
    (r"^float8$", "double precision"),
    (r"^(float4)$", "real"),
    (r"^decimal\b", "numeric"),
    (r"^timestamptz\b", "timestamp with time zone"),
    (r"^timestamp(\(\d+\))?$", r"timestamp\1 without time zone"),
    (r"^timetz\b", "time with time zone"),
    (r"^time(\(\d+\))?$", r"time\1 without time zone"),
]


# ---- pure helpers (no Django): runbook's unit tests load this file to test them ----

def settings_from_manage(text):
    """Return the settings module that manage.py sets by default, or None."""
    match = SETTINGS_RE.search(text)
    return match.group(1) if match else None


def normalize_type(db_type):
    """Spell a column type the way PostgreSQL's format_type() does, for comparison."""
    if db_type is None:
        return None
    text = " ".join(str(db_type).lower().split())
    text = re.sub(r"\s*\(\s*", "(", text)
    text = re.sub(r"\s*,\s*", ",", text)
    text = re.sub(r"\s*\)", ")", text)
    suffix = ""
    while text.endswith("[]"):
        text, suffix = text[:-2].rstrip(), suffix + "[]"
    for pattern, replacement in TYPE_ALIASES:
        text = re.sub(pattern, replacement, text)
    return text + suffix


def describe_column(db_type, null):
    return f"{db_type} {'NULL' if null else 'NOT NULL'}"


def compare_column(expected, live, expects="the model expects"):
    """Return None when a live column matches the expected one, else (kind, message-part)."""
    if live is None:
        return ("column-missing", "does not exist")
    if (live.get("type") is not None and expected.get("check_type", True)
            and normalize_type(expected["type"]) != normalize_type(live["type"])):
        return ("column-type", f"is {live['type']}, {expects} {expected['type']}")
    if bool(live.get("null")) != bool(expected["null"]):
        want, got = ("NULL", "NOT NULL") if expected["null"] else ("NOT NULL", "NULL")
        return ("column-null", f"is {got}, {expects} {want}")
    return None


def schema_problems(models, tables, strict=False, expects="the model expects"):
    """Compare each model's table and columns with the live tables; one problem per difference.

    strict also reports what a live table has beyond the models: columns, unique constraints and foreign
    keys (extra plain indexes are tolerated: PostgreSQL's _like indexes and hand-made ones change nothing).
    """
    problems = []
    for model in models:
        table = tables.get(model["table"])
        label = model["model"]
        base = {"app": model.get("app", label.split(".")[0]), "model": label, "table": model["table"]}
        if table is None:
            problems.append({**base, "kind": "table-missing",
                             "message": f"table {model['table']} of model {label} does not exist"})
            continue
        problems += [{**base, **p} for p in key_problems(model, table, strict)]
        for column in model["columns"]:
            found = compare_column(column, table["columns"].get(column["column"]), expects)
            if found:
                kind, text = found
                live = table["columns"].get(column["column"]) or {}
                problems.append({
                    **base, "kind": kind, "column": column["column"],
                    "field": column["field"], "expected": describe_column(column["type"], column["null"]),
                    "actual": describe_column(live["type"], live["null"]) if live else None,
                    "message": f"column {model['table']}.{column['column']} (field {label}.{column['field']}) "
                               + text})
        if strict:
            known = {c["column"] for c in model["columns"]}
            for name in table["columns"]:
                if name not in known:
                    problems.append({**base, "kind": "column-unexpected", "column": name,
                                     "message": f"column {model['table']}.{name} exists, {expects} no such column"})
    return problems


def has_unique(table, columns):
    """True when a unique index or constraint (not the primary key) covers exactly these columns."""
    return any(i["unique"] and not i.get("primary") and i["columns"] == columns
               for i in table.get("indexes", ())) or any(
        c["type"] == "unique" and c["columns"] == columns for c in table.get("constraints", ()))


def has_index(table, columns):
    """True when any index (unique or not) has exactly these columns; names differ between installs."""
    return any(i["columns"] == columns for i in table.get("indexes", ())) or has_unique(table, columns)


def foreign_keys(table, columns):
    """Return the [table, columns] each foreign key on exactly these columns references."""
    return [c["references"] for c in table.get("constraints", ()) if c["columns"] == columns and c.get("references")]


def key_problems(model, table, strict=False):
    """Compare a model's unique constraints, indexes, foreign keys and checks (by columns) with a live table."""
    problems = []
    name = model["table"]
    for key in model.get("keys", []):
        columns, where = key["columns"], f"{name}({', '.join(key['columns'])})"
        base = {"column": ",".join(columns), "field": key.get("field")}
        if key["kind"] == "unique" and not has_unique(table, columns):
            problems.append({**base, "kind": "unique-missing",
                             "message": f"unique constraint on {where} does not exist ({key['why']})"})
        elif key["kind"] == "index" and not has_index(table, columns):
            problems.append({**base, "kind": "index-missing",
                             "message": f"index on {where} does not exist ({key['why']})"})
        elif key["kind"] == "check" and not has_check(table, key.get("name"), columns):
            what = f"check constraint {key['name']} on {name}" if key.get("name") else f"check constraint on {where}"
            problems.append({**base, "kind": "check-missing", "message": f"{what} does not exist ({key['why']})"})
        elif key["kind"] == "foreign key":
            found = foreign_keys(table, columns)
            if key["references"] in found:
                continue
            arrow = f"{where} -> {key['references'][0]}({', '.join(key['references'][1])})"
            others = ", ".join(f"{r[0]}({', '.join(r[1])})" for r in found)
            problems.append({**base, "kind": "foreign-key-differs" if found else "foreign-key-missing",
                             "message": f"foreign key {arrow} does not exist ({key['why']})"
                                        + (f"; it references {others}" if others else "")})
    if strict:
        problems += extra_keys(model, table)
    return problems


def extra_keys(model, table):
    """Return the unique constraints and foreign keys of a live table that the model does not have."""
    keys = model.get("keys", [])
    uniques = {tuple(k["columns"]) for k in keys if k["kind"] == "unique"}
    references = {(tuple(k["columns"]), k["references"][0], tuple(k["references"][1]))
                  for k in keys if k["kind"] == "foreign key"}
    primary = {tuple(i["columns"]) for i in table.get("indexes", ()) if i.get("primary")}
    live_unique = {tuple(i["columns"]) for i in table.get("indexes", ()) if i["unique"] and not i.get("primary")}
    live_unique |= {tuple(c["columns"]) for c in table.get("constraints", ()) if c["type"] == "unique"}
    problems = []
    for columns in sorted(live_unique - uniques - primary):
        if columns:  # an expression index has no plain columns
            problems.append({"kind": "unique-unexpected", "column": ",".join(columns),
                             "message": f"unique constraint on {model['table']}({', '.join(columns)}) exists, "
                                        "Django's migration state has none"})
    for constraint in table.get("constraints", ()):
        ref = constraint.get("references")
        if ref and (tuple(constraint["columns"]), ref[0], tuple(ref[1])) not in references:
            problems.append({"kind": "foreign-key-unexpected", "column": ",".join(constraint["columns"]),
                             "message": f"foreign key {model['table']}({', '.join(constraint['columns'])}) -> "
                                        f"{ref[0]}({', '.join(ref[1])}) exists, Django's migration state has none"})
    return problems


def has_check(table, name, columns):
    """True when the table has the named check constraint, or (unnamed) one on exactly these columns."""
    checks = [c for c in table.get("constraints", ()) if c["type"] == "check"]
    if name:
        return any(c["name"] == name for c in checks)
    return any(c["columns"] == columns for c in checks)


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


# ---- Django ----

def fail(code, message):
    sys.stderr.write(f"runbook-inspect: {message}\n")
    sys.exit(code)


def setup(manage, alias):
    manage_dir = os.path.dirname(os.path.abspath(manage))
    # `python manage.py` puts manage.py's directory first on sys.path; do the same.
    if manage_dir not in sys.path:
        sys.path.insert(0, manage_dir)
    if not os.environ.get("DJANGO_SETTINGS_MODULE"):
        try:
            with open(manage, encoding="utf-8") as handle:
                module = settings_from_manage(handle.read())
        except OSError as exc:
            fail(EXIT_DJANGO, f"DJANGO_SETTINGS_MODULE is not set and {manage} cannot be read: {exc.strerror}")
        if not module:
            fail(EXIT_DJANGO, f"DJANGO_SETTINGS_MODULE is not set and {manage} does not set it")
        os.environ["DJANGO_SETTINGS_MODULE"] = module
    try:
        import django
    except ImportError as exc:
        fail(EXIT_NO_DJANGO, f"Django is not importable by {sys.executable}: {exc}")
    try:
        django.setup()
        from django.db import connections

        connection = connections[alias]
        connection.ensure_connection()
    except Exception as exc:
        traceback.print_exc()
        text = " ".join(str(exc).split()) or type(exc).__name__
        if type(exc).__name__ == "OperationalError":
            fail(EXIT_DATABASE, f"Django cannot reach database {alias!r}: {text}")
        fail(EXIT_DJANGO, f"Django cannot start ({os.environ['DJANGO_SETTINGS_MODULE']}): "
                          f"{type(exc).__name__}: {text}")
    return django, connection


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


def model_columns(model, connection):
    columns = []
    for field in model._meta.local_fields:
        db_type = field.db_type(connection)
        if field.column is None or db_type is None:
            continue
        column = {"field": field.name, "column": field.column, "type": db_type, "null": bool(field.null)}
        if model._meta.auto_created and field.primary_key:
            # The id of an auto-created many-to-many table follows the app's default_auto_field in the
            # models but was created from the migration state (often bigint): Django never migrates it.
            column["check_type"] = False
        columns.append(column)
    return columns


def model_keys(model, connection):
    """Return the unique constraints, indexes, foreign keys and checks a model's table should have, by columns."""
    from django.db.models import CheckConstraint, UniqueConstraint

    keys, opts = [], model._meta
    for field in opts.local_fields:
        if field.column is None:
            continue
        why = f"field {opts.label}.{field.name}"
        if field.remote_field is not None and getattr(field, "db_constraint", False):
            # A primary key can be a foreign key too: multi-table inheritance (page_ptr), one-to-one keys.
            target = field.target_field
            keys.append({"kind": "foreign key", "columns": [field.column], "field": field.name, "why": why,
                         "references": [target.model._meta.db_table, [target.column]]})
        if field.primary_key:
            continue
        if field.unique:
            keys.append({"kind": "unique", "columns": [field.column], "field": field.name, "why": why + " unique"})
        elif field.db_index:
            keys.append({"kind": "index", "columns": [field.column], "field": field.name, "why": why + " db_index"})
        if field.db_check(connection):
            keys.append({"kind": "check", "columns": [field.column], "field": field.name, "why": why + " check"})
    for kind, sets in (("unique", opts.unique_together), ("index", getattr(opts, "index_together", ()))):
        for fields in sets:
            keys.append({"kind": kind, "columns": [opts.get_field(f).column for f in fields], "field": None,
                         "why": f"{opts.label} Meta.{kind}_together {list(fields)}"})
    for index in opts.indexes:
        # Expression indexes have no plain columns to compare.
        if index.fields and not index.contains_expressions:
            keys.append({"kind": "index", "columns": [opts.get_field(f.lstrip("-")).column for f in index.fields],
                         "field": None, "why": f"{opts.label} Meta.indexes {index.name}"})
    for constraint in opts.constraints:
        if isinstance(constraint, UniqueConstraint) and constraint.fields and not constraint.contains_expressions:
            keys.append({"kind": "unique", "columns": [opts.get_field(f).column for f in constraint.fields],
                         "field": None, "why": f"{opts.label} Meta.constraints {constraint.name}"})
        elif isinstance(constraint, CheckConstraint):
            keys.append({"kind": "check", "name": constraint.name, "columns": [], "field": None,
                         "why": f"{opts.label} Meta.constraints {constraint.name}"})
    return keys


def should_exist(model, alias):
    from django.db import router

    opts = model._meta
    return opts.managed and not opts.proxy and not opts.swapped and router.allow_migrate_model(alias, model)


def describe_models(models, connection, alias, labels=None):
    """Describe the tables these models (real or rendered from a migration state) make in the database."""
    found = []
    for model in models:
        if (labels is None or model._meta.app_label in labels) and should_exist(model, alias):
            found.append({"app": model._meta.app_label, "model": model._meta.label,
                          "table": model._meta.db_table, "columns": model_columns(model, connection),
                          "keys": model_keys(model, connection)})
    return sorted(found, key=lambda m: (m["app"], m["table"]))


def models_part(connection, alias):
    from django.apps import apps

    return describe_models(apps.get_models(include_auto_created=True), connection, alias)


# Django's introspection names a column's type by the field class it maps to, which loses what the proof
# compares (varchar(100) and varchar(200) are both CharField): the database spells the type itself.
PG_TYPES = """
SELECT c.relname, a.attname, pg_catalog.format_type(a.atttypid, a.atttypmod)
FROM pg_catalog.pg_attribute a JOIN pg_catalog.pg_class c ON c.oid = a.attrelid
WHERE c.relname = ANY(%s) AND pg_catalog.pg_table_is_visible(c.oid) AND a.attnum > 0 AND NOT a.attisdropped"""


def column_types(connection, cursor, names):
    """Return {(table, column): type as the database spells it}; empty where runbook cannot ask (not PostgreSQL)."""
    if connection.vendor != "postgresql":
        return {}
    cursor.execute(PG_TYPES, [names])
    return {(table, column): db_type for table, column, db_type in cursor.fetchall()}


def live_schema(connection):
    """Return {table: {columns: {name: {type, null}}, indexes: [...], constraints: [...]}} of the live database.

    Read through Django's own introspection (tables, columns, nullability, indexes and constraints), so the
    proof works on any backend Django supports; only the type's spelling comes from the database itself.
    """
    introspection = connection.introspection
    with connection.cursor() as cursor:
        names = sorted(t.name for t in introspection.get_table_list(cursor))
        types = column_types(connection, cursor, names)
        tables = {name: {"columns": {}, "indexes": [], "constraints": []} for name in names}
        for name in names:
            for info in introspection.get_table_description(cursor, name):
                tables[name]["columns"][info.name] = {"type": types.get((name, info.name)),
                                                      "null": bool(info.null_ok)}
            for cname, spec in introspection.get_constraints(cursor, name).items():
                columns = [c for c in spec["columns"] if c is not None]  # an expression has no column
                if spec.get("index"):
                    tables[name]["indexes"].append({"name": cname, "columns": columns,
                                                    "unique": bool(spec["unique"]),
                                                    "primary": bool(spec["primary_key"])})
                if not spec.get("index") or spec.get("unique"):
                    entry = {"name": cname, "type": "foreign key" if spec.get("foreign_key") else
                             "primary key" if spec.get("primary_key") else
                             "unique" if spec.get("unique") else "check", "columns": columns}
                    if spec.get("foreign_key"):
                        entry["references"] = [spec["foreign_key"][0], [spec["foreign_key"][1]]]
                    tables[name]["constraints"].append(entry)
    return tables


# ---- the proof: the live schema against Django's migration state ----
#
# What the history claims is Django's ProjectState after a set of migrations, rendered as tables; what the
# database has is the live schema. A migration may be recorded when the live tables of its app match the
# state of everything recorded plus that migration. Checking one migration's operations against the final
# schema cannot work on a real history, where a table is created early and altered, renamed or re-keyed later.

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
    """Return {key: position} in an order that puts every migration after its dependencies."""
    order = {}
    for leaf in sorted(graph.leaf_nodes()):
        for key in graph.forwards_plan(leaf):
            order.setdefault(key, len(order))
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
        # What was not claimed is judged against the state the schema does match.
        # What was not claimed is judged against the state the schema does match. One that is proven there
        # but waits on a migration that is not stays unrecordable: django.fake refuses a missing dependency.
        rest_results = prove(loader, connection, alias, tables, order, rest, recorded | chosen)
        results += rest_results
    return sorted(results, key=lambda r: order[(r["app"], r["name"])])


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


def add_missing_columns(loader, connection, tables, requested):
    """Add the columns a migration's CreateModel/AddField make that are missing from tables that exist.

    Only columns: a missing table, or anything that exists but differs, is left to the fake guard to refuse.
    Each column is added by Django's own schema editor, as running the migration would add it.
    """
    from django.db.migrations import operations as ops

    added = []
    for text in requested:
        key = resolve(loader, text)
        state = loader.project_state(key, at_end=False)
        for op in loader.graph.nodes[key].operations:
            op.state_forwards(key[0], state)
            if isinstance(op, ops.CreateModel):
                model = state.apps.get_model(key[0], op.name)
                fields = list(model._meta.local_fields)
            elif isinstance(op, ops.AddField):
                model = state.apps.get_model(key[0], op.model_name)
                fields = [model._meta.get_field(op.name)]
            else:
                continue
            table = tables.get(model._meta.db_table)
            if table is None:
                continue
            for field in fields:
                if field.column is None or field.db_type(connection) is None or field.column in table["columns"]:
                    continue
                with connection.schema_editor(atomic=True) as editor:
                    editor.add_field(model, field)
                table["columns"][field.column] = {"type": field.db_type(connection), "null": field.null}
                added.append(f"{model._meta.db_table}.{field.column}")
    return added


def restore_schema(loader, connection, alias, tables, labels):
    """Put back what the recorded migrations made and the live schema lost: tables, columns, their keys.

    The target is Django's migration state after the recorded migrations, not the migration that first
    made each piece: a real history altered it later. Everything is added by Django's own schema editor,
    in one transaction, so a refusal or a failure leaves the schema as it was. Data of a dropped column is
    not brought back: its rows get the field's default.
    """
    order = graph_order(loader.graph)
    recorded = {k for k in loader.applied_migrations if k in loader.graph.nodes}
    state = state_of(loader, order, recorded)
    models = [m for m in state.apps.get_models(include_auto_created=True)
              if m._meta.app_label in labels and should_exist(m, alias)]
    restored, refusals, made = [], [], set()
    with connection.schema_editor(atomic=True) as editor:
        for model in models:
            opts = model._meta
            if opts.db_table in made:
                continue
            if opts.db_table not in tables:
                editor.create_model(model)  # with its auto-created many-to-many tables
                made.update([opts.db_table] + [f.remote_field.through._meta.db_table for f in opts.local_many_to_many
                                               if f.remote_field.through._meta.auto_created])
                restored.append(f"table {opts.db_table}")
                continue
            live = tables[opts.db_table]
            added = []
            for field in opts.local_fields:
                if field.column is None or field.db_type(connection) is None or field.column in live["columns"]:
                    continue
                if not field.null and editor.effective_default(field) is None and has_rows(connection, opts.db_table):
                    refusals.append(f"column {opts.db_table}.{field.column} is NOT NULL with no default and "
                                    f"{opts.db_table} has rows: add it by hand with a value for them")
                    continue
                editor.add_field(model, field)
                added.append(field.column)
                restored.append(f"column {opts.db_table}.{field.column}")
            if added:
                restored += restore_keys(editor, model, set(added))
        if refusals:
            # Leave the schema as it was: the whole restore is one transaction.
            raise RestoreRefused(refusals)
    return restored


class RestoreRefused(Exception):
    def __init__(self, refusals):
        super().__init__("; ".join(refusals))
        self.refusals = refusals


def has_rows(connection, table):
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT EXISTS (SELECT 1 FROM {connection.ops.quote_name(table)})")
        return bool(cursor.fetchone()[0])


def restore_keys(editor, model, added):
    """Re-create the indexes and constraints over several columns that dropping one of them took away."""
    opts, restored = model._meta, []

    def touches(fields):
        return any(opts.get_field(f.lstrip("-")).column in added for f in fields)

    for fields in opts.unique_together:
        if touches(fields):
            editor.alter_unique_together(model, [], [fields])
            restored.append(f"unique constraint on {opts.db_table}({', '.join(fields)})")
    for index in opts.indexes:
        if index.fields and touches(index.fields):
            editor.add_index(model, index)
            restored.append(f"index {index.name}")
    for constraint in opts.constraints:
        if getattr(constraint, "fields", None) and touches(constraint.fields):
            editor.add_constraint(model, constraint)
            restored.append(f"constraint {constraint.name}")
    return restored


def makemigrations_check(loader):
    """Return what `makemigrations --check --dry-run` would write, without its history check."""
    from django.apps import apps
    from django.db.migrations.autodetector import MigrationAutodetector
    from django.db.migrations.questioner import MigrationQuestioner
    from django.db.migrations.state import ProjectState

    # The base questioner never prompts and never exits (the non-interactive one exits 3 on a
    # non-nullable field without default, which is still a change to report).
    autodetector = MigrationAutodetector(loader.project_state(), ProjectState.from_apps(apps),
                                         MigrationQuestioner(specified_apps=set(), dry_run=True))
    changes = autodetector.changes(graph=loader.graph)
    found = {app: [{"name": m.name, "operations": [operation_text(op) for op in m.operations]}
                   for m in migrations] for app, migrations in sorted(changes.items())}
    conflicts = {app: sorted(names) for app, names in loader.detect_conflicts().items()}
    return {"clean": not found and not conflicts, "changes": found, "conflicts": conflicts}


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


def inspect(args):
    django, connection = setup(args.manage, args.database)
    from django.db.migrations.loader import MigrationLoader
    from django.db.migrations.recorder import MigrationRecorder

    recorder = MigrationRecorder(connection)
    loader = load_graph(MigrationLoader, connection)
    history, problems = migrations_part(loader, recorder)
    document = {"format": FORMAT, "framework": "django", "django": django.get_version(),
                "python": sys.version.split()[0], "settings": os.environ.get("DJANGO_SETTINGS_MODULE"),
                "database": args.database, "vendor": connection.vendor, **history}
    models = models_part(connection, args.database)
    document["models"] = models
    tables = live_schema(connection) if not args.no_schema or args.fake_check else {}
    if not args.no_schema:
        document["schema"] = {"tables": tables}
        problems += schema_problems(models, tables)
    document["problems"] = problems
    if args.fake_check:
        # @unapplied: every migration without a history row, inferred from the schema, so that `diagnose`
        # needs one Django start, not two.
        requested = [n.strip() for part in args.fake_check for n in part.split(",") if n.strip()]
        document["fake_check"] = fake_check(loader, connection, args.database, tables, requested)
    if args.makemigrations_check:
        document["makemigrations"] = makemigrations_check(loader)
    if args.restore_schema:
        labels = {n.strip() for part in args.restore_schema for n in part.split(",") if n.strip()}
        try:
            document["restored"] = restore_schema(loader, connection, args.database, live_schema(connection), labels)
            document["restore_refused"] = []
        except RestoreRefused as exc:
            document["restored"], document["restore_refused"] = [], exc.refusals
    if args.add_missing_columns:
        names = [n for part in args.add_missing_columns for n in part.split(",") if n.strip()]
        document["added_columns"] = add_missing_columns(loader, connection, live_schema(connection), names)
    return document


def main(argv):
    parser = argparse.ArgumentParser(prog="runbook-inspect")
    parser.add_argument("--manage", default="manage.py")
    parser.add_argument("--database", default="default")
    parser.add_argument("--output")
    parser.add_argument("--fake-check", action="append", default=[])
    parser.add_argument("--makemigrations-check", action="store_true")
    parser.add_argument("--add-missing-columns", action="append", default=[])
    parser.add_argument("--restore-schema", action="append", default=[])
    parser.add_argument("--no-schema", action="store_true")
    parser.add_argument("--compress", action="store_true")
    args = parser.parse_args(argv)
    try:
        document = inspect(args)
    except SystemExit:
        raise
    except Exception as exc:
        traceback.print_exc()
        fail(EXIT_DJANGO, f"inspection failed: {type(exc).__name__}: {' '.join(str(exc).split())}")
    emit(json.dumps(document, sort_keys=True, default=str), args)


def emit(text, args):
    """Print the answer; --compress makes it one marked line that survives noise and output limits."""
    if args.output:
        with open(args.output, "w", encoding="utf-8") as handle:
            handle.write(text)
    elif args.compress:
        import base64
        import zlib

        sys.stdout.write("\n" + MARKER + base64.b64encode(zlib.compress(text.encode(), 6)).decode() + "\n")
    else:
        sys.stdout.write(text + "\n")


if __name__ == "__main__":
    main(sys.argv[1:])

"""Answer runbook's questions about a Django project from inside its backend; print one JSON document.

Shipped as package data and run by the BACKEND's python (Django 5.x), never imported by runbook:

    python -c "$(cat django_inspect.py)" [--manage manage.py] [--database default] [--no-schema]
        [--fake-check APP.NAME[,APP.NAME...]] [--makemigrations-check] [--output FILE | --compress]
        [--add-missing-columns APP.NAME[,...]]   (the one option that changes the schema)

It reads the migration files, the history rows, the models and the live schema, and computes what is
wrong without calling anything that raises on a broken history (`check_consistent_history`, `migrate`).
Exit codes: 0 answered; 2 Django cannot start; 3 database unreachable; 5 Django not importable.
The last line of stderr always says why it failed.
"""

import argparse
import json
import os
import re
import sys
import traceback

FORMAT = 1
EXIT_DJANGO, EXIT_DATABASE, EXIT_NO_DJANGO = 2, 3, 5
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


def schema_problems(models, tables):
    """Compare each model's table and columns with the live tables; one problem per difference."""
    problems = []
    for model in models:
        table = tables.get(model["table"])
        label = model["model"]
        if table is None:
            problems.append({"kind": "table-missing", "model": label, "table": model["table"],
                             "message": f"table {model['table']} of model {label} does not exist"})
            continue
        problems += key_problems(model, table)
        for column in model["columns"]:
            found = compare_column(column, table["columns"].get(column["column"]))
            if found:
                kind, text = found
                live = table["columns"].get(column["column"]) or {}
                problems.append({
                    "kind": kind, "model": label, "table": model["table"], "column": column["column"],
                    "field": column["field"], "expected": describe_column(column["type"], column["null"]),
                    "actual": describe_column(live["type"], live["null"]) if live else None,
                    "message": f"column {model['table']}.{column['column']} (field {label}.{column['field']}) "
                               + text})
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


def key_problems(model, table):
    """Compare a model's unique constraints, indexes and foreign keys (by columns) with a live table."""
    problems = []
    label, name = model["model"], model["table"]
    for key in model.get("keys", []):
        columns, where = key["columns"], f"{name}({', '.join(key['columns'])})"
        base = {"model": label, "table": name, "column": ",".join(columns), "field": key.get("field")}
        if key["kind"] == "unique" and not has_unique(table, columns):
            problems.append({**base, "kind": "unique-missing",
                             "message": f"unique constraint on {where} does not exist ({key['why']})"})
        elif key["kind"] == "index" and not has_index(table, columns):
            problems.append({**base, "kind": "index-missing",
                             "message": f"index on {where} does not exist ({key['why']})"})
        elif key["kind"] == "foreign key":
            found = foreign_keys(table, columns)
            if key["references"] in found:
                continue
            arrow = f"{where} -> {key['references'][0]}({', '.join(key['references'][1])})"
            others = ", ".join(f"{r[0]}({', '.join(r[1])})" for r in found)
            problems.append({**base, "kind": "foreign-key-differs" if found else "foreign-key-missing",
                             "message": f"foreign key {arrow} does not exist ({key['why']})"
                                        + (f"; it references {others}" if others else "")})
    return problems


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


def model_keys(model):
    """Return the unique constraints, indexes and foreign keys a model's table should have, by columns."""
    keys, opts = [], model._meta
    for field in opts.local_fields:
        if field.column is None or field.primary_key:
            continue
        why = f"field {opts.label}.{field.name}"
        if field.remote_field is not None and getattr(field, "db_constraint", False):
            target = field.target_field
            keys.append({"kind": "foreign key", "columns": [field.column], "field": field.name, "why": why,
                         "references": [target.model._meta.db_table, [target.column]]})
        if field.unique:
            keys.append({"kind": "unique", "columns": [field.column], "field": field.name, "why": why + " unique"})
        elif field.db_index:
            keys.append({"kind": "index", "columns": [field.column], "field": field.name, "why": why + " db_index"})
    for kind, sets in (("unique", opts.unique_together), ("index", getattr(opts, "index_together", ()))):
        for fields in sets:
            keys.append({"kind": kind, "columns": [opts.get_field(f).column for f in fields], "field": None,
                         "why": f"{opts.label} Meta.{kind}_together {list(fields)}"})
    return keys


def should_exist(model, alias):
    from django.db import router

    opts = model._meta
    return opts.managed and not opts.proxy and not opts.swapped and router.allow_migrate_model(alias, model)


def models_part(connection, alias):
    from django.apps import apps

    models = []
    for model in apps.get_models(include_auto_created=True):
        if should_exist(model, alias):
            models.append({"app": model._meta.app_label, "model": model._meta.label,
                           "table": model._meta.db_table, "columns": model_columns(model, connection),
                           "keys": model_keys(model)})
    return sorted(models, key=lambda m: (m["app"], m["table"]))


PG_COLUMNS = """
SELECT c.relname, a.attname, pg_catalog.format_type(a.atttypid, a.atttypmod), NOT a.attnotnull
FROM pg_catalog.pg_attribute a JOIN pg_catalog.pg_class c ON c.oid = a.attrelid
WHERE c.relname = ANY(%s) AND pg_catalog.pg_table_is_visible(c.oid) AND a.attnum > 0 AND NOT a.attisdropped
ORDER BY c.relname, a.attnum"""
PG_INDEXES = """
SELECT t.relname, i.relname, x.indisunique, x.indisprimary,
  ARRAY(SELECT a.attname FROM unnest(x.indkey) WITH ORDINALITY k(n, o)
        JOIN pg_catalog.pg_attribute a ON a.attrelid = t.oid AND a.attnum = k.n ORDER BY k.o)
FROM pg_catalog.pg_index x JOIN pg_catalog.pg_class t ON t.oid = x.indrelid
JOIN pg_catalog.pg_class i ON i.oid = x.indexrelid
WHERE t.relname = ANY(%s) AND pg_catalog.pg_table_is_visible(t.oid)"""
PG_CONSTRAINTS = """
SELECT t.relname, c.conname, c.contype, r.relname,
  ARRAY(SELECT a.attname FROM unnest(c.conkey) WITH ORDINALITY k(n, o)
        JOIN pg_catalog.pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.n ORDER BY k.o),
  ARRAY(SELECT a.attname FROM unnest(c.confkey) WITH ORDINALITY k(n, o)
        JOIN pg_catalog.pg_attribute a ON a.attrelid = c.confrelid AND a.attnum = k.n ORDER BY k.o)
FROM pg_catalog.pg_constraint c JOIN pg_catalog.pg_class t ON t.oid = c.conrelid
LEFT JOIN pg_catalog.pg_class r ON r.oid = c.confrelid
WHERE t.relname = ANY(%s) AND pg_catalog.pg_table_is_visible(t.oid)"""
CONTYPES = {"p": "primary key", "u": "unique", "f": "foreign key", "c": "check", "x": "exclusion"}


def live_schema(connection):
    """Return {table: {columns: {name: {type, null}}, indexes: [...], constraints: [...]}} of the live DB."""
    with connection.cursor() as cursor:
        names = sorted(t.name for t in connection.introspection.get_table_list(cursor))
        tables = {name: {"columns": {}, "indexes": [], "constraints": []} for name in names}
        if connection.vendor == "postgresql":
            cursor.execute(PG_COLUMNS, [names])
            for table, column, db_type, null in cursor.fetchall():
                tables[table]["columns"][column] = {"type": db_type, "null": null}
            cursor.execute(PG_INDEXES, [names])
            for table, name, unique, primary, columns in cursor.fetchall():
                tables[table]["indexes"].append({"name": name, "columns": list(columns), "unique": unique,
                                                 "primary": primary})
            cursor.execute(PG_CONSTRAINTS, [names])
            for table, name, kind, ref, columns, ref_columns in cursor.fetchall():
                entry = {"name": name, "type": CONTYPES.get(kind, kind), "columns": list(columns)}
                if ref:
                    entry["references"] = [ref, list(ref_columns)]
                tables[table]["constraints"].append(entry)
            return tables
        # Other vendors: Django's introspection, no comparable type names.
        for name in names:
            for info in connection.introspection.get_table_description(cursor, name):
                tables[name]["columns"][info.name] = {"type": None, "null": bool(info.null_ok)}
            for cname, spec in connection.introspection.get_constraints(cursor, name).items():
                if spec.get("index"):
                    tables[name]["indexes"].append({"name": cname, "columns": spec["columns"],
                                                    "unique": bool(spec["unique"]),
                                                    "primary": bool(spec["primary_key"])})
                if not spec.get("index") or spec.get("unique"):
                    entry = {"name": cname, "type": "foreign key" if spec.get("foreign_key") else
                             "primary key" if spec.get("primary_key") else
                             "unique" if spec.get("unique") else "check", "columns": spec["columns"]}
                    if spec.get("foreign_key"):
                        entry["references"] = [spec["foreign_key"][0], [spec["foreign_key"][1]]]
                    tables[name]["constraints"].append(entry)
    return tables


# ---- fake check: what a migration creates, and is it already there ----

class Checker:
    """Prove, operation by operation, that the live schema already holds what a migration would do."""

    def __init__(self, connection, alias, tables):
        self.connection, self.alias, self.tables = connection, alias, tables

    def item(self, subject, ok, message, problem=None):
        # `subject` names the schema object; a later operation on the same subject supersedes this one.
        return {"subject": subject, "ok": ok, "message": message,
                "problem": problem if ok is False else ("cannot-prove" if ok is None else None)}

    def names(self, table):
        info = self.tables.get(table) or {"indexes": [], "constraints": []}
        return {i["name"] for i in info["indexes"]} | {c["name"] for c in info["constraints"]}

    def table_present(self, table, what):
        if table in self.tables:
            return self.item(f"table {table}", True, f"{what} {table} exists")
        return self.item(f"table {table}", False, f"{what} {table} does not exist", "missing")

    def table_absent(self, table, what):
        if table in self.tables:
            return self.item(f"table {table}", False, f"{what} {table} still exists", "unexpected")
        return self.item(f"table {table}", True, f"{what} {table} is gone")

    def column_present(self, table, field):
        expected = {"type": field.db_type(self.connection), "null": bool(field.null)}
        where = f"column {table}.{field.column}"
        live = (self.tables.get(table) or {"columns": {}})["columns"].get(field.column)
        if table not in self.tables:
            return self.item(where, False, f"{where} cannot exist: table {table} does not exist", "missing")
        found = compare_column(expected, live, "the migration makes it")
        if found is None:
            return self.item(where, True, f"{where} exists ({describe_column(expected['type'], expected['null'])})")
        kind, text = found
        return self.item(where, False, f"{where} {text}", "missing" if kind == "column-missing" else "differs")

    def column_absent(self, table, column):
        where = f"column {table}.{column}"
        if column in (self.tables.get(table) or {"columns": {}})["columns"]:
            return self.item(where, False, f"{where} still exists", "unexpected")
        return self.item(where, True, f"{where} is gone")

    def name_present(self, table, name, what):
        subject = f"{what} {table}.{name}"
        if name in self.names(table):
            return self.item(subject, True, f"{what} {name} on {table} exists")
        return self.item(subject, False, f"{what} {name} on {table} does not exist", "missing")

    def name_absent(self, table, name, what):
        subject = f"{what} {table}.{name}"
        if name in self.names(table):
            return self.item(subject, False, f"{what} {name} on {table} still exists", "unexpected")
        return self.item(subject, True, f"{what} {name} on {table} is gone")

    def foreign_key(self, table, field):
        target = field.target_field
        ref = [target.model._meta.db_table, [target.column]]
        subject, arrow = f"foreign key {table}.{field.column}", f"{table}.{field.column} -> {ref[0]}.{target.column}"
        others = []
        for constraint in (self.tables.get(table) or {"constraints": []})["constraints"]:
            if constraint["columns"] == [field.column] and constraint.get("references") == ref:
                return self.item(subject, True, f"foreign key {arrow} exists")
            if constraint["columns"] == [field.column] and constraint.get("references"):
                others.append(f"{constraint['references'][0]}.{','.join(constraint['references'][1])}")
        if others:
            return self.item(subject, False, f"foreign key {arrow} does not exist; it references "
                                             f"{', '.join(others)}", "differs")
        return self.item(subject, False, f"foreign key {arrow} does not exist", "missing")

    def unique(self, table, columns, wanted):
        has = has_unique(self.tables.get(table) or {"indexes": [], "constraints": []}, columns)
        what = f"unique constraint on {table}({', '.join(columns)})"
        if has == wanted:
            return self.item(what, True, f"{what} {'exists' if wanted else 'is absent'}")
        return self.item(what, False, f"{what} {'does not exist' if wanted else 'still exists'}",
                         "missing" if wanted else "unexpected")

    def index(self, table, columns, wanted):
        has = has_index(self.tables.get(table) or {"indexes": [], "constraints": []}, columns)
        what = f"index on {table}({', '.join(columns)})"
        if has == wanted:
            return self.item(what, True, f"{what} {'exists' if wanted else 'is absent'}")
        return self.item(what, False, f"{what} {'does not exist' if wanted else 'still exists'}",
                         "missing" if wanted else "unexpected")

    def key_items(self, table, field):
        # Only for a column that exists: a missing one is already refused, and a later migration's
        # check on the same column (RemoveField, RenameField) can then supersede it.
        if field.primary_key:
            return []
        if field.unique:
            return [self.unique(table, [field.column], True)]
        if field.db_index:
            return [self.index(table, [field.column], True)]
        return []

    def model_items(self, model):
        table = model._meta.db_table
        items = [self.table_present(table, "table")]
        if table in self.tables:
            for field in model._meta.local_fields:
                items += self.field_items(model, field)
            items += [self.name_present(table, i.name, "index") for i in model._meta.indexes if i.name]
            items += [self.name_present(table, c.name, "constraint") for c in model._meta.constraints]
            items += self.together_items(model, model, model._meta.unique_together, ())
            for fields in getattr(model._meta, "index_together", ()):
                items.append(self.index(table, [model._meta.get_field(f).column for f in fields], True))
        for field in model._meta.local_many_to_many:
            through = field.remote_field.through
            if through._meta.auto_created:
                items.append(self.table_present(through._meta.db_table, "many-to-many table"))
        return items

    def field_items(self, model, field):
        if field.many_to_many:
            through = field.remote_field.through
            if not through._meta.auto_created:
                return []
            return [self.table_present(through._meta.db_table, "many-to-many table")]
        if field.column is None or field.db_type(self.connection) is None:
            return []
        items = [self.column_present(model._meta.db_table, field)]
        if field.remote_field is not None and getattr(field, "db_constraint", False) \
                and items[0]["problem"] != "missing":
            items.append(self.foreign_key(model._meta.db_table, field))
        if items[0]["problem"] != "missing":
            items += self.key_items(model._meta.db_table, field)
        return items

    def alter_field_items(self, old_model, new_model, old, new):
        table = new_model._meta.db_table
        # Django's own test for "does this AlterField touch the database" (private, so looked up softly).
        should = getattr(self.connection.schema_editor(collect_sql=True), "_field_should_be_altered", None)
        if should is not None and not should(old, new):
            return [], "changes nothing the database stores"
        items, unknown = [], []
        if old.column != new.column:
            items.append(self.column_absent(table, old.column))
        if new.column is None or new.db_type(self.connection) is None:
            return items, None
        items.append(self.column_present(table, new))
        old_ref = getattr(old, "target_field", None) if old.remote_field else None
        new_ref = getattr(new, "target_field", None) if new.remote_field else None
        if new_ref is not None and getattr(new, "db_constraint", False):
            items.append(self.foreign_key(table, new))
        elif old_ref is not None:
            unknown.append("dropping the foreign key")
        if old.unique != new.unique and not new.primary_key:
            items.append(self.unique(table, [new.column], bool(new.unique)))
        if old.db_index != new.db_index and not new.unique and not new.primary_key:
            items.append(self.index(table, [new.column], bool(new.db_index)))
        for attr in ("db_default", "db_comment", "db_collation"):
            if getattr(old, attr, None) != getattr(new, attr, None):
                unknown.append(attr)
        if unknown:
            items.append(self.item(f"column {table}.{new.column}", None,
                                   f"{table}.{new.column}: cannot check {', '.join(unknown)} from the schema"))
        return items, None

    def together_items(self, model, old_model, sets_after, sets_before):
        table = model._meta.db_table
        to_columns = [[model._meta.get_field(f).column for f in fields] for fields in sets_after]
        gone = [[old_model._meta.get_field(f).column for f in fields] for fields in sets_before
                if tuple(fields) not in {tuple(s) for s in sets_after}]
        return [self.unique(table, c, True) for c in to_columns] + [self.unique(table, c, False) for c in gone]

    def operation(self, op, app, before, after):
        """Return the check of one operation: {type, describe, status, checks, note}."""
        from django.db.migrations import operations as ops

        name = type(op).__name__
        result = {"type": name, "describe": operation_text(op), "checks": [], "note": None}
        items, note = [], None

        def model(state, model_name):
            return state.apps.get_model(app, model_name)

        try:
            if isinstance(op, ops.CreateModel):
                new = model(after, op.name)
                if should_exist(new, self.alias):
                    items = self.model_items(new)
                else:
                    note = "unmanaged, proxy or routed elsewhere: nothing in the database"
            elif isinstance(op, ops.DeleteModel):
                old = model(before, op.name)
                items = [self.table_absent(old._meta.db_table, "table")] if should_exist(old, self.alias) else []
            elif isinstance(op, ops.AddField):
                new = model(after, op.model_name)
                items = self.field_items(new, new._meta.get_field(op.name)) if should_exist(new, self.alias) else []
            elif isinstance(op, ops.RemoveField):
                old = model(before, op.model_name)
                field = old._meta.get_field(op.name)
                if should_exist(old, self.alias):
                    if field.many_to_many and field.remote_field.through._meta.auto_created:
                        items = [self.table_absent(field.remote_field.through._meta.db_table, "many-to-many table")]
                    elif field.column is not None:
                        items = [self.column_absent(old._meta.db_table, field.column)]
            elif isinstance(op, ops.RenameField):
                old, new = model(before, op.model_name), model(after, op.model_name)
                old_field, new_field = old._meta.get_field(op.old_name), new._meta.get_field(op.new_name)
                if old_field.column == new_field.column or not should_exist(new, self.alias):
                    note = "the column name does not change"
                else:
                    items = [self.column_absent(new._meta.db_table, old_field.column),
                             self.column_present(new._meta.db_table, new_field)]
            elif isinstance(op, ops.AlterField):
                old, new = model(before, op.model_name), model(after, op.model_name)
                if should_exist(new, self.alias):
                    items, note = self.alter_field_items(old, new, old._meta.get_field(op.name),
                                                         new._meta.get_field(op.name))
            elif isinstance(op, (ops.RenameModel, ops.AlterModelTable)):
                old_name = op.old_name if isinstance(op, ops.RenameModel) else op.name
                new_name = op.new_name if isinstance(op, ops.RenameModel) else op.name
                old, new = model(before, old_name), model(after, new_name)
                if old._meta.db_table == new._meta.db_table or not should_exist(new, self.alias):
                    note = "the table name does not change"
                else:
                    items = [self.table_absent(old._meta.db_table, "table"),
                             self.table_present(new._meta.db_table, "table")]
            elif isinstance(op, ops.AddIndex):
                items = [self.name_present(model(after, op.model_name)._meta.db_table, op.index.name, "index")]
            elif isinstance(op, ops.RemoveIndex):
                items = [self.name_absent(model(before, op.model_name)._meta.db_table, op.name, "index")]
            elif isinstance(op, ops.RenameIndex):
                table = model(after, op.model_name)._meta.db_table
                items = [self.name_present(table, op.new_name, "index")]
                if op.old_name:
                    items.append(self.name_absent(table, op.old_name, "index"))
            elif isinstance(op, ops.AddConstraint):
                items = [self.name_present(model(after, op.model_name)._meta.db_table, op.constraint.name,
                                           "constraint")]
            elif isinstance(op, ops.RemoveConstraint):
                items = [self.name_absent(model(before, op.model_name)._meta.db_table, op.name, "constraint")]
            elif isinstance(op, ops.AlterUniqueTogether):
                new, old = model(after, op.name), model(before, op.name)
                items = self.together_items(new, old, new._meta.unique_together, old._meta.unique_together)
            elif isinstance(op, (ops.AlterModelOptions, ops.AlterModelManagers)):
                note = "changes Python state only"
            elif isinstance(op, ops.RunSQL) and op.sql in ("", [], ()):
                note = "RunSQL.noop"
            elif isinstance(op, ops.RunPython) and op.code is ops.RunPython.noop:
                note = "RunPython.noop"
            elif isinstance(op, ops.SeparateDatabaseAndState) and not op.database_operations:
                note = "changes Python state only"
            else:
                items = [self.item(f"operation {name}", None,
                                   f"{name} cannot be proven from the schema: {result['describe']}"
                                   + (" (runs code or SQL that may change data)"
                                      if isinstance(op, (ops.RunPython, ops.RunSQL)) else ""))]
        except LookupError as exc:
            items = [self.item(f"operation {name}", None,
                               f"{name}: cannot resolve the model in the migration state: {exc}")]
        result["checks"], result["note"] = items, note
        result["status"] = status_of(items)
        return result


def status_of(items):
    if any(i["ok"] is False and i["problem"] == "missing" for i in items):
        return "missing"
    if any(i["ok"] is False for i in items):
        return "differs"
    if any(i["ok"] is None for i in items):
        return "cannot-prove"
    return "proven" if items else "no-op"


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


def graph_order(graph):
    """Return {key: position} in an order that puts every migration after its dependencies."""
    order = {}
    for leaf in sorted(graph.leaf_nodes()):
        for key in graph.forwards_plan(leaf):
            order.setdefault(key, len(order))
    return order


def fake_check(loader, connection, alias, tables, requested):
    checker = Checker(connection, alias, tables)
    results, keys = [], []
    for text in requested:
        try:
            key = resolve(loader, text)
        except ValueError as exc:
            results.append({"requested": text, "migration": None, "status": "unknown", "error": str(exc)})
            continue
        if key not in [k for k, _ in keys]:
            keys.append((key, text))
    # In dependency order, so that a later migration's check can supersede an earlier one's.
    order = graph_order(loader.graph)
    for key, text in sorted(keys, key=lambda pair: order.get(pair[0], 0)):
        migration = loader.graph.nodes[key]
        state = loader.project_state(key, at_end=False)
        operations = []
        for op in migration.operations:
            before = state.clone()
            op.state_forwards(key[0], state)
            operations.append(checker.operation(op, key[0], before, state))
        items = [i for o in operations for i in o["checks"]]
        parents = sorted(loader.graph.node_map[key].parents)
        results.append({
            "requested": text, "migration": key_text(key), "app": key[0], "name": key[1],
            "applied": key in loader.applied_migrations, "initial": is_initial(migration),
            "replaces": [key_text(r) for r in migration.replaces],
            "dependencies": [key_text(p) for p in parents],
            "unapplied_dependencies": [key_text(p) for p in parents if p not in loader.applied_migrations],
            "operations": operations, "status": status_of(items) if items else "no-op", "error": None,
        })
    return results


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


def inspect(args):
    django, connection = setup(args.manage, args.database)
    from django.db.migrations.loader import MigrationLoader
    from django.db.migrations.recorder import MigrationRecorder

    recorder = MigrationRecorder(connection)
    loader = MigrationLoader(connection, ignore_no_migrations=True)
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
        requested = [n for part in args.fake_check for n in part.split(",") if n.strip()]
        if UNAPPLIED in requested:
            # Every migration without a history row, so `diagnose` needs one Django start, not two.
            requested.remove(UNAPPLIED)
            requested += [key_text(k) for k in sorted(loader.graph.nodes) if k not in loader.applied_migrations]
        document["fake_check"] = fake_check(loader, connection, args.database, tables, requested)
    if args.makemigrations_check:
        document["makemigrations"] = makemigrations_check(loader)
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

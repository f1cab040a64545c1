"""Read what the schema should be (the models, or a migration state rendered as models) and what it is.

A part of the Django inspection (runbook/frameworks/backend.py concatenates the parts: answer.py,
django_settings.py, django_history.py, this one, django_proof.py, and django_inspect.py last), run by the
BACKEND's python. The comparisons are pure: runbook's unit tests load them without Django.
"""

import re

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

"""Change the schema: put back what the recorded migrations made and the database lost (`--restore-schema`),
or add the columns a migration makes to tables that exist (`--add-missing-columns`).

The only part of the Django inspection that changes the database, and shipped only with those two options:
runbook/frameworks/backend.py concatenates it before django_inspect.py. Run by the BACKEND's python.
"""

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # defined by the parts concatenated before this one
    from django_history import resolve
    from django_proof import graph_order, state_of
    from django_schema import live_schema, should_exist


def change_schema(loader, connection, args):
    """Make the changes the options ask for; return what the answer says about them."""
    found = {}
    if args.restore_schema:
        labels = {n.strip() for part in args.restore_schema for n in part.split(",") if n.strip()}
        try:
            found["restored"] = restore_schema(loader, connection, args.database, live_schema(connection), labels)
            found["restore_refused"] = []
        except RestoreRefused as exc:
            found["restored"], found["restore_refused"] = [], exc.refusals
    if args.add_missing_columns:
        names = [n for part in args.add_missing_columns for n in part.split(",") if n.strip()]
        found["added_columns"] = add_missing_columns(loader, connection, live_schema(connection), names)
    return found


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

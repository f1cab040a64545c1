"""Django and Alembic knowledge without Django or a database: the pure helpers on both sides of the seam.

The scripts in runbook/frameworks/inside/ run in the backend; their pure helpers are loaded here from the source
runbook sends (the parts concatenated, backend.script_source), never through runbook's imports.
"""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import types
import zlib
from pathlib import Path

import pytest

from runbook.config import Config
from runbook.errors import EnvironmentNotReady, InputError, StepFailed
from runbook.frameworks import backend
from runbook.frameworks.alembic import inspection as alembic
from runbook.frameworks.django import inspection as django
from runbook.targets.base import ExecResult

INSIDE = Path(backend.__file__).parent / "inside"


def _load(name: str, *extra: str) -> types.ModuleType:
    """Run a script's source as runbook sends it, as a module: not as __main__, so its main does not run."""
    module = types.ModuleType(f"inside_{name}")
    exec(compile(backend.script_source(f"{name}.py", *extra), f"<{name}>", "exec"), module.__dict__)
    return module


inspect_script = _load("django_inspect")


# ---- the script's pure helpers ----

@pytest.mark.parametrize(("django_type", "pg_type"), [
    ("varchar(200)", "character varying(200)"),
    ("varchar", "character varying"),
    ("numeric(10, 2)", "numeric(10,2)"),
    ("bigint", "bigint"),
    ("serial", "integer"),
    ("bigserial", "bigint"),
    ("timestamp with time zone", "timestamp with time zone"),
    ("timestamp", "timestamp without time zone"),
    ("time", "time without time zone"),
    ("char(3)", "character(3)"),
    ("varchar(10)[]", "character varying(10)[]"),
    ("Integer", "integer"),
    ("double precision", "double precision"),
])
def test_types_are_compared_in_format_type_spelling(django_type: str, pg_type: str) -> None:
    assert inspect_script.normalize_type(django_type) == inspect_script.normalize_type(pg_type)


@pytest.mark.parametrize(("a", "b"), [("varchar(200)", "character varying(100)"), ("integer", "bigint"),
                                      ("text", "character varying"), ("time", "time with time zone")])
def test_different_types_stay_different(a: str, b: str) -> None:
    assert inspect_script.normalize_type(a) != inspect_script.normalize_type(b)


def test_settings_module_is_read_from_manage_py() -> None:
    text = 'def main():\n    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "shop.settings")\n'
    assert inspect_script.settings_from_manage(text) == "shop.settings"
    assert inspect_script.settings_from_manage("os.environ.setdefault('DJANGO_SETTINGS_MODULE',  'a.b.c')") == "a.b.c"
    assert inspect_script.settings_from_manage("print('hello')") is None


MODELS = [{"app": "catalog", "model": "catalog.Product", "table": "catalog_product", "columns": [
    {"field": "id", "column": "id", "type": "bigint", "null": False},
    {"field": "name", "column": "name", "type": "varchar(200)", "null": False},
    {"field": "description", "column": "description", "type": "text", "null": False},
    {"field": "price", "column": "price", "type": "numeric(10, 2)", "null": True},
]}, {"app": "customer", "model": "customer.Customer", "table": "customer_customer", "columns": []}]


def _tables(**overrides):
    columns = {"id": {"type": "bigint", "null": False}, "name": {"type": "character varying(200)", "null": False},
               "description": {"type": "text", "null": False}, "price": {"type": "numeric(10,2)", "null": True}}
    columns.update(overrides)
    return {"catalog_product": {"columns": {k: v for k, v in columns.items() if v is not None}}}


def test_schema_problems_name_table_and_column() -> None:
    problems = inspect_script.schema_problems(MODELS, _tables(description=None, name={"type": "text", "null": True}))
    assert [(p["kind"], p.get("column")) for p in problems] == [
        ("column-type", "name"), ("column-missing", "description"), ("table-missing", None)]
    assert problems[1]["message"] == ("column catalog_product.description (field catalog.Product.description) "
                                      "does not exist")
    assert "is text, the model expects varchar(200)" in problems[0]["message"]
    assert problems[2]["message"] == "table customer_customer of model customer.Customer does not exist"


def test_schema_problems_nullability() -> None:
    problems = inspect_script.schema_problems(MODELS[:1], _tables(price={"type": "numeric(10,2)", "null": False}))
    assert [p["kind"] for p in problems] == ["column-null"]
    assert "is NOT NULL, the model expects NULL" in problems[0]["message"]
    assert inspect_script.schema_problems(MODELS[:1], _tables()) == []


def test_a_column_can_opt_out_of_the_type_check() -> None:
    expected = {"type": "integer", "null": False, "check_type": False}
    assert inspect_script.compare_column(expected, {"type": "bigint", "null": False}) is None


def test_history_problems_without_raising() -> None:
    parents = {("customer_contact", "0002"): [("customer", "0001"), ("customer_contact", "0001")],
               ("customer_contact", "0001"): [], ("customer", "0001"): []}
    applied = {("customer_contact", "0001"), ("customer_contact", "0002")}
    problems = inspect_script.history_problems(parents, applied, {})
    assert [(p["migration"], p["dependency"]) for p in problems] == [("customer_contact.0002", "customer.0001")]
    # A squashed parent counts as applied when everything it replaces is.
    squashed = {("customer", "0001"): [("customer", "0001a")]}
    assert inspect_script.history_problems(parents, applied | {("customer", "0001a")}, squashed) == []


def test_the_script_runs_without_django_setup_for_help() -> None:
    source = backend.script_source("django_inspect.py")
    proc = subprocess.run([sys.executable, "-c", source, "--help"], capture_output=True, text=True)
    assert proc.returncode == 0 and "--fake-check" in proc.stdout


def test_the_scripts_are_not_importable_from_runbook() -> None:
    assert not (INSIDE / "__init__.py").exists()
    import runbook.engine.executor  # noqa: F401
    import runbook.frameworks.actions  # noqa: F401

    assert not [m for m in sys.modules if m.startswith("runbook.frameworks.inside")]
    assert len(backend.script_source("django_inspect.py").encode()) < backend.MAX_SOURCE


# ---- runbook's side: answers, names, the fake guard ----

def _answer(**extra):
    base = {"format": 1, "django": "5.2", "settings": "shop.settings", "migrations": [
        {"app": "customer", "name": "0001_initial", "dependencies": [], "replaces": [], "initial": True,
         "applied": False, "operations": ["CreateModel: Create model Customer"]},
        {"app": "customer_contact", "name": "0002_alter", "dependencies": [["customer", "0001_initial"]],
         "replaces": [], "initial": False, "applied": True, "operations": []},
    ], "applied": [["customer_contact", "0002_alter", "2026-01-01T00:00:00"]], "history_table": True,
        "leaves": {"customer": ["0001_initial"]}, "conflicts": {}, "problems": [
        {"kind": "inconsistent-history", "migration": "customer_contact.0002_alter",
         "dependency": "customer.0001_initial", "message": "customer_contact.0002_alter is applied but ..."},
        {"kind": "column-missing", "model": "catalog.Product", "table": "catalog_product", "column": "x",
         "message": "column catalog_product.x ..."},
    ]}
    base.update(extra)
    return base


def test_parse_inspection() -> None:
    found = django.parse_inspection(_answer())
    assert [m.key for m in found.migrations] == ["customer.0001_initial", "customer_contact.0002_alter"]
    assert found.migrations[1].dependencies == ["customer.0001_initial"]
    assert found.applied == [("customer_contact", "0002_alter")]
    assert [p.kind for p in found.problems_of(django.HISTORY_KINDS)] == ["inconsistent-history"]
    assert found.problems_of(django.HISTORY_KINDS, ["customer"])  # the dependency's app counts too
    assert not found.problems_of(django.HISTORY_KINDS, ["catalog"])
    assert [p.kind for p in found.problems_of(django.SCHEMA_KINDS, ["catalog"])] == ["column-missing"]
    assert found.makemigrations is None and found.fake_checks == []


@pytest.mark.parametrize("bad", [[], {"format": 99}, {"format": 1, "migrations": []}])
def test_parse_inspection_rejects_other_answers(bad) -> None:
    with pytest.raises(StepFailed):
        django.parse_inspection(bad)


def test_parse_names() -> None:
    assert django.parse_names(["customer.0001_initial", " catalog.0002 "]) == ["customer.0001_initial",
                                                                              "catalog.0002"]
    assert django.parse_names("a.0001,b.0002,a.0001") == ["a.0001", "b.0002"]
    assert django.split_names(["a.0001_x", "b.0002"]) == (["a", "b"], ["0001_x", "0002"])
    for bad in ([], "", ["customer"], ["x.y; DROP TABLE"], 3):
        with pytest.raises(InputError):
            django.parse_names(bad)


def _check(subject, ok, message="", problem=None):
    return {"subject": subject, "ok": ok, "message": message or subject,
            "problem": problem if ok is False else ("cannot-prove" if ok is None else None)}


def _fake(name, checks, *, applied=False, unapplied=(), replaces=(), op="CreateModel"):
    return {"requested": name, "migration": name, "status": "x", "error": None, "applied": applied,
            "initial": True, "replaces": list(replaces), "dependencies": list(unapplied),
            "unapplied_dependencies": list(unapplied),
            "operations": [{"type": op, "describe": op, "status": "x", "note": None, "checks": checks}]}


def _fakes(*items):
    return django.parse_inspection(_answer(fake_check=list(items))).fake_checks


def test_fake_is_refused_when_a_column_is_missing() -> None:
    verdict = django.fake_verdict(_fakes(_fake("catalog.0002_d", [
        _check("column catalog_product.description", False, "column catalog_product.description does not exist",
               "missing")], op="AddField")))
    assert not verdict.proven and verdict.to_record == []
    assert verdict.refusals == ["refused: catalog.0002_d: column catalog_product.description does not exist"]
    assert "refused, nothing was recorded:" in verdict.lines


def test_fake_is_proven_and_records_replaced_migrations_too() -> None:
    verdict = django.fake_verdict(_fakes(
        _fake("a.0001_squashed", [_check("table a_t", True)], replaces=["a.0001", "a.0002"]),
        _fake("b.0001", [], applied=True)))
    assert verdict.proven
    assert verdict.to_record == ["a.0001", "a.0002", "a.0001_squashed"]
    assert verdict.already == ["b.0001"]


def test_a_later_migration_supersedes_an_earlier_difference() -> None:
    fakes = _fakes(
        _fake("cc.0001", [_check("column t.customer_id", False, "is bigint, the migration makes it integer",
                                 "differs")]),
        _fake("cc.0002", [_check("column t.customer_id", True)], op="AlterField"))
    verdict = django.fake_verdict(fakes)
    assert verdict.proven and verdict.to_record == ["cc.0001", "cc.0002"]
    assert fakes[0].checks[0].superseded_by == "cc.0002"
    assert django.effective_status(fakes[0]) == "proven"
    # Alone, the first one is refused.
    alone = _fakes(_fake("cc.0001", [_check("column t.customer_id", False, "differs", "differs")]))
    assert not django.fake_verdict(alone).proven and django.effective_status(alone[0]) == "differs"


def test_fake_is_refused_when_a_dependency_is_neither_applied_nor_in_the_batch() -> None:
    verdict = django.fake_verdict(_fakes(_fake("cc.0002", [_check("x", True)], unapplied=["customer.0001"])))
    assert not verdict.proven
    assert "its dependency customer.0001 is not applied" in verdict.refusals[0]
    verdict = django.fake_verdict(_fakes(_fake("customer.0001", [_check("y", True)]),
                                         _fake("cc.0002", [_check("x", True)], unapplied=["customer.0001"])))
    assert verdict.proven


def test_unproven_operations_need_explicit_consent() -> None:
    fake = _fake("a.0003", [_check("operation RunPython", None, "RunPython cannot be proven")], op="RunPython")
    assert not django.fake_verdict(_fakes(fake)).proven
    verdict = django.fake_verdict(_fakes(fake), allow_unproven=True)
    assert verdict.proven and any(line.startswith("  note") for line in verdict.lines)


def test_unknown_migrations_are_refused() -> None:
    verdict = django.fake_verdict(_fakes({"requested": "a.0009", "migration": None, "status": "unknown",
                                          "error": "no migration file a.0009"}))
    assert verdict.refusals == ["refused: a.0009: no migration file a.0009"]


# ---- running scripts in the backend ----

def test_split_manage() -> None:
    assert backend.split_manage(["python", "manage.py"]) == (["python"], "manage.py")
    assert backend.split_manage(["poetry", "run", "python", "src/manage.py", "--x"]) == (
        ["poetry", "run", "python"], "src/manage.py")
    assert backend.split_manage(["./manage.py"]) == (["python"], "./manage.py")
    assert backend.split_manage(["django-admin"]) == (["python"], "manage.py")


def test_exec_options_apply_to_the_backend_only() -> None:
    config = Config()
    config.backend.env, config.backend.workdir, config.backend.user = {"A": "1", "B": "1"}, "/srv", "app"
    options = backend.exec_options(config, "backend", {"B": "2"})
    assert options == backend.ExecOptions({"A": "1", "B": "2"}, "/srv", "app")
    assert backend.exec_options(config, "db", {"B": "2"}) == backend.ExecOptions({"B": "2"}, None, None)


def test_decode_answer_finds_the_marked_line_among_noise() -> None:
    payload = base64.b64encode(zlib.compress(json.dumps({"a": 1}).encode())).decode()
    assert backend.decode_answer(f"settings loaded\n{backend.MARKER}{payload}\n", "x") == {"a": 1}
    with pytest.raises(StepFailed, match="no answer"):
        backend.decode_answer("hello\n", "x")
    with pytest.raises(StepFailed, match="damaged"):
        backend.decode_answer(f"{backend.MARKER}not-base64!\n", "x")


@pytest.mark.parametrize(("code", "error"), [(127, EnvironmentNotReady), (5, EnvironmentNotReady),
                                              (3, EnvironmentNotReady), (2, StepFailed), (1, StepFailed)])
def test_script_errors_keep_the_last_line_of_stderr(code: int, error: type) -> None:
    result = ExecResult(code, "", "Traceback ...\n  File x\nrunbook-inspect: Django cannot start: boom\n")
    exc = backend.script_error(result, "the Django inspection", "python")
    assert isinstance(exc, error)
    assert "Django cannot start: boom" in str(exc) and "runbook-inspect:" not in str(exc)


# ---- alembic ----

def _scripts(heads, revisions):
    return alembic.parse_scripts({"format": 1, "heads": heads, "error": None, "revisions": [
        {"revision": r, "down_revision": d, "path": f"versions/{r}.py"} for r, d in revisions]})


def test_alembic_config_file_follows_the_configured_command() -> None:
    assert alembic.config_file(["alembic"]) == "alembic.ini"
    assert alembic.config_file(["alembic", "-c", "db/alembic.ini"]) == "db/alembic.ini"
    assert alembic.config_file(["alembic", "--config=x.ini"]) == "x.ini"
    assert alembic.config_file(["alembic", "-c", "a.ini"], "b.ini") == "b.ini"


def test_alembic_heads_and_current() -> None:
    two = _scripts(["b1", "b2"], [("a", []), ("b1", ["a"]), ("b2", ["a"])])
    assert alembic.head_problems(two) == [
        "2 heads that conflict: b1 (down_revision a, versions/b1.py); b2 (down_revision a, versions/b2.py)"]
    one = _scripts(["c"], [("a", []), ("b", ["a"]), ("c", ["b"])])
    assert alembic.head_problems(one) == []
    assert alembic.at_head_problems(one, ["c"]) == []
    assert alembic.at_head_problems(one, ["a"]) == [
        "alembic_version holds a, which is behind head c", "head c (down_revision b, versions/c.py) is not applied"]
    assert alembic.at_head_problems(one, None) == ["table alembic_version does not exist: no revision was ever applied"]
    assert alembic.at_head_problems(one, []) == ["alembic_version is empty: the database is at base"]
    assert "no revision script defines" in alembic.at_head_problems(one, ["zzz", "c"])[0]


KEYED = {"app": "customer_contact", "model": "customer_contact.CustomerContact",
         "table": "customer_contact_customercontact", "columns": [], "keys": [
             {"kind": "foreign key", "columns": ["customer_id"], "field": "customer", "why": "field customer",
              "references": ["customer_customer", ["id"]]},
             {"kind": "index", "columns": ["customer_id"], "field": "customer", "why": "field customer db_index"},
             {"kind": "unique", "columns": ["phone"], "field": "phone", "why": "field phone unique"},
             {"kind": "unique", "columns": ["phone", "note"], "field": None, "why": "Meta.unique_together"}]}


def _keyed_table(indexes, constraints):
    return {"customer_contact_customercontact": {"columns": {}, "indexes": indexes, "constraints": constraints}}


def test_keys_are_matched_by_columns_whatever_their_names() -> None:
    table = _keyed_table(
        [{"name": "any_name_1", "columns": ["customer_id"], "unique": False, "primary": False},
         {"name": "x", "columns": ["phone", "note"], "unique": True, "primary": False}],
        [{"name": "other_name", "type": "unique", "columns": ["phone"]},
         {"name": "fk_whatever", "type": "foreign key", "columns": ["customer_id"],
          "references": ["customer_customer", ["id"]]}])
    assert inspect_script.schema_problems([KEYED], table) == []


def test_missing_unique_index_and_foreign_key_are_schema_problems() -> None:
    table = _keyed_table(
        [{"name": "pk", "columns": ["phone"], "unique": True, "primary": True},
         {"name": "i", "columns": ["phone", "note"], "unique": False, "primary": False}],
        [{"name": "fk", "type": "foreign key", "columns": ["customer_id"], "references": ["catalog_product", ["id"]]}])
    problems = inspect_script.schema_problems([KEYED], table)
    assert [p["kind"] for p in problems] == ["foreign-key-differs", "index-missing", "unique-missing",
                                             "unique-missing"]
    assert problems[0]["message"] == (
        "foreign key customer_contact_customercontact(customer_id) -> customer_customer(id) does not exist "
        "(field customer); it references catalog_product(id)")
    assert problems[2]["message"] == ("unique constraint on customer_contact_customercontact(phone) does not "
                                      "exist (field phone unique)")
    assert set(django.SCHEMA_KINDS) >= {p["kind"] for p in problems}


def test_the_state_proof_is_strict_about_what_the_live_table_has_beyond_the_state() -> None:
    # The state proof compares whole tables: an extra column, unique constraint or foreign key means the
    # live table is not the one the state describes (a RemoveField or AlterField that did not run).
    table = _keyed_table(
        [{"name": "any", "columns": ["customer_id"], "unique": False, "primary": False},
         {"name": "x", "columns": ["phone", "note"], "unique": True, "primary": False},
         {"name": "extra_like", "columns": ["note"], "unique": False, "primary": False},
         {"name": "extra_unique", "columns": ["email"], "unique": True, "primary": False}],
        [{"name": "u", "type": "unique", "columns": ["phone"]},
         {"name": "fk", "type": "foreign key", "columns": ["customer_id"], "references": ["customer_customer", ["id"]]},
         {"name": "fk2", "type": "foreign key", "columns": ["owner_id"], "references": ["auth_user", ["id"]]}])
    table["customer_contact_customercontact"]["columns"] = {"left_over": {"type": "text", "null": True}}
    assert inspect_script.schema_problems([KEYED], table) == []  # the models' check tolerates what is extra
    strict = inspect_script.schema_problems([KEYED], table, strict=True, expects="the state expects")
    assert [p["kind"] for p in strict] == ["unique-unexpected", "foreign-key-unexpected", "column-unexpected"]
    assert strict[2]["message"] == ("column customer_contact_customercontact.left_over exists, the state expects "
                                    "no such column")
    # A plain index beyond the state (PostgreSQL's _like index, a hand-made one) changes nothing it proves.
    assert not [p for p in strict if "extra_like" in p["message"] or "(note)" in p["message"]]


def test_check_constraints_are_matched_by_name_or_by_their_column() -> None:
    table = {"columns": {}, "indexes": [], "constraints": [
        {"name": "t_qty_check", "type": "check", "columns": ["qty"]},
        {"name": "named_rule", "type": "check", "columns": ["a", "b"]}]}
    assert inspect_script.has_check(table, None, ["qty"]) and inspect_script.has_check(table, "named_rule", [])
    assert not inspect_script.has_check(table, None, ["price"]) and not inspect_script.has_check(table, "gone", [])

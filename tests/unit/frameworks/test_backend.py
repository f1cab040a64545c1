"""The scripts runbook sends to the backend: their parts, their size, and which parts go with which request."""

from __future__ import annotations

import ast
import base64
import json
import types
import zlib
from pathlib import Path

import pytest

from runbook.config import Config
from runbook.frameworks import backend, diagnose
from runbook.frameworks.django import inspection as django
from runbook.targets.base import ExecResult

INSIDE = Path(backend.__file__).parent / "inside"
ENTRY_POINTS = ["django_inspect.py", "django_locate.py", "which_database.py", "alembic_inspect.py"]


def _defined(path: Path) -> set[str]:
    """Return the names a part defines at its top level (imports aside: parts share stdlib imports)."""
    names: set[str] = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.FunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names |= {t.id for target in node.targets for t in ast.walk(target) if isinstance(t, ast.Name)}
    return names


@pytest.mark.parametrize(("entry", "extra"), [*[(e, ()) for e in ENTRY_POINTS],
                                              ("django_inspect.py", (django.CHANGE_SCHEMA,))])
def test_no_part_redefines_a_name_of_another(entry: str, extra: tuple[str, ...]) -> None:
    # Concatenated, a later definition would silently replace an earlier one.
    seen: dict[str, str] = {}
    for part in (*backend.PARTS.get(entry, ()), *extra, entry):
        for name in _defined(INSIDE / part):
            assert name not in seen, f"{name} is defined in {seen.get(name)} and {part}"
            seen[name] = part
    compile(backend.script_source(entry, *extra), entry, "exec")


def test_every_script_in_inside_is_an_entry_point_or_a_part() -> None:
    parts = {p for parts in backend.PARTS.values() for p in parts} | {django.CHANGE_SCHEMA}
    assert {p.name for p in INSIDE.glob("*.py")} == set(ENTRY_POINTS) | parts
    assert set(backend.PARTS) == set(ENTRY_POINTS)


def test_what_is_sent_fits_in_one_argument() -> None:
    for entry in ENTRY_POINTS:
        assert len(backend.script_source(entry).encode()) < backend.MAX_SOURCE
    assert len(backend.script_source(django.SCRIPT, django.CHANGE_SCHEMA).encode()) < backend.MAX_SOURCE
    assert len(diagnose.detect_source().encode()) < backend.MAX_SOURCE  # both inspections in one exec


def test_the_scripts_answer_as_runbook_reads() -> None:
    answer = types.ModuleType("answer")
    exec(compile((INSIDE / "answer.py").read_text(), "answer.py", "exec"), answer.__dict__)
    assert answer.MARKER == backend.MARKER
    assert (answer.EXIT_CANNOT_START, answer.EXIT_DATABASE, answer.EXIT_NOT_IMPORTABLE, answer.EXIT_GRAPH,
            answer.EXIT_NO_PROJECT) == (backend.EXIT_CANNOT_START, backend.EXIT_DATABASE,
                                        backend.EXIT_NOT_IMPORTABLE, backend.EXIT_GRAPH, backend.EXIT_NO_PROJECT)
    line = answer.answer_line(json.dumps({"a": 1}))
    assert backend.decode_answer(f"noise\n{line}", "x") == {"a": 1}


class RecordingTarget:
    """Records the argv of each exec and answers like the inspection script would."""

    name = "compose"

    def __init__(self) -> None:
        self.argv: list[list[str]] = []

    def exec(self, service: str, argv: list[str], **options) -> ExecResult:
        self.argv.append(argv)
        answer = {"format": 1, "migrations": [], "applied": [], "history_table": True, "leaves": {},
                  "conflicts": {}, "problems": []}
        payload = base64.b64encode(zlib.compress(json.dumps(answer).encode())).decode()
        return ExecResult(0, f"{backend.MARKER}{payload}\n")


@pytest.mark.parametrize(("request_", "changes"), [({}, False), ({"fake": ["a.0001"]}, False),
                                                   ({"restore_schema": ["a"]}, True),
                                                   ({"add_missing_columns": ["a.0001"]}, True)])
def test_the_part_that_changes_the_schema_goes_only_with_a_request_to_change_it(request_, changes) -> None:
    target = RecordingTarget()
    ctx = types.SimpleNamespace(config=Config(), target=target)
    django.inspect(ctx, **request_)
    [argv] = target.argv
    source = argv[argv.index("-c") + 1]
    assert ("def restore_schema(" in source) is changes
    assert "def fake_check(" in source and source.rstrip().endswith('main(sys.argv[1:])')

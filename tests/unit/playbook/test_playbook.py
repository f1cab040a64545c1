"""The playbook model and loader: every schema error says FILE:LINE: key: what."""

from __future__ import annotations

import textwrap

import pytest

from runbook.errors import PlaybookError
from runbook.playbook.model import Playbook, load_playbook, parse_playbook

GOOD = """\
name: fix-demo
description: |
  Repair the demo app.
  Second line.
framework: django
destructive: true
variables:
  app:
    type: str
    default: shop
    help: the app label
  count:
    type: int
    required: true
snapshot:
  files: ["*/migrations/*.py"]
steps:
  - name: show
    manage: [showmigrations, "{{ app }}"]
  - name: history
    sql: select count(*) from django_migrations where app = %(app)s
    params: {app: "{{ app }}"}
    keep: rows
  - name: in db
    service: db
    run: [psql, -c, select 1]
    expect:
      stdout_contains: "1"
verify:
  - name: check
    manage: [migrate, --check]
"""


def errors_of(text: str) -> PlaybookError:
    with pytest.raises(PlaybookError) as info:
        parse_playbook(textwrap.dedent(text), "pb.yml")
    assert info.value.exit_code == 2
    return info.value


def test_valid_playbook_loads(tmp_path):
    path = tmp_path / "fix-demo.yml"
    path.write_text(GOOD)
    pb = load_playbook(path)
    assert isinstance(pb, Playbook)
    assert pb.name == "fix-demo"
    assert pb.framework == "django"
    assert pb.destructive is True
    assert pb.source == str(path)
    assert pb.summary() == "Repair the demo app."
    assert pb.variables["app"].default == "shop"
    assert pb.variables["count"].type == "int" and pb.variables["count"].required
    assert pb.snapshot.files == ["*/migrations/*.py"]
    assert [s.kind for s in pb.steps] == ["manage", "sql", "run"]
    # A command defaults to the backend; SQL has no service; db stays db.
    assert [s.service for s in pb.steps] == ["backend", None, "db"]
    assert pb.steps[1].keep == "rows"
    assert pb.steps[2].expect.stdout_contains == "1"
    assert pb.steps[0].expect.exit_code == 0
    assert [c.name for c in pb.verify] == ["check"]


def test_missing_file_is_an_input_error(tmp_path):
    with pytest.raises(PlaybookError) as info:
        load_playbook(tmp_path / "nope.yml")
    assert str(info.value).startswith(f"{tmp_path / 'nope.yml'}: cannot read")


def test_duplicate_key_rejected_with_its_line():
    err = errors_of("""\
        name: a
        description: d
        steps:
          - name: s
            run: [echo]
        description: again
        """)
    assert str(err) == "pb.yml:6: description: duplicate key (first given on line 2)"


def test_unknown_key_reported_with_path_and_line():
    err = errors_of("""\
        name: a
        description: d
        steps:
          - name: one
            run: [echo]
          - name: two
            run: [echo]

            bogus: 1
        """)
    assert str(err) == "pb.yml:9: steps.1.bogus: unknown key"
    assert err.problems == ["pb.yml:9: steps.1.bogus: unknown key"]


def test_unknown_key_in_expect():
    err = errors_of("""\
        name: a
        description: d
        steps:
          - name: one
            run: [echo]
            expect:
              exit_code: 0
              stdout_has: x
        """)
    assert err.problems == ["pb.yml:8: steps.0.expect.stdout_has: unknown key"]


def test_missing_required_fields():
    err = errors_of("name: a\n")
    assert err.problems == [
        "pb.yml:1: description: Field required",
        "pb.yml:1: steps: Field required",
    ]
    assert str(err) == "pb.yml: 2 problems"


def test_empty_steps_refused():
    err = errors_of("name: a\ndescription: d\nsteps: []\n")
    assert len(err.problems) == 1
    assert err.problems[0].startswith("pb.yml:3: steps: ")
    assert "at least 1" in err.problems[0]


def test_step_without_name():
    err = errors_of("""\
        name: a
        description: d
        steps:
          - run: [echo]
        """)
    assert err.problems == ["pb.yml:4: steps.0.name: Field required"]


def test_step_with_two_kinds():
    err = errors_of("""\
        name: a
        description: d
        steps:
          - name: s
            run: [echo]
            sql: select 1
        """)
    assert err.problems == [
        "pb.yml:4: steps.0: give exactly one of run, manage, alembic, shell, sql, action (got run, sql)"
    ]


def test_step_with_no_kind():
    err = errors_of("""\
        name: a
        description: d
        steps:
          - name: ok
            run: [echo]
          - name: s
            description: does nothing
        """)
    assert err.problems == ["pb.yml:6: steps.1: give exactly one of run, manage, alembic, shell, sql, action"]


def test_bad_service_name():
    err = errors_of("""\
        name: a
        description: d
        steps:
          - name: s
            service: web
            run: [echo]
        """)
    assert len(err.problems) == 1
    assert err.problems[0].startswith("pb.yml:5: steps.0.service: must be one of db, backend")


def test_invalid_regex_in_expect():
    err = errors_of("""\
        name: a
        description: d
        steps:
          - name: s
            run: [echo]
            expect:
              stdout_regex: "(unclosed"
        """)
    assert len(err.problems) == 1
    assert err.problems[0].startswith("pb.yml:7: steps.0.expect.stdout_regex: not a valid regular expression")


def test_invalid_regex_in_verify_stderr():
    err = errors_of("""\
        name: a
        description: d
        steps:
          - name: s
            run: [echo]
        verify:
          - name: c
            run: [echo]
            expect: {stderr_regex: "[a-"}
        """)
    assert err.problems[0].startswith("pb.yml:9: verify.0.expect.stderr_regex: not a valid regular")


def test_bad_variable_name():
    err = errors_of("""\
        name: a
        description: d
        variables:
          good: {}
          bad-name: {}
        steps:
          - name: s
            run: [echo]
        """)
    assert err.problems == ["pb.yml:3: variables: variable name 'bad-name' is not a valid identifier"]


def test_fits_when_given_names_only_variables():
    err = errors_of("""\
        name: a
        description: d
        fits: [alembic-multiple-heads]
        fits_when_given: [branches]
        variables:
          other: {}
        steps:
          - name: s
            run: [echo]
        """)
    assert len(err.problems) == 1
    assert "fits_when_given names branches, which are not variables of the playbook" in err.problems[0]


def test_bad_variable_type():
    err = errors_of("""\
        name: a
        description: d
        variables:
          n: {type: float}
        steps:
          - name: s
            run: [echo]
        """)
    assert len(err.problems) == 1
    assert err.problems[0].startswith("pb.yml:4: variables.n.type: Input should be")


def test_bad_keep_name_and_duplicate_keep():
    err = errors_of("""\
        name: a
        description: d
        steps:
          - name: s
            run: [echo]
            keep: not-a-name
        """)
    assert err.problems[0].startswith("pb.yml:6: steps.0.keep: 'not-a-name' is not a valid name")
    err = errors_of("""\
        name: a
        description: d
        steps:
          - name: s
            run: [echo]
            keep: out
          - name: t
            run: [echo]
            keep: out
        """)
    assert err.problems == ["pb.yml:1: (top level): two steps keep their output as 'out'"]


def test_bad_playbook_name():
    err = errors_of("name: Fix It\ndescription: d\nsteps:\n  - name: s\n    run: [echo]\n")
    assert err.problems == ["pb.yml:1: name: use lower-case letters, digits, '-', '_' or '.'"]


def test_yaml_boolean_is_not_a_string_argument():
    err = errors_of("name: a\ndescription: d\nsteps:\n  - name: s\n    run: [echo, yes]\n")
    assert err.problems == ["pb.yml:5: steps.0.run.1: Input should be a valid string"]


def test_top_level_not_a_mapping():
    err = errors_of("- name: a\n- name: b\n")
    assert str(err) == "pb.yml:1: a playbook must be a mapping with name, description and steps"


def test_empty_file():
    err = errors_of("")
    assert str(err).startswith("pb.yml:1: ")
    err = errors_of("# nothing here\n")
    assert str(err).startswith("pb.yml:1: ")


def test_yaml_syntax_error_gives_file_and_line():
    err = errors_of("""\
        name: a
        description: d
        steps:
          - name: s
            run: [echo, "unclosed
        """)
    message = str(err)
    assert message.startswith("pb.yml:")
    assert int(message.split(":")[1]) >= 5


def test_several_problems_listed():
    err = errors_of("""\
        name: a
        steps:
          - name: s
            run: [echo]
            sql: select 1
          - name: t
            service: nowhere
            run: [echo]
        extra: 1
        """)
    assert str(err) == "pb.yml: 4 problems"
    assert sorted(err.problems) == sorted([
        "pb.yml:1: description: Field required",
        "pb.yml:3: steps.0: give exactly one of run, manage, alembic, shell, sql, action (got run, sql)",
        "pb.yml:7: steps.1.service: must be one of db, backend (renamed in runbook.yml, not here)",
        "pb.yml:9: extra: unknown key",
    ])

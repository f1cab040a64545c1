"""The plan: every step rendered before anything runs, kept-output steps deferred to run time."""

from __future__ import annotations

import shlex

import pytest

from runbook.errors import RenderError
from runbook.playbook.model import parse_playbook
from runbook.playbook.plan import Commands, PlannedAction, build_plan, plan_action
from runbook.playbook.variables import resolve_variables

NASTY = "x; rm -rf /"

PLAYBOOK = """\
name: demo
description: d
destructive: true
variables:
  app: {default: shop}
  apps: {type: list, default: "a,b"}
  table: {default: billing}
  target: {default: "0003"}
steps:
  - name: migrate
    manage: [migrate, "{{ app }}", "{{ target }}", --fake]
    env: {APP: "{{ app }}"}
    workdir: "/srv/{{ app }}"
  - name: heads
    alembic: [heads, --verbose]
    keep: heads
    parse: json
  - name: list
    shell: "ls {{ apps }} && echo {{ app }}"
  - name: rows
    sql: "select * from {tbl} where app = %(app)s and note = '{{ app }}'"
    params: {app: "{{ app }}", label: "app {{ target }}"}
    identifiers: {tbl: "{{ table }}"}
  - name: use kept
    run: [echo, "{{ kept.heads.rev }}", "{{ app }}"]
    when: "kept.heads.rev"
  - name: delete
    action: delete_files
    with: {glob: "{{ app }}/migrations/0*.py", keep: ["__init__.py"]}
verify:
  - name: check
    run: [python, -c, "print(1)"]
"""


def make_plan(commands: Commands | None = None, **given: str):
    pb = parse_playbook(PLAYBOOK, "demo.yml")
    return build_plan(pb, resolve_variables(pb, given), commands)


def test_manage_and_alembic_use_the_configured_prefixes():
    commands = Commands(manage=("docker-python", "/app/manage.py"), alembic=("poetry", "run", "alembic"))
    plan = make_plan(commands)
    assert plan.steps[0].argv == ["docker-python", "/app/manage.py", "migrate", "shop", "0003", "--fake"]
    assert plan.steps[1].argv == ["poetry", "run", "alembic", "heads", "--verbose"]


def test_default_prefixes():
    plan = make_plan()
    assert plan.steps[0].argv[:2] == ["python", "manage.py"]
    assert plan.steps[1].argv[0] == "alembic"


def test_plan_is_plain_data():
    plan = make_plan(app="billing")
    assert plan.destructive is True
    assert plan.variables == {"app": "billing", "apps": ["a", "b"], "table": "billing", "target": "0003"}
    first = plan.steps[0]
    assert isinstance(first, PlannedAction)
    assert (first.name, first.kind, first.service) == ("migrate", "manage", "backend")
    assert first.env == {"APP": "billing"}
    assert first.workdir == "/srv/billing"
    assert plan.steps[1].keep == "heads" and plan.steps[1].parse == "json"
    assert [c.name for c in plan.checks] == ["check"]
    assert plan.checks[0].argv == ["python", "-c", "print(1)"]


def test_argument_value_is_one_argv_word():
    plan = make_plan(app=NASTY)
    assert plan.steps[0].argv[3] == NASTY
    assert shlex.split(plan.steps[0].display())[3] == NASTY


def test_shell_step_quotes_values():
    plan = make_plan(app=NASTY, apps="a b,c")
    argv = plan.steps[2].argv
    assert argv[:2] == ["sh", "-c"]
    assert shlex.split(argv[2]) == ["ls", "a b", "c", "&&", "echo", NASTY]


def test_unknown_variable_in_a_step_raises_before_anything_runs():
    pb = parse_playbook(
        "name: d\ndescription: d\nvariables:\n  app: {default: x}\nsteps:\n"
        "  - name: fine\n    run: [echo, '{{ app }}']\n"
        "  - name: broken\n    manage: [migrate, '{{ app_label }}']\n",
        "d.yml",
    )
    with pytest.raises(RenderError) as info:
        build_plan(pb, resolve_variables(pb, {}))
    message = str(info.value)
    assert message.startswith("d.yml:8: step 2 (broken): unknown variable app_label")
    assert info.value.exit_code == 2


def test_unknown_variable_in_when_and_in_verify():
    pb = parse_playbook(
        "name: d\ndescription: d\nsteps:\n  - name: s\n    run: [echo]\n    when: '{{ enabled }}'\n",
        "d.yml",
    )
    with pytest.raises(RenderError) as info:
        build_plan(pb, {})
    assert "unknown variable enabled" in str(info.value)
    pb = parse_playbook(
        "name: d\ndescription: d\nsteps:\n  - name: s\n    run: [echo]\n"
        "verify:\n  - name: c\n    run: [echo, '{{ kept.x }}', '{{ oops }}']\n",
        "d.yml",
    )
    with pytest.raises(RenderError) as info:
        build_plan(pb, {})
    assert str(info.value).startswith("d.yml:7: check 1 (c): unknown variable oops")


def test_quoted_expression_in_shell_step_refused_at_plan_time_even_when_deferred():
    pb = parse_playbook(
        "name: d\ndescription: d\nsteps:\n  - name: s\n    shell: \"echo '{{ kept.x }}'\"\n", "d.yml"
    )
    with pytest.raises(RenderError):
        build_plan(pb, {})


def test_a_command_that_renders_to_nothing_is_refused():
    pb = parse_playbook(
        "name: d\ndescription: d\nvariables:\n  cmd: {type: list}\nsteps:\n"
        "  - name: s\n    run: ['{{ cmd }}']\n",
        "d.yml",
    )
    with pytest.raises(RenderError) as info:
        build_plan(pb, resolve_variables(pb, {}))
    assert "renders to nothing" in str(info.value)


def test_kept_steps_are_deferred_then_rendered_with_kept():
    plan = make_plan()
    step = plan.steps[4]
    assert step.deferred is True
    # Shown as written until the run reaches it.
    assert step.argv == ["echo", "{{ kept.heads.rev }}", "{{ app }}"]
    assert step.when == "kept.heads.rev"
    assert [s.deferred for s in plan.steps].count(True) == 1

    context = {**plan.variables, "kept": {"heads": {"rev": "ae10"}}}
    rendered = plan_action(step.source, context, Commands(), "step 5")
    assert rendered.deferred is False
    assert rendered.argv == ["echo", "ae10", "shop"]


def test_deferred_step_with_missing_kept_value_fails_at_run_time():
    plan = make_plan()
    with pytest.raises(RenderError) as info:
        plan_action(plan.steps[4].source, {**plan.variables, "kept": {}}, Commands(), "step 5")
    assert str(info.value).startswith("step 5: ")
    assert "heads" in str(info.value)


def test_sql_text_is_not_rendered_but_params_and_identifiers_are():
    plan = make_plan(app=NASTY, table="Billing Items")
    sql = plan.steps[3]
    assert sql.kind == "sql" and sql.service is None and sql.argv is None
    assert sql.sql == "select * from {tbl} where app = %(app)s and note = '{{ app }}'"
    assert sql.params == {"app": NASTY, "label": "app 0003"}
    assert sql.identifiers == {"tbl": "Billing Items"}


def test_action_arguments_rendered():
    plan = make_plan(app="billing")
    act = plan.steps[5]
    assert (act.kind, act.action, act.service, act.argv) == ("action", "delete_files", None, None)
    assert act.args == {"glob": "billing/migrations/0*.py", "keep": ["__init__.py"]}


def test_display():
    plan = make_plan(app="a b")
    assert plan.steps[0].display() == "python manage.py migrate 'a b' 0003 --fake"
    assert plan.steps[3].display() == (
        "select * from {tbl} where app = %(app)s and note = '{{ app }}'"
        "  -- identifiers: tbl=billing  -- params: app='a b', label='app 0003'"
    )
    assert plan.steps[5].display() == "delete_files(glob='a b/migrations/0*.py', keep=['__init__.py'])"
    assert plan.steps[4].display() == "echo '{{ kept.heads.rev }}' '{{ app }}'"


def test_display_of_multiline_sql_is_one_line():
    action = PlannedAction(name="q", kind="sql", service=None, sql="select 1\n  from t\n where x")
    assert action.display() == "select 1 from t where x"


@pytest.mark.parametrize("head", [["sh", "-c"], ["bash", "-c"], ["/bin/dash", "-c"], ["bash", "-lc"],
                                  ["bash", "-e", "-c"], ["bash", "-o", "pipefail", "-c"]])
def test_a_shell_script_in_run_quotes_values_like_a_shell_step(head):
    pb = parse_playbook(
        "name: d\ndescription: d\nvariables:\n  path: {default: x}\n  apps: {type: list, default: 'a'}\n"
        f"steps:\n  - name: s\n    run: {head + ['ls {{ path }} {{ apps }}', 'name-$0', '{{ path }}']!r}\n",
        "d.yml",
    )
    argv = build_plan(pb, resolve_variables(pb, {"path": NASTY, "apps": "a b,c"})).steps[0].argv
    assert argv[:len(head)] == head
    assert shlex.split(argv[len(head)]) == ["ls", NASTY, "a b", "c"]
    # Arguments after the script reach the shell as $0, $1...: they are words already and stay unquoted.
    assert argv[len(head) + 1:] == ["name-$0", NASTY]


def test_a_shell_script_in_run_refuses_quoted_expressions_even_when_deferred():
    pb = parse_playbook(
        "name: d\ndescription: d\nsteps:\n  - name: s\n    run: [bash, -c, \"echo '{{ kept.x }}'\"]\n", "d.yml"
    )
    with pytest.raises(RenderError) as info:
        build_plan(pb, {})
    assert "already" in str(info.value)


def test_a_run_step_that_is_no_shell_script_is_not_quoted():
    pb = parse_playbook(
        "name: d\ndescription: d\nvariables:\n  v: {default: 'a b'}\nsteps:\n"
        "  - name: s\n    run: [python, -c, 'print({{ v }})']\n  - name: t\n    run: [sh, script.sh, '{{ v }}']\n",
        "d.yml",
    )
    plan = build_plan(pb, resolve_variables(pb, {}))
    assert plan.steps[0].argv == ["python", "-c", "print(a b)"]
    assert plan.steps[1].argv == ["sh", "script.sh", "a b"]


def test_a_deferred_shell_script_in_run_quotes_kept_values_at_run_time():
    pb = parse_playbook(
        "name: d\ndescription: d\nsteps:\n  - name: s\n    run: [sh, -c, 'echo {{ kept.x }}']\n", "d.yml"
    )
    planned = build_plan(pb, {}).steps[0]
    assert planned.deferred
    again = plan_action(planned.source, {"kept": {"x": NASTY}}, Commands(), "step 1")
    assert shlex.split(again.argv[2]) == ["echo", NASTY]

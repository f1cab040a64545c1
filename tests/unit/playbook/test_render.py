"""Rendering: strict about unknown names, sandboxed, and every value shell-quoted in a shell line."""

from __future__ import annotations

import shlex
import subprocess

import pytest

from runbook.errors import RenderError
from runbook.playbook.render import (
    check_names,
    check_shell_template,
    evaluate,
    needs_runtime,
    referenced_names,
    render_argument,
    render_text,
)

NASTY = "x; rm -rf /"


def test_unknown_name_raises_render_error_naming_it():
    with pytest.raises(RenderError) as info:
        render_text("migrate {{ app_label }}", {"app": "shop"}, "step 1")
    message = str(info.value)
    assert message.startswith("step 1: ")
    assert "'app_label' is undefined" in message
    assert info.value.exit_code == 2


def test_unknown_attribute_raises_too():
    with pytest.raises(RenderError) as info:
        render_text("{{ kept.rows.first }}", {"kept": {"rows": {}}}, "w")
    assert "has no attribute 'first'" in str(info.value)


def test_plain_text_renders_values_as_is():
    assert render_text("migrate {{ app }} {{ n }}", {"app": "a b", "n": 3}, "w") == "migrate a b 3"


def test_shell_mode_quotes_every_expression():
    line = render_text("echo {{ a }} && ls {{ b }}", {"a": NASTY, "b": "it's"}, "w", shell=True)
    assert shlex.split(line) == ["echo", NASTY, "&&", "ls", "it's"]


def test_shell_mode_spreads_a_list_into_quoted_words():
    line = render_text("rm -- {{ files }}", {"files": ["a b", "$(reboot)", "c"]}, "w", shell=True)
    assert shlex.split(line) == ["rm", "--", "a b", "$(reboot)", "c"]


def test_shell_mode_value_really_stays_one_word_in_sh():
    line = render_text("printf '%s\\n' {{ a }}", {"a": "a b; echo INJECTED $(echo X)"}, "w", shell=True)
    out = subprocess.run(["sh", "-c", line], capture_output=True, text=True, check=True).stdout
    assert out == "a b; echo INJECTED $(echo X)\n"


def test_shell_mode_quote_filter_does_not_quote_twice():
    line = render_text("echo {{ a | quote }}", {"a": "a b"}, "w", shell=True)
    assert shlex.split(line) == ["echo", "a b"]
    # Outside shell mode the filter is the way to quote.
    assert render_text("echo {{ a | quote }}", {"a": "a b"}, "w") == "echo 'a b'"


def test_shell_mode_leaves_statements_and_literal_quotes_alone():
    line = render_text("{% if on %}echo 'lit' {{ a }}{% endif %}", {"on": True, "a": "p q"}, "w", shell=True)
    assert shlex.split(line) == ["echo", "lit", "p q"]


@pytest.mark.parametrize("template", ["echo '{{ a }}'", 'echo "{{ a }}"', "echo \"x {{ a }} y\""])
def test_shell_mode_refuses_expression_inside_quotes(template):
    # Inside quotes the value's own quoting would cancel out and the shell would parse it.
    with pytest.raises(RenderError) as info:
        render_text(template, {"a": NASTY}, "step 2", shell=True)
    assert str(info.value).startswith("step 2: {{ }} inside")


def test_check_shell_template_follows_escapes_and_comments():
    check_shell_template("echo it\\'s {{ a }}", "w")
    check_shell_template('echo "a\\"b" {{ a }}', "w")
    check_shell_template("{# it's #}echo {{ a }}", "w")
    check_shell_template("{% if a == 'x' %}echo {{ a }}{% endif %}", "w")


def test_render_argument_single_value():
    assert render_argument("{{ app }}", {"app": NASTY}, "w") == [NASTY]
    assert render_argument("--app={{ app }}", {"app": "a b"}, "w") == ["--app=a b"]


def test_render_argument_spreads_a_list():
    assert render_argument("{{ apps }}", {"apps": ["a", "b c"]}, "w") == ["a", "b c"]
    assert render_argument("  {{ apps }} ", {"apps": ("x",)}, "w") == ["x"]


def test_render_argument_empty_vanishes():
    assert render_argument("{{ app }}", {"app": ""}, "w") == []
    assert render_argument("{{ app }}", {"app": None}, "w") == []
    assert render_argument("{{ apps }}", {"apps": []}, "w") == []
    # Only a lone expression vanishes; text around it keeps the argument.
    assert render_argument("--app={{ app }}", {"app": ""}, "w") == ["--app="]


def test_render_argument_scalars():
    assert render_argument("{{ flag }}", {"flag": True}, "w") == ["true"]
    assert render_argument("{{ flag }}", {"flag": False}, "w") == ["false"]
    assert render_argument("{{ n }}", {"n": 0}, "w") == ["0"]
    assert render_argument("{{ n + 1 }}", {"n": 4}, "w") == ["5"]


def test_render_argument_two_expressions_make_one_argument():
    assert render_argument("{{ app }}.{{ n }}", {"app": "shop", "n": 2}, "w") == ["shop.2"]
    assert render_argument("{{ a }}-{{ b }}", {"a": "x", "b": "y"}, "w") == ["x-y"]


def test_render_argument_unknown_name():
    with pytest.raises(RenderError) as info:
        render_argument("{{ missing }}", {}, "step 3")
    assert "'missing' is undefined" in str(info.value)


@pytest.mark.parametrize(
    "template",
    [
        "{{ x.__class__ }}",
        "{{ ''.__class__.__mro__[1].__subclasses__() }}",
        "{{ x.__class__.__subclasses__() }}",
        "{{ f.__globals__ }}",
    ],
)
def test_sandbox_blocks_dunder_access(template):
    context = {"x": "s", "f": test_sandbox_blocks_dunder_access}
    with pytest.raises(RenderError) as info:
        render_text(template, context, "w")
    assert "not allowed in a playbook template" in str(info.value)
    with pytest.raises(RenderError):
        render_argument(template, context, "w")
    with pytest.raises(RenderError):
        evaluate(template, context, "w")


def test_template_syntax_error():
    with pytest.raises(RenderError) as info:
        render_text("{{ x ", {"x": 1}, "w")
    assert "cannot render" in str(info.value)


def test_evaluate():
    assert evaluate("n > 1", {"n": 2}, "when") is True
    assert evaluate("{{ n > 1 }}", {"n": 0}, "when") is False
    assert evaluate("kept.rows[0][0]", {"kept": {"rows": [[7]]}}, "when") == 7
    assert evaluate("'a' in apps", {"apps": ["a"]}, "when") is True
    with pytest.raises(RenderError) as info:
        evaluate("nope and 1", {}, "when")
    assert "'nope' is undefined" in str(info.value)
    with pytest.raises(RenderError) as info:
        evaluate("nope", {}, "when")
    assert "'nope' is undefined" in str(info.value)
    with pytest.raises(RenderError):
        evaluate("n and", {"n": 1}, "when")


def test_referenced_names_and_runtime():
    assert referenced_names("{{ a }} {{ b.c }} {% for i in l %}{{ i }}{% endfor %}") == {"a", "b", "l"}
    assert needs_runtime("{{ kept.heads }}")
    assert not needs_runtime("{{ app }}")


def test_check_names():
    check_names("{{ a }} {{ kept.x }}", {"a"}, "w")
    with pytest.raises(RenderError) as info:
        check_names("{{ a }} {{ zz }} {{ yy }}", {"a"}, "step 1")
    assert str(info.value).startswith("step 1: unknown variable yy, zz in ")
    assert "variables:" in str(info.value)

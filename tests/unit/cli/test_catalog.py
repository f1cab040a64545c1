"""What `runbook list` reads cheaply: it must agree with the full loader and import no heavy library."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from runbook.cli.catalog import full_entry, quick_entry, summarize
from runbook.errors import PlaybookError
from runbook.playbook.registry import builtin_dir, discover


def test_summary_is_the_first_sentence_joined():
    text = "Repair the history: one line\nof text, joined. Then more.\n\nA second paragraph."
    assert summarize(text) == "Repair the history: one line of text, joined."


def test_summary_keeps_abbreviations_and_a_lone_paragraph():
    assert summarize("Fake it, e.g. when restored\nfrom a dump") == "Fake it, e.g. when restored from a dump"
    assert summarize("  \n") == ""


def test_quick_entry_agrees_with_the_full_loader_for_every_builtin():
    refs = discover([])
    assert refs, builtin_dir()
    for ref in refs.values():
        assert quick_entry(ref.path) == full_entry(ref.path), ref.name


@pytest.mark.parametrize("text", [
    "- a list\n",
    "name: x\n",
    "name: x\ndescription: d\nframework: rails\nsteps: [{name: s, run: [true]}]\n",
    "name: x\ndescription: d\nsteps: []\n",
    "name: x\ndescription: [d\n",
])
def test_quick_entry_refuses_what_list_must_show_as_invalid(tmp_path, text):
    path = tmp_path / "x.yml"
    path.write_text(text)
    with pytest.raises(PlaybookError):
        quick_entry(path)


def _imported_by(*argv: str, env: dict[str, str] | None = None) -> set[str]:
    code = ("import sys; sys.argv = ['runbook', *sys.argv[1:]]\n"
            "from runbook.cli.app import main\n"
            "try:\n    main()\nexcept SystemExit:\n    pass\n"
            "print(' '.join(sorted(sys.modules)), file=sys.stderr)")
    result = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, timeout=60,
                            env={**os.environ, **(env or {})})
    return set(result.stderr.split())


def test_list_imports_no_engine_jinja2_docker_or_psycopg(tmp_path):
    modules = _imported_by("--project-dir", str(tmp_path), "list")
    assert "runbook.cli.catalog" in modules
    heavy = {"runbook.engine.prepare", "runbook.config", "runbook.playbook.model", "jinja2", "docker", "psycopg"}
    assert not heavy & modules


def test_docker_is_imported_without_paramiko_unless_docker_host_is_ssh():
    code = "import sys, runbook.targets.compose.docker_sdk; print('paramiko' in sys.modules)"
    env = {k: v for k, v in os.environ.items() if k != "DOCKER_HOST"}
    plain = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
    ssh = subprocess.run([sys.executable, "-c", code + "; import docker.transport as t; print(hasattr(t, "
                          "'SSHHTTPAdapter'))"], capture_output=True, text=True, timeout=60,
                         env={**env, "DOCKER_HOST": "ssh://root@127.0.0.1"})
    assert plain.stdout.split() == ["False"], plain.stderr
    assert ssh.stdout.split() == ["True", "True"], ssh.stderr

"""The Alembic repairs: version files read as text, graphs built in memory, the actions on a memory backend."""

from __future__ import annotations

from pathlib import Path

import pytest

from runbook.frameworks.alembic.graph import GraphError, Revision, RevisionGraph, summarize
from runbook.frameworks.alembic.linearize import plan_linearize
from runbook.frameworks.alembic.version_files import parse_revision, rewrite_down_revision, versions_dirs_from_ini
from runbook.frameworks.diff import unified_diff
from runbook.targets.base import MissingFile

LEADGEN = Path(__file__).resolve().parents[2] / "projects" / "leadgen"


def graph(*links: tuple[str, str | tuple[str, ...] | None]) -> RevisionGraph:
    """Build a graph from (revision, down_revision) pairs."""
    revisions = []
    for rev, down in links:
        downs = () if down is None else (down,) if isinstance(down, str) else down
        revisions.append(Revision(rev, downs, path=f"versions/{rev}.py"))
    return RevisionGraph(revisions)


# The guide's conflict: two children of init_schema, the hand-written branch one revision longer.
LEADGEN_LINKS = [
    ("2dd19a2d0626", None),
    ("137b19ac6ef3", "2dd19a2d0626"),
    ("5a1c2e3d4f56", "137b19ac6ef3"),
    ("file_doc_mgmt_001", "2dd19a2d0626"),
    ("8d4f5a6b7c89", "file_doc_mgmt_001"),
]


def version_file(revision: str, down: str, *, annotated: bool = False, quote: str = "'") -> str:
    ann = (": str", ": Union[str, Sequence[str], None]") if annotated else ("", "")
    return (
        f'"""add things\n\nRevision ID: {revision}\nRevises: {down}\nCreate Date: 2025-11-21 16:25:02\n\n"""\n'
        "from alembic import op\n\n"
        f"revision{ann[0]} = {quote}{revision}{quote}\n"
        f"down_revision{ann[1]} = {quote}{down}{quote}  # the parent\n"
        "branch_labels = None\ndepends_on = None\n\n\n"
        "def upgrade():\n    op.create_table('things')\n"
    )


# --- reading -----------------------------------------------------------------------------------------

def test_parse_plain_and_annotated_assignments() -> None:
    plain = parse_revision(version_file("b2", "a1"), "v/b2.py")
    typed = parse_revision(version_file("b2", "a1", annotated=True), "v/b2.py")
    assert plain == typed == Revision("b2", ("a1",), "v/b2.py", "add things")


def test_parse_base_merge_and_labels() -> None:
    base = parse_revision("revision = 'a1'\ndown_revision = None\n", "a1.py")
    merge = parse_revision("revision = 'm'\ndown_revision = ('b', 'c')\nbranch_labels = ('x',)\n", "m.py")
    assert base is not None and base.down_revisions == ()
    assert merge is not None and merge.down_revisions == ("b", "c") and merge.branch_labels == ("x",)


def test_a_file_without_revision_is_not_a_version_file() -> None:
    assert parse_revision("", "__init__.py") is None
    assert parse_revision("def revision():\n    pass\n", "helpers.py") is None


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("revision = 'a'\ndown_revision = = 'b'\n", "x.py:2: not valid Python"),
        ("revision = 'a'\ndown_revision = make_id()\n", "x.py:2: down_revision is not a literal"),
        ("revision = 'a'\ndown_revision = 3\n", "must be None, a string or a tuple"),
        ("revision = 'a'\n", "has no down_revision"),
        ("revision = ('a', 'b')\ndown_revision = None\n", "revision must be one string"),
    ],
)
def test_unreadable_files_name_the_file(text: str, message: str) -> None:
    with pytest.raises(GraphError, match=message):
        parse_revision(text, "x.py")


def test_the_sample_project_has_the_conflict_of_the_guide() -> None:
    revisions = [parse_revision(p.read_text(), str(p)) for p in sorted((LEADGEN / "alembic" / "versions").glob("*.py"))]
    g = RevisionGraph(r for r in revisions if r is not None)
    assert g.heads() == ["5a1c2e3d4f56", "8d4f5a6b7c89"]
    assert g.bases() == ["2dd19a2d0626"]
    assert g.revisions["file_doc_mgmt_001"].down_revisions == ("2dd19a2d0626",)
    assert g.revisions["file_doc_mgmt_001"].message == "add file document management"


@pytest.mark.parametrize(
    ("text", "here", "expected"),
    [
        ("[alembic]\nscript_location = %(here)s/alembic\n", ".", ["alembic/versions"]),
        ("[alembic]\nscript_location = %(here)s/alembic\n", "/srv/app", ["/srv/app/alembic/versions"]),
        ("[alembic]\nscript_location = migrations\n", ".", ["migrations/versions"]),
        ("[alembic]\nscript_location = a\nversion_locations = %(here)s/v1 %(here)s/v2\n", "/x", ["/x/v1", "/x/v2"]),
        ("[alembic]\nscript_location = a\nversion_locations = v1:v2\npath_separator = os\n", ".", ["v1", "v2"]),
        ("[alembic]\nscript_location = a\nversion_locations = v1;v2\nversion_path_separator = ;\n", ".",
         ["v1", "v2"]),
        ("[alembic]\nscript_location = myapp.db:migrations\n", ".", ["myapp/db/migrations/versions"]),
    ],
)
def test_versions_dirs_from_ini(text: str, here: str, expected: list[str]) -> None:
    assert versions_dirs_from_ini(text, here) == expected


def test_versions_dirs_refuse_an_ini_without_alembic() -> None:
    with pytest.raises(GraphError, match=r"has no \[alembic\] section"):
        versions_dirs_from_ini("[other]\nx = 1\n")
    with pytest.raises(GraphError, match="cannot read alembic.ini"):
        versions_dirs_from_ini("no section header\n")


# --- the graph ---------------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("links", "message"),
    [
        ([("a", None), ("a", None)], "revision a is defined twice"),
        ([("a", None), ("b", "zzz")], "down_revision 'zzz' names no revision"),
        ([("a", "b"), ("b", "a")], "cycle through a, b"),
    ],
)
def test_broken_graphs(links, message: str) -> None:
    with pytest.raises(GraphError, match=message):
        graph(*links)


def test_ancestors_applied_and_prefixes() -> None:
    g = graph(*LEADGEN_LINKS)
    assert g.ancestors("5a1c2e3d4f56") == {"2dd19a2d0626", "137b19ac6ef3", "5a1c2e3d4f56"}
    assert g.applied(["137b19ac6ef3", "file_doc_mgmt_001"]) == {"2dd19a2d0626", "137b19ac6ef3", "file_doc_mgmt_001"}
    assert g.resolve("5a1c") == "5a1c2e3d4f56"
    assert g.order()[0] == "2dd19a2d0626"
    with pytest.raises(GraphError, match="which no version file defines"):
        g.applied(["deadbeef"])
    with pytest.raises(GraphError, match="no revision 'zz'"):
        g.resolve("zz")
    with pytest.raises(GraphError, match="ambiguous"):
        graph(("ab1", None), ("ab2", "ab1")).resolve("ab")


def test_summarize() -> None:
    facts = summarize(graph(*LEADGEN_LINKS), ["5a1c2e3d4f56"])
    assert facts["heads"] == ["5a1c2e3d4f56", "8d4f5a6b7c89"] and facts["multiple_heads"]
    assert facts["applied_heads"] == ["5a1c2e3d4f56"]
    assert facts["unapplied"] == ["file_doc_mgmt_001", "8d4f5a6b7c89"]
    assert not facts["at_head"]
    healthy = summarize(graph(("a", None), ("b", "a")), ["b"])
    assert healthy["single_head"] and healthy["at_head"] and healthy["unapplied"] == []


# --- planning ----------------------------------------------------------------------------------------

def test_the_branch_the_database_is_on_stays_and_the_other_root_moves() -> None:
    plan = plan_linearize(graph(*LEADGEN_LINKS), ["5a1c2e3d4f56"])
    assert [(m.revision, m.old, m.new) for m in plan.moves] == [
        ("file_doc_mgmt_001", ("2dd19a2d0626",), ("5a1c2e3d4f56",))]
    assert plan.trunk == "5a1c2e3d4f56" and plan.head_after == "8d4f5a6b7c89"


def test_a_database_on_the_other_branch_keeps_that_one() -> None:
    plan = plan_linearize(graph(*LEADGEN_LINKS), ["file_doc_mgmt_001"])
    assert [(m.revision, m.new) for m in plan.moves] == [("137b19ac6ef3", ("8d4f5a6b7c89",))]
    assert plan.head_after == "5a1c2e3d4f56"


@pytest.mark.parametrize("current", [[], ["2dd19a2d0626"]])
def test_a_database_before_the_split_keeps_the_longest_branch(current: list[str]) -> None:
    links = [*LEADGEN_LINKS, ("9e9e9e9e9e9e", "8d4f5a6b7c89")]  # the hand-written branch is now longer
    plan = plan_linearize(graph(*links), current)
    assert plan.trunk == "9e9e9e9e9e9e"
    assert [(m.revision, m.new) for m in plan.moves] == [("137b19ac6ef3", ("9e9e9e9e9e9e",))]
    assert any("pass `order`" in note for note in plan.notes)


@pytest.mark.parametrize(
    "current",
    [["5a1c2e3d4f56", "8d4f5a6b7c89"], ["137b19ac6ef3", "file_doc_mgmt_001"]],
    ids=["both-heads", "both-branches-partly"],
)
def test_refuse_when_both_branches_are_applied(current: list[str]) -> None:
    with pytest.raises(GraphError, match="more than one branch are applied.*alembic-merge-heads"):
        plan_linearize(graph(*LEADGEN_LINKS), current)


def test_one_head_is_nothing_to_do() -> None:
    plan = plan_linearize(graph(("a", None), ("b", "a")), ["a"])
    assert plan.moves == [] and plan.head_after == "b"
    assert plan.notes == ["nothing to do: one head, b"]


def test_three_heads_become_one_line() -> None:
    g = graph(("a", None), ("b", "a"), ("c", "a"), ("d", "a"), ("d2", "d"))
    plan = plan_linearize(g, ["b"])
    assert [(m.revision, m.new) for m in plan.moves] == [("d", ("b",)), ("c", ("d2",))]
    assert plan.head_after == "c"


def test_a_second_base_is_intentional_unless_branches_names_it() -> None:
    g = graph(("a", None), ("b", "a"), ("x", None))
    plan = plan_linearize(g, ["b", "x"])
    assert plan.moves == [] and "all intentional" in plan.notes[0]
    assert "x: intentional: on its own base x" in plan.notes[0]
    plan = plan_linearize(g, ["b"], branches=["b", "x"])
    assert [(m.revision, m.old, m.new) for m in plan.moves] == [("x", (), ("b",))]


def test_named_branches_are_left_alone() -> None:
    g = RevisionGraph([Revision("a"), Revision("b", ("a",)), Revision("c", ("a",), branch_labels=("reports",))])
    assert plan_linearize(g, ["b"]).moves == []
    with pytest.raises(GraphError, match="on the intentional branch"):
        plan_linearize(g, ["b"], order=["b", "c"])
    plan = plan_linearize(g, ["b"], branches=["reports", "b"])
    assert [(m.revision, m.new) for m in plan.moves] == [("c", ("b",))]


def test_a_branch_that_joins_twice_needs_an_order() -> None:
    g = graph(("a", None), ("b", "a"), ("c", "b"), ("x", "a"), ("y", "b"), ("m", ("x", "y")))
    with pytest.raises(GraphError, match="several points"):
        plan_linearize(g, ["c"])


GUIDE_LINKS = [
    ("2dd19a2d0626", None),
    ("137b19ac6ef3", "2dd19a2d0626"),
    ("5a1c2e3d4f56", "137b19ac6ef3"),
    ("6b2d3e4f5a67", "5a1c2e3d4f56"),
    ("7c3e4f5a6b78", "6b2d3e4f5a67"),
    ("file_doc_mgmt_001", "2dd19a2d0626"),
]


def test_an_order_inserts_in_the_middle_like_the_guide() -> None:
    plan = plan_linearize(graph(*GUIDE_LINKS), ["5a1c2e3d4f56"], ["5a1c", "file_doc_mgmt_001", "6b2d"])
    assert [(m.revision, m.old, m.new) for m in plan.moves] == [
        ("file_doc_mgmt_001", ("2dd19a2d0626",), ("5a1c2e3d4f56",)),
        ("6b2d3e4f5a67", ("5a1c2e3d4f56",), ("file_doc_mgmt_001",)),
    ]
    assert plan.head_after == "7c3e4f5a6b78"


def test_an_order_never_moves_an_applied_revision() -> None:
    with pytest.raises(GraphError, match="refusing to move 6b2d3e4f5a67: applied"):
        plan_linearize(graph(*GUIDE_LINKS), ["6b2d3e4f5a67"], ["5a1c2e3d4f56", "file_doc_mgmt_001", "6b2d3e4f5a67"])


@pytest.mark.parametrize(
    ("order", "message"),
    [
        (["5a1c2e3d4f56"], "at least two"),
        (["5a1c2e3d4f56", "file_doc_mgmt_001", "5a1c2e3d4f56"], "twice"),
        (["7c3e4f5a6b78", "nope"], "no revision 'nope'"),
        (["137b19ac6ef3", "file_doc_mgmt_001"], "would still conflict"),
        (["file_doc_mgmt_001", "2dd19a2d0626"], "refusing to move 2dd19a2d0626"),
    ],
)
def test_bad_orders(order: list[str], message: str) -> None:
    with pytest.raises(GraphError, match=message):
        plan_linearize(graph(*GUIDE_LINKS), ["137b19ac6ef3"], order)


def test_a_cycle_from_an_order_is_caught() -> None:
    with pytest.raises(GraphError, match="cycle"):
        plan_linearize(graph(*GUIDE_LINKS), [], ["7c3e4f5a6b78", "file_doc_mgmt_001", "2dd19a2d0626"])


# --- rewriting ---------------------------------------------------------------------------------------

def test_rewrite_changes_the_link_and_the_docstring_only() -> None:
    old = version_file("file_doc_mgmt_001", "2dd19a2d0626")
    new = rewrite_down_revision(old, ("5a1c2e3d4f56",), "v.py")
    assert "down_revision = '5a1c2e3d4f56'  # the parent\n" in new
    assert "Revises: 5a1c2e3d4f56\n" in new
    assert new.replace("5a1c2e3d4f56", "2dd19a2d0626") == old
    revision = parse_revision(new, "v.py")
    assert revision is not None and revision.down_revisions == ("5a1c2e3d4f56",)


def test_rewrite_keeps_quotes_annotations_and_line_endings() -> None:
    old = version_file("b", "a", annotated=True, quote='"').replace("\n", "\r\n")
    new = rewrite_down_revision(old, ("z",))
    assert 'down_revision: Union[str, Sequence[str], None] = "z"  # the parent\r\n' in new
    assert "Revises: z\r\n" in new
    assert new.count("\r\n") == old.count("\r\n")


def test_rewrite_counts_columns_in_characters_not_bytes() -> None:
    old = "revision = 'b'; note = 'é✓'; down_revision = 'a'\n"
    assert rewrite_down_revision(old, ("zz",)) == "revision = 'b'; note = 'é✓'; down_revision = 'zz'\n"


def test_rewrite_a_multi_line_merge_tuple_and_to_none() -> None:
    old = '"""merge\n\nRevises: b, c\n"""\nrevision = "m"\ndown_revision = (\n    "b",\n    "c",\n)\nx = 1\n'
    new = rewrite_down_revision(old, ("c",))
    assert new == '"""merge\n\nRevises: c\n"""\nrevision = "m"\ndown_revision = "c"\nx = 1\n'
    assert "down_revision = None\n" in rewrite_down_revision(new, ())
    assert "Revises:\n" in rewrite_down_revision(new, ())


def test_rewrite_needs_an_assignment() -> None:
    with pytest.raises(GraphError, match="no down_revision assignment"):
        rewrite_down_revision("revision = 'a'\n", ("b",), "v.py")


def test_unified_diff() -> None:
    old = version_file("b", "a")
    diff = unified_diff("/srv/app/alembic/versions/b.py", old, rewrite_down_revision(old, ("z",)))
    assert diff.startswith("--- a/srv/app/alembic/versions/b.py\n+++ b/srv/app/alembic/versions/b.py\n")
    assert "-down_revision = 'a'  # the parent\n+down_revision = 'z'  # the parent\n" in diff
    assert "-Revises: a\n+Revises: z\n" in diff
    assert unified_diff("x", old, old) == ""


# --- the actions, on an in-memory backend --------------------------------------------------------------

class MemoryTarget:
    """Files of the backend in a dict: enough of the Target interface for the alembic actions."""

    name = "compose"
    workdir = None  # relative paths resolve in the service, as in a container

    def __init__(self, files: dict[str, str]):
        self.files = {path: text.encode() for path, text in files.items()}
        self.written: list[str] = []

    def read_file(self, service: str, path: str) -> bytes:
        try:
            return self.files[path]
        except KeyError:
            raise MissingFile(f"cannot read {path} in {service}: no such file", path=path,
                              service=service) from None

    def write_file(self, service: str, path: str, data: bytes) -> None:
        self.files[path] = data
        self.written.append(path)

    def list_files(self, service: str, directory: str, pattern: str = "*") -> list[str]:
        from fnmatch import fnmatchcase

        return sorted(p for p in self.files if p.rsplit("/", 1)[0] == directory
                      and fnmatchcase(p.rsplit("/", 1)[1], pattern))

    def delete_file(self, service: str, path: str) -> None:
        self.files.pop(path, None)


class MemoryDatabase:
    """alembic_version in a list (None: no such table)."""

    def __init__(self, versions: list[str] | None):
        self.versions = versions

    def table_exists(self, name: str) -> bool:
        return name == "alembic_version" and self.versions is not None

    def query(self, sql: str, params: dict | None = None, identifiers: dict | None = None) -> tuple:
        assert sql.startswith("SELECT version_num FROM {table}") and identifiers == {"table": "alembic_version"}
        return ["version_num"], [[v] for v in sorted(self.versions or [])], ""


def context(versions: list[str] | None, *, alembic: list[str] | None = None, branch: bool = True):
    from types import SimpleNamespace

    from runbook.config import BackendSettings, Config

    files = {"/srv/app/alembic.ini": (LEADGEN / "alembic.ini").read_text(),
             "/srv/app/alembic/versions/__init__.py": "",
             "/srv/app/alembic/versions/__pycache__/add_file_document_management.cpython-311.pyc": "stale"}
    for path in (LEADGEN / "alembic" / "versions").glob("*.py"):
        if branch or path.name not in ("add_file_document_management.py", "8d4f5a6b7c89_add_document_tags.py"):
            files[f"/srv/app/alembic/versions/{path.name}"] = path.read_text()
    config = Config(backend=BackendSettings(workdir="/srv/app", alembic=alembic or ["alembic"]))
    return SimpleNamespace(config=config, target=MemoryTarget(files), database=MemoryDatabase(versions))


def test_linearize_action_rewrites_one_file_and_shows_the_diff() -> None:
    from runbook.frameworks.builtin import get_action

    ctx = context(["5a1c2e3d4f56"])
    result = get_action("alembic.linearize")(ctx, {"order": [], "versions_dir": ""})
    path = "/srv/app/alembic/versions/add_file_document_management.py"
    assert result.exit_code == 0
    assert ctx.target.written == [path]
    assert b"down_revision = '5a1c2e3d4f56'\n" in ctx.target.files[path]
    assert "+down_revision = '5a1c2e3d4f56'\n" in result.stdout
    assert result.data["moves"] == [{"revision": "file_doc_mgmt_001", "path": path, "old": ["2dd19a2d0626"],
                                     "new": ["5a1c2e3d4f56"]}]
    assert result.data["to_apply"] == ["file_doc_mgmt_001", "8d4f5a6b7c89"]
    assert not any(p.endswith(".pyc") for p in ctx.target.files)  # stale bytecode of the moved file is gone


def test_linearize_action_writes_nothing_when_it_refuses() -> None:
    from runbook.frameworks.builtin import get_action

    ctx = context(["5a1c2e3d4f56", "8d4f5a6b7c89"])
    result = get_action("alembic.linearize")(ctx, {})
    # A state the playbook does not fit is a refusal (exit 2), not a failure.
    assert result.refused and result.exit_code == 2
    assert "alembic-merge-heads" in result.problems[0]
    assert ctx.target.written == []


def test_linearize_action_takes_an_order_as_text() -> None:
    from runbook.frameworks.builtin import get_action

    ctx = context(None)
    result = get_action("alembic.linearize")(ctx, {"order": "8d4f, 137b"})
    assert [m["revision"] for m in result.data["moves"]] == ["137b19ac6ef3"]
    assert result.data["head"] == "5a1c2e3d4f56"


def test_merge_needed_and_heads_actions() -> None:
    from runbook.frameworks.builtin import get_action

    needed = get_action("alembic.merge-needed")(context(["5a1c2e3d4f56"]), {})
    assert needed.exit_code == 0 and needed.data["needed"] is True
    healthy = get_action("alembic.merge-needed")(context(["5a1c2e3d4f56"], branch=False), {})
    assert healthy.data["needed"] is False
    assert "nothing to do: one head, 5a1c2e3d4f56 (add documents table)" in healthy.stdout
    heads = get_action("alembic.heads")(context(["5a1c2e3d4f56"], branch=False), {})
    assert heads.data["at_head"] is True and heads.data["heads"] == ["5a1c2e3d4f56"]
    nothing = get_action("alembic.linearize")(context(["5a1c2e3d4f56"], branch=False), {})
    assert nothing.data["changed"] is False and "nothing to do: one head" in nothing.stdout


def test_the_versions_come_from_the_ini_the_alembic_command_uses() -> None:
    from runbook.frameworks.builtin import get_action

    ctx = context([], alembic=["alembic", "-c", "other.ini"])
    ctx.target.files["/srv/app/other.ini"] = b"[alembic]\nscript_location = %(here)s/elsewhere\n"
    with pytest.raises(GraphError, match="no Alembic version files in /srv/app/elsewhere/versions"):
        get_action("alembic.heads")(ctx, {})
    assert get_action("alembic.heads")(ctx, {"versions_dir": "alembic/versions"}).data["count"] == 2

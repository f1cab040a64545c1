"""Heads that are meant and heads that conflict: classify_heads, diagnose, the repairs' plans."""

from __future__ import annotations

import pytest

from runbook.frameworks.alembic import inspection as alembic
from runbook.frameworks.alembic.graph import LABELLED, MAIN, OWN_BASE, GraphError, Revision, RevisionGraph, summarize
from runbook.frameworks.alembic.linearize import other_databases, plan_linearize
from runbook.frameworks.diagnose import alembic_findings


def scripts(revisions: dict[str, tuple[list[str], list[str], list[str]]]) -> alembic.AlembicScripts:
    """Revisions as {id: (down_revision, branch_labels, depends_on)}; heads as Alembic counts them."""
    heads = sorted(r for r in revisions if not any(r in downs for downs, _, _ in revisions.values()))
    return alembic.parse_scripts({"format": 1, "framework": "alembic", "heads": heads, "error": None,
                                  "revisions": [{"revision": r, "down_revision": d, "declared_labels": labels,
                                                 "branch_labels": labels, "depends_on": deps}
                                                for r, (d, labels, deps) in revisions.items()]})


def graph(revisions: dict[str, tuple[list[str], list[str], list[str]]]) -> RevisionGraph:
    return RevisionGraph(Revision(r, tuple(d), f"versions/{r}.py", "", tuple(labels), tuple(deps))
                         for r, (d, labels, deps) in revisions.items())


# The issue's project: a linear main line and a second, independent base labelled `audit`.
SECOND_BASE = {
    "m1": ([], [], []), "m2": (["m1"], [], []),
    "a1b2c3d4e5f6": ([], ["audit"], []),
}
# Named branches forked from the main line, one depending on the other line (Alembic's own docs' shape).
FORKED = {
    "m1": ([], [], []), "m2": (["m1"], [], []), "m3": (["m2"], [], []),
    "r1": (["m1"], ["reporting"], ["m2"]), "r2": (["r1"], [], []),
}


def test_a_labelled_second_base_is_intentional_and_healthy_at_both_heads() -> None:
    found = scripts(SECOND_BASE)
    kinds = found.kinds()
    assert kinds.conflicts == []
    assert kinds.kinds == {"m2": OWN_BASE, "a1b2c3d4e5f6": LABELLED}
    assert alembic_findings(found, ["a1b2c3d4e5f6", "m2"]) == []
    assert alembic.head_problems(found) == []


def test_an_unlabelled_second_base_is_its_own_base() -> None:
    kinds = scripts({"m1": ([], [], []), "x1": ([], [], [])}).kinds()
    assert kinds.conflicts == [] and kinds.kinds == {"m1": OWN_BASE, "x1": OWN_BASE}


def test_named_branches_and_depends_on_are_intentional() -> None:
    kinds = scripts(FORKED).kinds()
    assert kinds.conflicts == []
    assert kinds.kinds == {"m3": MAIN, "r2": LABELLED}
    assert "labelled branch reporting" in kinds.why["r2"]


def test_a_conflict_on_one_branch_is_found_and_names_only_its_heads() -> None:
    revisions = {**FORKED, "r3": (["r1"], [], [])}  # r2 and r3 both revise r1 on the reporting branch
    found = scripts(revisions)
    kinds = found.kinds()
    assert kinds.conflicts == [["r2", "r3"]] and kinds.shared[0] == ["r1"]
    [finding] = alembic_findings(found, ["m3", "r2"])
    assert finding.kind == "alembic-multiple-heads"
    assert finding.title == "2 heads conflict: r2, r3 revise r1 and carry no branch label"
    assert finding.command == "runbook run alembic-linearize --yes"
    assert any("left alone: m3: intentional: the main line" in e for e in finding.evidence)
    assert any(e.startswith("r2: conflict: shares r1 with r3") for e in finding.evidence)
    [both] = alembic_findings(found, ["m3", "r2", "r3"])
    assert both.command == "runbook run alembic-merge-heads --yes"


def test_the_issue_conflict_beside_an_intentional_base() -> None:
    revisions = {**SECOND_BASE, "m3": (["m1"], [], [])}
    found = scripts(revisions)
    [finding] = alembic_findings(found, ["a1b2c3d4e5f6", "m2"])
    assert finding.title.startswith("2 heads conflict: m2, m3 revise m1")
    assert finding.command == "runbook run alembic-linearize --yes"  # the audit row is another branch


def test_depends_on_counts_as_applied() -> None:
    found = scripts(FORKED)
    assert found.graph.applied(["r2"]) >= {"r1", "m1", "m2"}
    assert "m2" not in found.graph.ancestors("r2") and "m2" in found.graph.ancestors("r2", dependencies=True)
    g = graph(FORKED)
    assert g.applied(["r2"]) == {"r2", "r1", "m1", "m2"}
    assert g.order().index("m2") < g.order().index("r1")


def test_depends_on_a_label_resolves_and_a_bad_one_is_named() -> None:
    g = graph({"m1": ([], ["main"], []), "a1": ([], ["audit"], ["main"])})
    assert g.dependencies["a1"] == ("m1",)
    with pytest.raises(GraphError, match="depends_on 'nope'"):
        graph({"m1": ([], [], []), "a1": ([], [], ["nope"])})
    with pytest.raises(GraphError, match="cycle"):
        graph({"m1": ([], [], ["a2"]), "a1": ([], [], []), "a2": (["a1"], [], ["m1"])})


def test_linearize_joins_only_the_conflict_and_keeps_the_other_branch() -> None:
    g = graph({**FORKED, "r3": (["r1"], [], [])})
    plan = plan_linearize(g, ["m3", "r2"])
    assert [(m.revision, m.old, m.new) for m in plan.moves] == [("r3", ("r1",), ("r2",))]
    assert plan.head_after == "m3, r3"
    facts = summarize(g, ["m3", "r2"])
    assert facts["join"] == [["r2", "r3"]] and facts["intentional"] == ["m3"] and not facts["no_conflict"]


def test_intentional_heads_are_nothing_to_do_unless_branches_names_them() -> None:
    g = graph(SECOND_BASE)
    facts = summarize(g, ["a1b2c3d4e5f6", "m2"])
    assert facts["join"] == [] and facts["no_conflict"] and facts["at_head"]
    assert summarize(g, [], ["audit", "m2"])["join"] == [["a1b2c3d4e5f6", "m2"]]
    with pytest.raises(GraphError, match="neither a head nor the branch label"):
        summarize(g, [], ["m1", "audit"])
    with pytest.raises(GraphError, match="at least two heads"):
        summarize(g, [], ["audit"])


def test_linearize_says_which_revisions_move_and_how_other_databases_are_stamped() -> None:
    g = graph({"b": ([], [], []), "x1": (["b"], [], []), "x2": (["x1"], [], []), "y1": (["b"], [], [])})
    plan = plan_linearize(g, ["x2"])
    lines = other_databases(g, plan.moves, ["y1"])
    assert lines[0] == "re-points down_revision of y1 (applied nowhere in this database)"
    assert "applied y1 has it below b, not below x2" in lines[1]
    assert "`alembic stamp --purge y1`" in lines[1]

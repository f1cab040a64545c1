"""diagnose's findings, decided purely from inspection answers shaped like the backend script's, and the
fit check `runbook run` makes from them."""

from __future__ import annotations

import shlex
from typing import Any

from runbook.engine.fit import decide
from runbook.frameworks.alembic import inspection as alembic
from runbook.frameworks.diagnose import alembic_findings, command, django_findings
from runbook.frameworks.django import inspection as django


def migration(app: str, name: str, deps: list[str], applied: bool, ops: list[str] | None = None,
              initial: bool | None = None, replaces: list[str] | None = None) -> dict[str, Any]:
    return {"app": app, "name": name, "dependencies": [d.split(".") for d in deps],
            "replaces": [r.split(".") for r in (replaces or [])],
            "initial": name.startswith("0001") if initial is None else initial, "applied": applied,
            "operations": ops or []}


def check(subject: str, ok: bool | None, message: str, problem: str | None = None) -> dict[str, Any]:
    return {"subject": subject, "ok": ok, "message": message,
            "problem": problem if ok is False else ("cannot-prove" if ok is None else None)}


def fake(key: str, checks: list[dict[str, Any]], deps: list[str] | None = None, unapplied: list[str] | None = None,
         initial: bool = True) -> dict[str, Any]:
    return {"requested": key, "migration": key, "applied": False, "initial": initial, "replaces": [],
            "dependencies": deps or [], "unapplied_dependencies": unapplied or [], "status": "?",
            "operations": [{"type": "CreateModel", "describe": "CreateModel: Create model X", "status": "?",
                            "note": None, "checks": checks}]}


TABLE_OK = check("table billings", True, "table billings exists")


def inspection(migrations: list[dict], problems: list[dict] | None = None, fake_checks: list[dict] | None = None,
               conflicts: dict | None = None) -> django.Inspection:
    applied = [[m["app"], m["name"], "2026-01-01T00:00:00"] for m in migrations if m["applied"]]
    return django.parse_inspection({
        "format": 1, "framework": "django", "django": "5.2", "settings": "shop.settings",
        "migrations": migrations, "applied": applied, "history_table": True,
        "leaves": {}, "conflicts": conflicts or {}, "problems": problems or [], "fake_check": fake_checks or []})


def test_a_column_with_another_type_is_partial_not_pending() -> None:
    found = inspection([migration("shop", "0001_initial", [], False)], fake_checks=[fake("shop.0001_initial", [
        TABLE_OK,
        check("column billings.total", False, "column billings.total is integer, the migration makes it numeric",
              "differs")])])
    [finding] = django_findings(found)
    assert finding.kind == "partly-applied"
    assert "column billings.total is integer, the migration makes it numeric" in finding.evidence
    assert finding.command == "runbook run complete-migrations --var migrations=shop.0001_initial --yes"


def test_unprovable_checks_beside_an_existing_table_are_partial_and_listed() -> None:
    found = inspection([migration("shop", "0002_data", ["shop.0001_initial"], False)],
                       fake_checks=[fake("shop.0002_data", [TABLE_OK, check("operation RunPython", None,
                                                                               "RunPython cannot be proven")])])
    [finding] = django_findings(found)
    assert finding.kind == "partly-applied"
    assert finding.evidence == ["cannot prove: RunPython cannot be proven"]


def test_nothing_there_is_pending_with_the_apply_line() -> None:
    found = inspection([migration("shop", "0001_initial", [], False)], fake_checks=[fake("shop.0001_initial", [
        check("table billings", False, "table billings does not exist", "missing")])])
    [finding] = django_findings(found)
    assert (finding.kind, finding.command) == ("pending", "runbook run apply-migrations --yes")


def test_safe_to_fake_leaves_out_a_migration_whose_unapplied_dependency_is_not_proven() -> None:
    found = inspection(
        [migration("a", "0001_initial", [], False), migration("a", "0002_more", ["a.0001_initial"], False),
         migration("b", "0001_initial", [], False)],
        fake_checks=[fake("a.0001_initial", [check("table t", False, "table t does not exist", "missing")]),
                     fake("a.0002_more", [TABLE_OK], ["a.0001_initial"], ["a.0001_initial"], initial=False),
                     fake("b.0001_initial", [TABLE_OK])])
    kinds = {f.kind: f for f in django_findings(found)}
    assert kinds["safe-to-fake"].command == "runbook run fake-migrations --var migrations=b.0001_initial --yes"
    assert kinds["safe-to-fake"].evidence == ["b.0001_initial: proven"]


def test_squashed_migration_without_its_row_gets_the_fake_line() -> None:
    found = inspection([migration("a", "0001_squashed_0003", [], True, replaces=["a.0001_initial", "a.0002_x"])],
                       problems=[{"kind": "squash-unrecorded", "migration": "a.0001_squashed_0003",
                                  "message": "a.0001_squashed_0003 replaces a.0001_initial, a.0002_x, which are all "
                                             "recorded, but has no row of its own"}])
    [finding] = django_findings(found)
    assert finding.kind == "squash-unrecorded"
    assert finding.command == "runbook run fake-migrations --var migrations=a.0001_squashed_0003 --yes"


def test_recorded_migration_whose_column_is_missing_is_named() -> None:
    found = inspection(
        [migration("shop", "0001_initial", [], True, ["CreateModel: Create model Product"]),
         migration("shop", "0002_product_sku", ["shop.0001_initial"], True, ["AddField: Add field sku to product"]),
         migration("shop", "0003_later", ["shop.0002_product_sku"], False)],
        problems=[{"kind": "column-missing", "model": "shop.Product", "table": "shop_product", "column": "sku",
                   "field": "sku", "message": "column shop_product.sku (field shop.Product.sku) does not exist"}],
        fake_checks=[fake("shop.0003_later", [check("table t", False, "table t does not exist", "missing")])])
    kinds = {f.kind: f for f in django_findings(found)}
    # Named even though shop.0003 is not applied: the app need not be fully applied. The column is put back
    # from the recorded state: running 0002 again would not do in a history that altered the column later.
    assert kinds["schema-lost"].command == "runbook run restore-schema --var apps=shop --yes"
    assert kinds["schema-lost"].evidence == ["column shop_product.sku (field shop.Product.sku) does not exist"]
    assert django_findings(found)[0].kind == "schema-lost"


def test_orphan_rows_with_a_migration_standing_in_get_fake_conflict() -> None:
    found = inspection([migration("hc", "0003_new", [], False)],
                       problems=[{"kind": "no-file", "migration": "hc.0003_old", "message": "no file for hc.0003_old"}],
                       fake_checks=[fake("hc.0003_new", [TABLE_OK, check("column billings.notes", False,
                                                                         "column billings.notes does not exist",
                                                                         "missing")])])
    [finding] = django_findings(found)  # the partial 0003_new is covered by this finding, not listed again
    assert finding.kind == "replaced-file"
    assert finding.command == "runbook run fake-conflict --var app=hc --var add_missing_columns=true --yes"


def test_orphan_rows_alone_get_forget_migrations() -> None:
    found = inspection([], problems=[{"kind": "no-file", "migration": "hc.0003_old", "message": "no file"}])
    [finding] = django_findings(found)
    assert (finding.kind, finding.playbook) == ("no-file", "forget-migrations")


def test_commands_are_quoted_for_the_shell() -> None:
    line = command("fake-conflict", app="my app", migration="0003_x;rm -rf")
    assert shlex.split(line) == ["runbook", "run", "fake-conflict", "--var", "app=my app",
                                 "--var", "migration=0003_x;rm -rf", "--yes"]


def scripts(revisions: dict[str, list[str]]) -> alembic.AlembicScripts:
    heads = sorted(r for r in revisions if not any(r in downs for downs in revisions.values()))
    return alembic.parse_scripts({"format": 1, "framework": "alembic", "heads": heads, "error": None,
                                  "revisions": [{"revision": r, "down_revision": d} for r, d in revisions.items()]})


GRAPH = {"base": [], "a1": ["base"], "a2": ["a1"], "b1": ["base"]}


def test_alembic_two_heads_on_one_branch_linearize_and_on_both_merge() -> None:
    [one] = alembic_findings(scripts(GRAPH), ["a2"])
    assert one.command == "runbook run alembic-linearize --yes"
    [both] = alembic_findings(scripts(GRAPH), ["a2", "b1"])
    assert both.command == "runbook run alembic-merge-heads --yes"


def test_alembic_ancestor_row_and_unknown_revision() -> None:
    linear = {"base": [], "a1": ["base"]}
    [redundant] = alembic_findings(scripts(linear), ["a1", "base"])
    assert (redundant.kind, redundant.command) == ("alembic-redundant-rows", "runbook run alembic-prune-versions --yes")
    [unknown] = alembic_findings(scripts(linear), ["zz9"])
    assert unknown.kind == "alembic-unknown-revision" and "restore the revision file" in unknown.advice
    assert unknown.command == "runbook run alembic-stamp-head --yes"
    assert alembic_findings(scripts(linear), ["a1"]) == []


def test_fit_check_decisions() -> None:
    heads = alembic_findings(scripts(GRAPH), ["a2"])
    assert decide("alembic-linearize", "alembic", "alembic", ["alembic-multiple-heads"], heads).verdict == "fits"
    nothing = decide("alembic-linearize", "alembic", "alembic", ["alembic-multiple-heads"], [])
    assert nothing.verdict == "nothing" and nothing.line.startswith("nothing to do:")
    other = decide("fix-history", "alembic", "any", ["inconsistent-history"], heads)
    assert other.verdict == "refused" and other.line.endswith("run instead: runbook run alembic-linearize --yes")
    wrong = decide("fix-history", "alembic", "django", ["inconsistent-history"], [])
    assert wrong.verdict == "refused" and "django playbook" in wrong.line
    asked = decide("alembic-merge-heads", "alembic", "alembic", ["alembic-multiple-heads"], [], ["branches"])
    assert asked.verdict == "fits" and "--var branches" in asked.line
    still_wrong = decide("fix-history", "alembic", "django", ["inconsistent-history"], [], ["branches"])
    assert still_wrong.verdict == "refused"


# ---- the pure guards of the playbooks diagnose names ----

def fake_check(key: str, applied: bool, checks: list[tuple[str, bool | None, str, str | None]]) -> django.FakeCheck:
    return django.FakeCheck(requested=key, migration=key, status="?", applied=applied, operations=[
        django.OperationCheck("AddField", "AddField", "?", None,
                              [django.Check(s, ok, m, p) for s, ok, m, p in checks])])


def test_rerun_only_when_everything_the_migration_creates_is_missing() -> None:
    from runbook.frameworks.django.rerun import rerun_refusals

    gone = fake_check("a.0002", True, [("column t.c", False, "column t.c does not exist", "missing")])
    half = fake_check("a.0003", True, [("table u", True, "table u exists", None),
                                       ("column u.d", False, "column u.d does not exist", "missing")])
    ran = fake_check("a.0004", True, [("table v", True, "table v exists", None)])
    pending = fake_check("a.0005", False, [("table w", False, "table w does not exist", "missing")])
    refusals = rerun_refusals([gone, half, ran, pending], ["a.0002", "a.0003", "a.0004", "a.0005", "a.0009"])
    assert [r.split(" ")[0].rstrip(":") for r in refusals] == ["a.0003", "a.0004", "a.0005", "a.0009"]
    assert "already exists" in refusals[0] and "it ran" in refusals[1]


def test_only_rows_without_a_file_may_be_forgotten() -> None:
    from runbook.frameworks.django.rerun import orphan_refusals

    found = inspection([migration("a", "0001_initial", [], True)],
                       problems=[{"kind": "no-file", "migration": "a.0002_old", "message": "no file"}])
    found.applied.append(("a", "0002_old"))
    assert orphan_refusals(found, ["a.0002_old"]) == []
    assert orphan_refusals(found, ["a.0001_initial"]) == [
        "a.0001_initial has a migration file (or is replaced by a squash): its row is not stale"]
    assert orphan_refusals(found, ["a.0003_x"]) == ["a.0003_x has no row in django_migrations"]


def test_a_dependant_that_must_run_again_names_the_foreign_key_it_moves() -> None:
    from runbook.frameworks.django.repair import repointed_keys

    moved = fake_check("cc.0002", True, [("state of cc", False, "the live tables of app cc differ", "differs")])
    moved.state_problems = ["foreign key cc_contact(customer_id) -> customer_customer(id) does not exist "
                            "(field cc.Contact.customer); it references auth_user(id)"]
    proven = fake_check("cat.0003", True, [("column p.barcode", True, "column p.barcode exists", None)])
    assert repointed_keys([moved, proven]) == [("cc.0002", "cc_contact", "customer_id", "customer_customer", "id")]


def test_only_ancestor_rows_of_alembic_version_are_pruned() -> None:
    from runbook.frameworks.alembic.graph import Revision, RevisionGraph
    from runbook.frameworks.alembic.stamp import redundant_rows

    graph = RevisionGraph([Revision("base"), Revision("a1", ("base",)), Revision("b1", ("base",))])
    assert redundant_rows(graph, ["a1", "base"]) == ["base"]
    assert redundant_rows(graph, ["a1", "b1"]) == []
    assert redundant_rows(graph, ["a1", "zz"]) == []  # an unknown row is not pruned here


def test_a_proven_migration_waiting_on_a_partial_one_is_completed_with_it() -> None:
    found = inspection(
        [migration("c", "0001_initial", [], False), migration("c", "0002_fk", ["c.0001_initial"], False)],
        fake_checks=[fake("c.0001_initial", [TABLE_OK, check("column billings.note", False,
                                                             "column billings.note does not exist", "missing")]),
                     fake("c.0002_fk", [TABLE_OK], ["c.0001_initial"], ["c.0001_initial"], initial=False)])
    [finding] = django_findings(found)
    assert finding.kind == "partly-applied"
    assert finding.command == "runbook run complete-migrations --var migrations=c.0001_initial,c.0002_fk --yes"


def _data_check(key: str, deps: list[str] | None = None) -> dict[str, Any]:
    entry = fake(key, [check("operation RunPython", None, f"{key} only runs code")], deps, initial=False)
    entry["operations"][0]["type"], entry["effect"] = "RunPython", "data"
    return entry


def test_rows_lost_everywhere_get_one_fake_initial_line_naming_the_data_migration_it_records() -> None:
    found = inspection(
        [migration("a", "0001_initial", [], False), migration("a", "0002_fill", ["a.0001_initial"], False),
         migration("b", "0001_initial", [], False)],
        fake_checks=[fake("a.0001_initial", [TABLE_OK]), _data_check("a.0002_fill", ["a.0001_initial"]),
                     fake("b.0001_initial", [check("table b", False, "table b does not exist", "missing")])])
    [finding] = django_findings(found)
    # One line for all of it: fake-initial records what is proven, the named data migration, and applies b.
    assert finding.command == "runbook run fake-initial --var data_migrations=a.0002_fill --yes"
    assert "a.0002_fill: cannot prove: a.0002_fill only runs code; the line records it as run" in finding.evidence
    assert "b.0001_initial: not in the schema yet; the line applies it" in finding.evidence
    assert "drop it from data_migrations" in finding.advice


def test_a_lone_data_migration_without_a_row_is_named_with_the_var_that_accepts_it() -> None:
    found = inspection([migration("a", "0001_initial", [], True), migration("a", "0002_fill", ["a.0001_initial"],
                                                                            False)],
                       fake_checks=[_data_check("a.0002_fill", ["a.0001_initial"])])
    [finding] = django_findings(found)
    assert (finding.kind, finding.command) == ("data-unproven",
                                               "runbook run fake-initial --var data_migrations=a.0002_fill --yes")


def test_what_waits_on_a_partial_migration_is_completed_with_it() -> None:
    found = inspection(
        [migration("c", "0001_initial", [], False), migration("c", "0002_alter", ["c.0001_initial"], False)],
        fake_checks=[fake("c.0001_initial", [TABLE_OK, check("state of c.note", False, "column c.note missing",
                                                             "missing")]),
                     fake("c.0002_alter", [check("state of c", False, "not in the schema yet", "missing")],
                          ["c.0001_initial"], ["c.0001_initial"], initial=False)])
    [finding] = django_findings(found)
    assert finding.command == "runbook run complete-migrations --var migrations=c.0001_initial,c.0002_alter --yes"

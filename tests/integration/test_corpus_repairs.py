"""Every repair on real third-party histories: Wagtail, django-oscar and django-allauth, migration files untouched.

The corpus is migrated and seeded once; each case starts from a copy of that database, breaks the history
the way the guides do, and repairs it with the one line `runbook diagnose` prints, run exactly as printed.
Afterwards Django itself agrees (`migrate --check`, `makemigrations --check`), diagnose is healthy, the
history rows are the ones a real `migrate` wrote, and the content rows are unchanged (count and checksum).
"""

from __future__ import annotations

import shlex

import psycopg
import pytest
from corpus import CONTENT_TABLES, content_fingerprint, corpus_fixture, reset_corpus
from stack import manage, run_cli

pytestmark = pytest.mark.integration

corpus = corpus_fixture()


# The harness first: a reset is a template copy that gives the migrated, seeded corpus every time.
def test_reset_gives_the_migrated_seeded_corpus_every_time(corpus) -> None:
    reset_corpus(corpus.settings, corpus.directory)

    manage(corpus.project, "migrate", "--check")
    manage(corpus.project, "makemigrations", "--check", "--dry-run")
    with psycopg.connect(**corpus.settings) as conn:
        applied = conn.execute("SELECT count(*), count(DISTINCT app) FROM django_migrations").fetchone()
    assert applied[0] > 300 and applied[1] >= 30, applied

    first = content_fingerprint(corpus.settings)
    assert set(first) == set(CONTENT_TABLES)
    assert all(count > 0 for count, _ in first.values()), first
    assert first["auth_user"][0] == 4 and first["catalogue_product"][0] == 3 and first["partner_stockrecord"][0] == 6

    with psycopg.connect(**corpus.settings) as conn:
        conn.execute("DELETE FROM account_emailaddress")
        conn.execute("UPDATE catalogue_product SET title = title || ' (changed)'")
    changed = content_fingerprint(corpus.settings)
    assert changed["account_emailaddress"][0] == 0
    assert changed["catalogue_product"] != first["catalogue_product"]

    reset_corpus(corpus.settings, corpus.directory)
    assert content_fingerprint(corpus.settings) == first
    reset_corpus(corpus.settings, corpus.directory)
    assert content_fingerprint(corpus.settings) == first


def _sql(settings: dict[str, object], *statements: str) -> None:
    with psycopg.connect(**settings) as conn:
        for statement in statements:
            assert conn.execute(statement).rowcount != 0, statement


def _history(settings: dict[str, object]) -> set[tuple[str, str]]:
    with psycopg.connect(**settings) as conn:
        return {tuple(r) for r in conn.execute("SELECT app, name FROM django_migrations")}


def _delete(app: str, *names: str) -> str:
    listed = ", ".join(f"'{n}'" for n in names)
    return f"DELETE FROM django_migrations WHERE app = '{app}' AND name IN ({listed})"


# Each break as the guides and real accidents leave it. Columns are dropped from tables that the seed does
# not fill, so the content fingerprint stays comparable; their migrations were altered or followed later.
CASES = {
    # Guide 001, step 1: every history row, of every app (squashes and their replaced migrations too).
    "every-row-deleted": ["DELETE FROM django_migrations"],
    # One row in the middle of a chain, with the later rows still recorded (35 of them for wagtailcore).
    "wagtail-mid-chain-row": [_delete("wagtailcore", "0063_modellogentry")],
    "oscar-mid-chain-row": [_delete("catalogue", "0015_product_is_public")],
    "allauth-mid-chain-row": [_delete("account", "0005_emailaddress_idx_upper_email")],
    # The last rows of an app, while their tables exist (allauth's include a data migration, 0008).
    "wagtail-last-rows": [_delete("wagtailcore", "0096_referenceindex_referenceindex_source_object_and_more",
                                  "0097_baselogentry_uuid_action_timestamp_indexes", "0098_apitoken")],
    "oscar-last-rows": [_delete("catalogue", "0030_auto_20250217_1247", "0031_productcategoryhierarchy",
                                "0032_category_exclude_from_menu_category_long_description")],
    "allauth-last-rows": [_delete("account", "0007_emailaddress_idx_email",
                                  "0008_emailaddress_unique_primary_email_fixup",
                                  "0009_emailaddress_unique_primary_email")],
    # A middle migration's column dropped by hand while its row stays.
    "wagtail-dropped-column": ["ALTER TABLE wagtailcore_revision DROP COLUMN object_str"],
    "oscar-dropped-column": ["ALTER TABLE catalogue_option DROP COLUMN required"],
    "allauth-dropped-column": ["ALTER TABLE socialaccount_socialapp DROP COLUMN provider_id"],
}


# The playbook each break calls for: the one whose proof fits the state.
PLAYBOOKS = {"every-row-deleted": "fake-initial", "mid-chain-row": "fix-history", "last-rows": "fake-initial",
             "dropped-column": "restore-schema"}


@pytest.mark.parametrize("case", list(CASES))
def test_the_diagnose_line_repairs_a_real_history(corpus, runbook_cli: list[str], case: str) -> None:
    settings, directory = corpus.settings, corpus.directory
    reset_corpus(settings, directory)
    history, content = _history(settings), content_fingerprint(settings)
    _sql(settings, *CASES[case])

    found = run_cli(runbook_cli, directory, "diagnose")
    assert found.returncode == 3, found.stdout + found.stderr
    lines = found.stdout.splitlines()
    # One finding, one line: a second line would mean the first does not repair the stack.
    [printed] = [line for line in lines[lines.index("to repair, run (the most serious first):") + 1:] if line]

    argv = shlex.split(printed)
    kind = case if case in PLAYBOOKS else case.split("-", 1)[1]  # wagtail-mid-chain-row -> mid-chain-row
    assert argv[:3] == ["runbook", "run", PLAYBOOKS[kind]], printed
    proc = run_cli(runbook_cli, directory, *argv[1:])
    assert proc.returncode == 0, proc.stdout + proc.stderr

    healthy = run_cli(runbook_cli, directory, "diagnose")
    assert healthy.returncode == 0 and healthy.stdout.startswith("healthy: no finding"), healthy.stdout
    manage(corpus.project, "migrate", "--check", "--noinput")
    manage(corpus.project, "makemigrations", "--check", "--dry-run", "--noinput")
    assert _history(settings) == history  # the rows Django itself writes, squashes and replaced ones alike
    assert content_fingerprint(settings) == content


def test_a_healthy_corpus_is_healthy_and_every_repair_has_nothing_to_do(corpus, runbook_cli: list[str]) -> None:
    settings, directory = corpus.settings, corpus.directory
    reset_corpus(settings, directory)
    history = _history(settings)
    found = run_cli(runbook_cli, directory, "diagnose")
    assert found.returncode == 0 and found.stdout.startswith("healthy: no finding"), found.stdout + found.stderr
    for playbook in ("fix-history", "fake-initial"):
        proc = run_cli(runbook_cli, directory, "run", playbook, "--yes")
        assert proc.returncode == 0 and "nothing to do" in proc.stdout, proc.stdout + proc.stderr
    assert _history(settings) == history

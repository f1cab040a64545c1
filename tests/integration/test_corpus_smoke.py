"""The corpus harness itself: one migrated, seeded stack per session, and a reset back to it in seconds.

After reset_corpus the database is fully migrated by Django's own judgement (`migrate --check` and
`makemigrations --check --dry-run` exit 0 in the backend container), the seeded content is there in
every package, and the content fingerprint is identical after a second reset, whatever a test wrote
in between.
"""

from __future__ import annotations

import time

import psycopg
import pytest
from corpus import CONTENT_TABLES, content_fingerprint, corpus_fixture, reset_corpus
from stack import manage

pytestmark = pytest.mark.integration

corpus = corpus_fixture()


def test_reset_gives_the_migrated_seeded_corpus_every_time(corpus) -> None:
    started = time.monotonic()
    reset_corpus(corpus.settings, corpus.directory)
    assert time.monotonic() - started < 15, "a reset must be a template copy, not a migrate"

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

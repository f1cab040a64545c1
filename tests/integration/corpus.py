"""The real-world corpus on a Compose stack: Wagtail, django-oscar and django-allauth, migrated and seeded once.

A fresh `migrate` of the corpus takes over a minute, so it runs once per module: the stack comes up,
the database `corpus` is migrated and seeded (`manage.py seed_corpus`), and then copied to
`corpus_template` with `CREATE DATABASE ... TEMPLATE`. `reset_corpus` drops `corpus` and copies the
template back, which gives every test the fully migrated, seeded database in about a second.

In a test module:

    from corpus import content_fingerprint, corpus_fixture, reset_corpus

    corpus = corpus_fixture()                  # module-scoped; one stack per project name and port

    def test_something(corpus):                # a CorpusStack
        reset_corpus(corpus.settings, corpus.directory)
        manage(corpus.project, "migrate", "--check")
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from stack import REPO, db_settings, make_template, manage, reset_app, reset_from_template, running_stack

CORPUS = REPO / "tests" / "projects" / "corpus"
CORPUS_PORT = 25800
CORPUS_DB = "corpus"
CORPUS_PROJECT = "rbcorpus"

# Every table seed_corpus writes, directly or through the packages' own save() and signals.
CONTENT_TABLES = (
    "auth_user", "auth_group", "auth_user_groups", "account_emailaddress", "django_site",
    "wagtailcore_page", "wagtailcore_site", "wagtailcore_collection", "wagtailcore_pagelogentry",
    "wagtailcore_referenceindex", "wagtaildocs_document", "wagtailredirects_redirect", "wagtailsearch_indexentry",
    "taggit_tag",
    "catalogue_category", "catalogue_productclass", "catalogue_product", "catalogue_productcategory",
    "partner_partner", "partner_stockrecord",
)


@dataclasses.dataclass(frozen=True)
class CorpusStack:
    directory: Path                 # the stack's directory (docker-compose.yml, app/, .runbook/)
    project: str                    # Compose project name, for manage() and service_container()
    settings: dict[str, object]     # psycopg connection settings of the corpus database


def reset_corpus(settings: dict[str, object], directory: Path | None = None) -> None:
    """Put the migrated, seeded corpus database back (about a second); with directory, also the project files
    under directory/app and no reports of earlier tests."""
    reset_from_template(settings)
    if directory is not None:
        reset_app(directory, CORPUS)
        for path in (directory / ".runbook").glob("reports/*"):
            path.unlink()


def content_fingerprint(settings: dict[str, object], tables: tuple[str, ...] = CONTENT_TABLES,
                        ) -> dict[str, tuple[int, str]]:
    """{table: (row count, md5 of every row as text, in C-collation order of that text)} over the content
    tables; a table that does not exist is left out (a test may have dropped it)."""
    fingerprint: dict[str, tuple[int, str]] = {}
    with psycopg.connect(**settings) as conn:
        present = {r[0] for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}
        for table in tables:
            if table not in present:
                continue
            count, digest = conn.execute(sql.SQL(
                "SELECT count(*), md5(coalesce(string_agg(t::text, E'\\n' ORDER BY t::text COLLATE \"C\"), ''))"
                " FROM {} AS t").format(sql.Identifier(table))).fetchone()
            fingerprint[table] = (count, digest)
    return fingerprint


@contextlib.contextmanager
def corpus_stack(directory: Path, port: int = CORPUS_PORT, dbname: str = CORPUS_DB) -> Iterator[CorpusStack]:
    """Bring the corpus stack up in directory (its name is the Compose project), migrate and seed the
    database once, copy it to the template, yield, and take the stack down with its volumes."""
    settings = db_settings(port, dbname)
    with running_stack(directory, port, app=CORPUS, dbname=dbname) as stack_dir:
        project = stack_dir.name
        manage(project, "migrate", "--noinput", "-v", "0")
        manage(project, "seed_corpus")
        make_template(settings)
        yield CorpusStack(directory=stack_dir, project=project, settings=settings)


def corpus_fixture(project: str = CORPUS_PROJECT, port: int = CORPUS_PORT) -> Callable[..., Iterator[CorpusStack]]:
    """A module-scoped pytest fixture yielding the CorpusStack; assign it to a name in one test module (the
    stack's port and project are its own: two modules at once in two workers would clash)."""

    @pytest.fixture(scope="module")
    def corpus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CorpusStack]:
        with corpus_stack(tmp_path_factory.mktemp("stacks") / project, port) as stack:
            yield stack

    return corpus

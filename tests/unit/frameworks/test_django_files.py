"""The pure parts of runbook.frameworks.django.files: dependency literals found and rewritten in migration files."""

from __future__ import annotations

from runbook.frameworks.diff import unified_diff
from runbook.frameworks.django.files import dependency_literals, rewrite_dependencies

SOURCE = '''from django.conf import settings
from django.db import migrations


class Migration(migrations.Migration):

    dependencies = [
        ('core', '0001_initial'),
        ("tenants", "0012_purge_legacy_architecture"),  # keep this comment
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]
    run_before = [("tenants", "0015_alter_tenant_schema_name")]

    operations = [
        migrations.RunSQL("SELECT 'tenants', '0012_purge_legacy_architecture'"),
    ]
'''


def test_dependency_literals_lists_the_pairs() -> None:
    assert dependency_literals(SOURCE) == [("core", "0001_initial"), ("tenants", "0012_purge_legacy_architecture"),
                                           ("tenants", "0015_alter_tenant_schema_name")]


def test_rewrite_changes_only_the_named_literals() -> None:
    names = {"0012_purge_legacy_architecture", "0015_alter_tenant_schema_name"}
    text, replaced = rewrite_dependencies(SOURCE, "tenants", names, "0001_initial")
    assert replaced == sorted(names)
    assert '("tenants", "0001_initial"),  # keep this comment' in text
    assert 'run_before = [("tenants", "0001_initial")]' in text
    assert "RunSQL(\"SELECT 'tenants', '0012_purge_legacy_architecture'\")" in text  # not a dependency
    assert "('core', '0001_initial')" in text
    assert len(text.splitlines()) == len(SOURCE.splitlines())


def test_rewrite_other_app_or_unknown_name_is_a_no_op() -> None:
    assert rewrite_dependencies(SOURCE, "core", {"0009_x"}, "0001_initial") == (SOURCE, [])
    assert rewrite_dependencies(SOURCE, "billing", {"0012_purge_legacy_architecture"}, "0001_initial") == (SOURCE, [])


def test_rewrite_keeps_non_ascii_text_before_the_literal() -> None:
    source = SOURCE.replace("# keep this comment", "# größer ✓")
    text, _ = rewrite_dependencies(source, "tenants", {"0012_purge_legacy_architecture"}, "0001_initial")
    assert '("tenants", "0001_initial"),  # größer ✓' in text


def test_unified_diff_names_the_file() -> None:
    diff = unified_diff("/srv/app/x.py", "a\nb\n", "a\nc\n")
    assert diff.startswith("--- a/srv/app/x.py\n+++ b/srv/app/x.py\n") and "-b\n+c\n" in diff


"""runbook.yml: optional, strict, errors with file and line; database settings from it."""

from __future__ import annotations

from pathlib import Path

import pytest

from runbook.config import Config, load_config
from runbook.errors import ConfigError
from runbook.targets.base import DatabaseSettings
from runbook.targets.local import settings_from_config


def write(tmp_path: Path, text: str) -> Path:
    (tmp_path / "runbook.yml").write_text(text)
    return tmp_path / "runbook.yml"


def test_no_file_gives_defaults(tmp_path):
    config = load_config(tmp_path)
    assert config.project_dir == tmp_path
    assert config.target == "compose"
    assert (config.services.db, config.services.backend) == ("db", "backend")
    assert config.backend.manage == ["python", "manage.py"]
    assert config.backend.alembic == ["alembic"]
    assert config.artifacts_dir() == (tmp_path / ".runbook").resolve()
    assert config.extra_playbook_dirs() == []
    assert settings_from_config(config) is None


def test_empty_file_gives_defaults(tmp_path):
    write(tmp_path, "# nothing yet\n")
    assert load_config(tmp_path).target == "compose"


def test_settings_are_read(tmp_path):
    write(tmp_path, """\
target: local
compose: {file: compose.prod.yml, project: shop}
services: {db: postgres, backend: web}
backend:
  workdir: /srv/app
  manage: [poetry, run, python, manage.py]
artifacts: var/runbook
playbook_dirs: [ops/playbooks]
step_timeout: 60
""")
    config = load_config(tmp_path)
    assert config.target == "local"
    assert config.compose.file == "compose.prod.yml" and config.compose.project == "shop"
    assert (config.services.db, config.services.backend) == ("postgres", "web")
    assert config.backend.manage == ["poetry", "run", "python", "manage.py"]
    assert config.artifacts_dir() == (tmp_path / "var/runbook").resolve()
    assert config.extra_playbook_dirs() == [(tmp_path / "ops/playbooks").resolve()]
    assert config.step_timeout == 60


def test_unknown_key_gives_file_line_key(tmp_path):
    path = write(tmp_path, "target: local\nservices:\n  db: postgres\n  cache: redis\n")
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path)
    message = str(info.value)
    assert message.startswith(f"{path}:4: services.cache: ")
    assert info.value.exit_code == 2


def test_bad_value_gives_file_line_key(tmp_path):
    path = write(tmp_path, "artifacts: .rb\ntarget: kubernetes\n")
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path)
    assert str(info.value).startswith(f"{path}:2: target: ")
    path = write(tmp_path, "database:\n  host: h\n  port: five\n")
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path)
    assert str(info.value).startswith(f"{path}:3: database.port: ")


@pytest.mark.parametrize(("text", "line", "key"), [("target: local\nproject_dir: /etc\n", 2, "project_dir"),
                                                   ("target: local\n1: x\n", 2, "1")])
def test_keys_that_are_not_settings(tmp_path, text, line, key):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path)
    assert str(info.value) == f"{path}:{line}: {key}: unknown key"


def test_top_level_not_a_mapping(tmp_path):
    path = write(tmp_path, "- target: local\n")
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path)
    assert str(info.value).startswith(f"{path}:1: ")


def test_duplicate_and_syntax_errors(tmp_path):
    path = write(tmp_path, "target: local\ntarget: compose\n")
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path)
    assert str(info.value) == f"{path}:2: target: duplicate key (first given on line 1)"
    path = write(tmp_path, "target: [local\n")
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path)
    assert str(info.value).startswith(f"{path}:")


def config_with(tmp_path: Path, database: str) -> Config:
    write(tmp_path, "database:\n" + database)
    return load_config(tmp_path)


def test_database_from_url_with_escapes(tmp_path):
    config = config_with(tmp_path, "  url: postgresql://app%40corp:p%2Fss@db.internal:6543/shop\n")
    settings = settings_from_config(config)
    assert (settings.host, settings.port, settings.user, settings.password, settings.dbname) == (
        "db.internal", 6543, "app@corp", "p/ss", "shop")
    assert settings.via == "tcp (runbook.yml)"


def test_fields_override_url(tmp_path):
    config = config_with(tmp_path, "  url: postgres://u:p@h/x\n  port: 7\n  user: v\n  name: other\n")
    settings = settings_from_config(config)
    assert (settings.host, settings.port, settings.user, settings.password, settings.dbname) == (
        "h", 7, "v", "p", "other")


def test_fields_only_keep_fallback_for_the_rest(tmp_path):
    config = config_with(tmp_path, "  host: 10.0.0.5\n  password: secret\n")
    fallback = DatabaseSettings(host="db", port=5433, user="django", password="old", dbname="app")
    settings = settings_from_config(config, fallback)
    assert (settings.host, settings.port, settings.user, settings.password, settings.dbname) == (
        "10.0.0.5", 5433, "django", "secret", "app")
    # Without any database setting the fallback is used as it is.
    assert settings_from_config(Config(project_dir=tmp_path), fallback) is fallback


def test_wrong_url_scheme(tmp_path):
    config = config_with(tmp_path, "  url: mysql://u@h/x\n")
    with pytest.raises(ConfigError) as info:
        settings_from_config(config)
    assert "postgresql://" in str(info.value) and "mysql://" in str(info.value)


def test_password_from_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("RUNBOOK_TEST_DB_PASSWORD", "from-env")
    config = config_with(tmp_path, "  user: app\n  password_env: RUNBOOK_TEST_DB_PASSWORD\n")
    settings = settings_from_config(config)
    assert settings.password == "from-env"
    assert settings.conninfo()["password"] == "from-env"


def test_unset_password_env_is_a_config_error(tmp_path, monkeypatch):
    monkeypatch.delenv("RUNBOOK_TEST_DB_PASSWORD", raising=False)
    config = config_with(tmp_path, "  password_env: RUNBOOK_TEST_DB_PASSWORD\n")
    with pytest.raises(ConfigError) as info:
        settings_from_config(config)
    assert "RUNBOOK_TEST_DB_PASSWORD" in info.value.message
    assert info.value.hint == "export RUNBOOK_TEST_DB_PASSWORD=... before running"
    assert info.value.exit_code == 2

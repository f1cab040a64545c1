"""The seam between the CLI and the rest: build config, target and plan; run; nothing here prints."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from runbook.config import Config, load_config
from runbook.options import Options
from runbook.results import RunResult
from runbook.targets.base import Target

if TYPE_CHECKING:
    from runbook.playbook.plan import Plan


def load_project_config(options: Options) -> Config:
    config = load_config(options.resolved_project_dir())
    if options.target:
        config.target = options.target  # type: ignore[assignment]
    if options.db_service:
        config.services.db = options.db_service
    if options.backend_service:
        config.services.backend = options.backend_service
    return config


def make_target(config: Config, options: Options) -> Target:
    """Build the target named in the config; the docker SDK is imported only for compose."""
    if config.target == "local":
        from runbook.targets.local import LocalTarget

        return LocalTarget(config)
    from runbook.targets.compose import ComposeTarget

    return ComposeTarget(config, project_name=options.project_name, compose_file=options.compose_file)


def prepare(options: Options, name: str, assignments: list[str]) -> tuple[Config, Plan]:
    """Load config and playbook and render the plan; every input error surfaces here (exit 2)."""
    # Imported here: the templates (jinja2) cost start-up that `list` and `snapshots` do not need.
    from runbook.playbook.plan import Commands, build_plan
    from runbook.playbook.registry import find
    from runbook.playbook.variables import parse_assignments, resolve_variables

    config = load_project_config(options)
    playbook = find(name, config.extra_playbook_dirs())
    variables = resolve_variables(playbook, parse_assignments(assignments))
    return config, build_plan(playbook, variables, Commands.from_backend(config.backend))


def execute(config: Config, plan: Plan, options: Options, on_event=None,
            rollback_on_failure: bool = False, rehearse: bool = False,
            real_command: str = "", redactor=None) -> tuple[RunResult, Path | None]:
    """Run a prepared plan against the configured target (or, rehearsing, a copy) and write its report.

    A `redactor` passed in learns the run's secrets, so the caller can mask its own lines with it.
    """
    # Imported here: psycopg, docker and the report templates cost more start-up than list/plan need.
    from runbook.engine.executor import Executor

    target = make_target(config, options)
    return Executor(config, target, on_event=on_event, rollback_on_failure=rollback_on_failure,
                    rehearse=rehearse, real_command=real_command, redactor=redactor).run(plan)


def dry_run(config: Config, plan: Plan, on_event=None, redactor=None,
            report: Path | None = None) -> tuple[RunResult, Path | None]:
    """Go through the run's stages against a recording target and database: nothing runs, nothing changes.

    The report is kept only at `report` when given; the project's reports list real runs.
    """
    # Imported here: the executor brings psycopg and the report templates, as for execute.
    from runbook.engine.dryrun import dry_run as run_dry

    return run_dry(config, plan, on_event=on_event, redactor=redactor, report=report)


def diagnose(options: Options):
    """Inspect the stack and return (framework, findings, target facts); changes nothing."""
    from runbook.database.connection import open_database
    from runbook.frameworks.context import RunContext
    from runbook.frameworks.diagnose import diagnose as run_diagnosis

    config = load_project_config(options)
    target = make_target(config, options)
    target.check_ready(["db", "backend"])
    settings = target.database_settings()
    database = open_database(target, settings, "runbook diagnose")
    try:
        framework, findings, _ = run_diagnosis(RunContext(config, target, database, {}))
    finally:
        database.close()
    facts = {**target.describe(), "database": f"{settings.user}@{settings.host}:{settings.port}/{settings.dbname}",
             "framework": framework}
    return framework, findings, facts

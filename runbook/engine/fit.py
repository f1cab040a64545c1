"""Does a playbook fit the stack? Decided before the snapshot from the same findings as `runbook diagnose`.

A built-in playbook names the finding kinds it repairs (`fits:`). With none of them found, the run stops
before anything is written: "nothing to do" (exit 0) when the stack is healthy, refused (exit 2) with the
line that fits when something else is wrong. `fits: any` (the default, and what custom playbooks get)
skips the check: such a playbook's own steps decide.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from runbook.frameworks.context import RunContext
    from runbook.frameworks.diagnose import Finding
    from runbook.playbook.model import Playbook


@dataclass
class Fit:
    verdict: str  # fits | nothing | refused
    line: str
    findings: list[Finding] = field(default_factory=list)
    inspection: Any = None


def decide(name: str, framework: str, wanted_framework: str, fits: list[str], findings: list[Finding],
           given: list[str] | None = None) -> Fit:
    """Say whether a playbook repairing `fits` kinds fits these findings; pure.

    `given` names the playbook's `fits_when_given` variables that have a value: the user asked for the
    repair explicitly (e.g. `--var branches=audit,main` joins intentional branches diagnose calls healthy).
    """
    if wanted_framework not in ("any", framework):
        return Fit("refused", f"refused: {name} is a {wanted_framework} playbook but the backend is a "
                              f"{framework} project; run `runbook diagnose` for the line that fits")
    if given:
        return Fit("fits", f"fits: asked for with --var {', '.join(given)}", findings)
    relevant = [f for f in findings if f.kind in fits]
    if relevant:
        return Fit("fits", f"fits: {relevant[0].title}", findings)
    if not findings:
        return Fit("nothing", f"nothing to do: runbook diagnose finds no {' or '.join(fits)} "
                              "(the stack is healthy); nothing was changed", findings)
    first = findings[0]
    instead = f"run instead: {first.command}" if first.command else first.advice
    return Fit("refused", f"refused: {name} does not fit this state: {first.kind}: {first.title}; {instead}",
               findings)


def check_fit(playbook: Playbook, ctx: RunContext) -> Fit | None:
    """Inspect once and decide; None when the playbook takes any state (`fits: any`)."""
    if playbook.fits == "any":
        return None
    from runbook.frameworks.diagnose import diagnose

    framework, findings, inspection = diagnose(ctx)
    given = [name for name in playbook.fits_when_given if ctx.variables.get(name) not in (None, "", [])]
    fit = decide(playbook.name, framework, playbook.framework, list(playbook.fits), findings, given)
    fit.inspection = inspection
    return fit

"""The Alembic revision graph: revisions, their links, heads and what they mean. Pure: no files, no database.

One graph for both sources: the version files runbook reads as text (alembic/version_files.py), checked
as it is built, and the listing alembic itself makes in the backend (alembic/inspection.py), taken as it is.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from graphlib import CycleError
from typing import Any

from runbook.errors import StepFailed
from runbook.frameworks.ordering import dependency_order


class GraphError(StepFailed):
    """The version files do not form a graph runbook can work on, or a repair would be unsafe."""


class GraphRefused(GraphError):
    """The state does not fit a linearization (an applied revision would move): refused, exit 2."""


@dataclass(frozen=True)
class Revision:
    """One revision as Alembic sees it."""

    revision: str
    down_revisions: tuple[str, ...] = ()
    path: str = ""
    message: str = ""
    branch_labels: tuple[str, ...] = ()  # declared in this revision, not inherited from below
    depends_on: tuple[str, ...] = ()  # revision ids or branch labels

    def label(self) -> str:
        return f"{self.revision} ({self.message})" if self.message else self.revision


class RevisionGraph:
    """The revisions and their `down_revision` and `depends_on` links.

    `checked` (the version files): duplicates, dangling links and cycles raise GraphError, and depends_on
    may name a branch label. Unchecked (alembic's own listing): alembic resolved depends_on already, and on
    a broken graph it stops listing part way, so a link may name a revision that is not listed.
    """

    def __init__(self, revisions: Iterable[Revision], *, checked: bool = True):
        self.checked = checked
        self.revisions: dict[str, Revision] = {}
        for rev in revisions:
            if checked and rev.revision in self.revisions:
                raise GraphError(f"revision {rev.revision} is defined twice: "
                                 f"{self.revisions[rev.revision].path} and {rev.path}")
            self.revisions[rev.revision] = rev
        self._children: dict[str, list[str]] = {r: [] for r in self.revisions}
        for rev in self.revisions.values():
            for parent in rev.down_revisions:
                if parent in self._children:
                    self._children[parent].append(rev.revision)
                elif checked:
                    raise GraphError(f"{rev.path or rev.revision}: down_revision {parent!r} names no revision "
                                     "in the version files")
        labels = {label: r.revision for r in self.revisions.values() for label in r.branch_labels}
        # depends_on as Alembic resolves it: a revision id, or a branch label (the revision declaring it).
        self.dependencies: dict[str, tuple[str, ...]] = {}
        for rev in self.revisions.values():
            resolved = []
            for dep in rev.depends_on:
                target = dep if dep in self.revisions or not checked else labels.get(dep)
                if target is None:
                    raise GraphError(f"{rev.path or rev.revision}: depends_on {dep!r} names no revision or "
                                     "branch label in the version files")
                resolved.append(target)
            self.dependencies[rev.revision] = tuple(resolved)
        self._order = self._ordered() if checked else None

    def parents(self, revision: str, *, dependencies: bool = True) -> tuple[str, ...]:
        """Return a revision's down_revisions, and (by default) what it depends_on; none for an unknown id."""
        rev = self.revisions.get(revision)
        if rev is None:
            return ()
        return rev.down_revisions + (self.dependencies[revision] if dependencies else ())

    def _ordered(self) -> list[str]:
        """Return the revisions parents first (ties by id); raise GraphError on a cycle."""
        try:
            return dependency_order({r: [p for p in self.parents(r) if p in self.revisions]
                                     for r in self.revisions})
        except CycleError as exc:
            cycle = sorted(set(exc.args[1]))
            raise GraphError(f"the down_revision and depends_on links form a cycle through {', '.join(cycle)}"
                             ) from None

    def __contains__(self, revision: str) -> bool:
        return revision in self.revisions

    def order(self) -> list[str]:
        if self._order is None:
            self._order = self._ordered()
        return list(self._order)

    def heads(self) -> list[str]:
        return sorted(r for r, children in self._children.items() if not children)

    def bases(self) -> list[str]:
        return sorted(r for r, rev in self.revisions.items() if not rev.down_revisions)

    def ancestors(self, revision: str, *, dependencies: bool = False) -> set[str]:
        """Return the revision and everything below it (through depends_on too, with `dependencies`)."""
        seen: set[str] = set()
        stack = [revision]
        while stack:
            current = stack.pop()
            if current not in seen:
                seen.add(current)
                stack.extend(self.parents(current, dependencies=dependencies))
        return seen

    def applied(self, current: Iterable[str]) -> set[str]:
        """Return every revision the database has: the rows, their ancestors and what they depend on."""
        applied: set[str] = set()
        for revision in current:
            if self.checked and revision not in self.revisions:
                raise GraphError(f"the database is at revision {revision}, which no version file defines")
            applied |= self.ancestors(revision, dependencies=True)
        return applied

    def kinds(self, heads: Sequence[str] | None = None) -> HeadKinds:
        """Tell the heads (by default those of the links) that are meant from the conflicts."""
        return classify_heads(self, self.heads() if heads is None else heads)

    def heads_named(self, names: Iterable[str]) -> list[str]:
        """Return the heads `--var branches` names: head ids (or prefixes), or branch labels of their lines."""
        heads, found = self.heads(), []
        for name in names:
            lined = [h for h in heads if any(name in self.revisions[r].branch_labels for r in self.ancestors(h))]
            if not lined:
                revision = self.resolve(name)
                lined = [h for h in heads if h == revision]
                if not lined:
                    raise GraphError(f"branches: {name} is neither a head nor the branch label of one "
                                     f"(heads: {', '.join(heads)})")
            found += [h for h in lined if h not in found]
        if len(found) < 2:
            raise GraphError(f"branches names {', '.join(found)}: joining needs at least two heads")
        return found

    def resolve(self, ident: str) -> str:
        """Return the full id for an id or a unique prefix of one, as Alembic accepts."""
        if ident in self.revisions:
            return ident
        matches = sorted(r for r in self.revisions if r.startswith(ident))
        if len(matches) == 1:
            return matches[0]
        if not matches:
            raise GraphError(f"no revision {ident!r} in the version files")
        raise GraphError(f"{ident!r} is ambiguous: {', '.join(matches)}")

    def relinked(self, changes: dict[str, tuple[str, ...]]) -> RevisionGraph:
        """Return a new graph with some revisions' `down_revision` replaced."""
        return RevisionGraph(
            Revision(r.revision, changes.get(r.revision, r.down_revisions), r.path, r.message, r.branch_labels,
                     r.depends_on)
            for r in self.revisions.values()
        )


# --- heads that are meant, and heads that conflict ------------------------------------------------------

CONFLICT, LABELLED, OWN_BASE, MAIN = "conflict", "labelled branch", "own base", "main line"


@dataclass
class HeadKinds:
    """The heads sorted by intent: groups that conflict, and the intentional ones with their kind."""

    conflicts: list[list[str]] = field(default_factory=list)  # each group: heads to be joined
    kinds: dict[str, str] = field(default_factory=dict)  # head -> CONFLICT, LABELLED, OWN_BASE or MAIN
    why: dict[str, str] = field(default_factory=dict)  # head -> one line naming its kind
    shared: dict[int, list[str]] = field(default_factory=dict)  # conflict group index -> nearest shared revisions

    def intentional(self) -> list[str]:
        return sorted(h for h, kind in self.kinds.items() if kind != CONFLICT)

    def group_of(self, head: str) -> list[str] | None:
        return next((g for g in self.conflicts if head in g), None)


def classify_heads(graph: RevisionGraph, heads: Sequence[str]) -> HeadKinds:
    """Sort heads into conflicts and intentional branches; pure.

    Two heads conflict when their lines share a revision and neither line, above what they share,
    declares a branch label: two developers revised the same parent. A head whose line declares its own
    label (a named branch) or that shares nothing with another head (its own base) is meant, and so is
    the unlabelled line the named branches fork from. depends_on does not make heads conflict: it joins
    branches that stay apart on purpose.
    """
    def labels(revision: str) -> tuple[str, ...]:
        rev = graph.revisions.get(revision)
        return rev.branch_labels if rev is not None else ()

    lines = {h: graph.ancestors(h) for h in heads}  # through down_revision only
    group = {h: h for h in heads}

    def root(h: str) -> str:
        while group[h] != h:
            h = group[h]
        return h

    for index, first in enumerate(heads):
        for second in heads[index + 1:]:
            shared = lines[first] & lines[second]
            if not shared:
                continue
            own = (lines[first] | lines[second]) - shared
            if any(labels(r) for r in own):
                continue
            group[root(second)] = root(first)
    groups: dict[str, list[str]] = {}
    for head in heads:
        groups.setdefault(root(head), []).append(head)
    result = HeadKinds()
    for members in (sorted(g) for g in groups.values()):
        if len(members) > 1:
            common = set.intersection(*(lines[h] for h in members))
            nearest = sorted(r for r in common if not any(r in graph.ancestors(o) - {o}
                                                             for o in common if o != r))
            result.shared[len(result.conflicts)] = nearest
            result.conflicts.append(members)
            for head in members:
                result.kinds[head] = CONFLICT
                result.why[head] = (f"{head}: conflict: shares {', '.join(nearest)} with "
                                    f"{', '.join(m for m in members if m != head)} and carries no branch label")
            continue
        [head] = members
        own_labels = sorted({lab for r in lines[head] for lab in labels(r)})
        others = [lines[o] for o in heads if o != head]
        if own_labels:
            result.kinds[head] = LABELLED
            result.why[head] = f"{head}: intentional: labelled branch {', '.join(own_labels)}"
        elif all(not (lines[head] & other) for other in others):
            result.kinds[head] = OWN_BASE
            bases = sorted(r for r in lines[head] if not graph.parents(r, dependencies=False))
            result.why[head] = f"{head}: intentional: on its own base {', '.join(bases)}"
        else:
            result.kinds[head] = MAIN
            result.why[head] = f"{head}: intentional: the main line the labelled branches fork from"
    return result


def summarize(graph: RevisionGraph, current: Sequence[str], branches: Sequence[str] = ()) -> dict[str, Any]:
    """Return the facts a playbook decides on: the heads and their kinds, where the database is, what to join.

    `join` is the groups of heads a repair joins: the conflicts, or the heads `branches` names.
    """
    heads = graph.heads()
    applied = graph.applied(current)
    kinds = graph.kinds()
    join = [graph.heads_named(branches)] if branches else kinds.conflicts
    return {
        "heads": heads,
        "count": len(heads),
        "single_head": len(heads) == 1,
        "multiple_heads": len(heads) > 1,
        "conflicts": kinds.conflicts,
        "no_conflict": not kinds.conflicts,
        "kinds": kinds.kinds,
        "intentional": kinds.intentional(),
        "join": join,
        "current": sorted(current),
        "at_head": sorted(current) == heads,
        "applied_heads": [h for h in heads if h in applied],
        "unapplied": [r for r in graph.order() if r not in applied],
        "revisions": len(graph.revisions),
    }

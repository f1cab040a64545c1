"""YAML with `safe_load` semantics, duplicate keys rejected, and a line number for every key."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from pathlib import Path

import yaml

from runbook.errors import InputError

LineMap = dict[tuple, int]


def read_text(path: Path, error: type[InputError]) -> str:
    """Read a UTF-8 file; a missing, unreadable or non-UTF-8 file is one `error` naming the path and the fix."""
    try:
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        raise error(f"{path}: cannot read: {exc.strerror}") from exc
    except UnicodeDecodeError as exc:
        raise error(f"{path}: not UTF-8 text (byte {exc.start} is {exc.object[exc.start]:#04x})",
                    hint="save the file as UTF-8") from exc


# libyaml parses about ten times faster than the pure-Python parser; both give the nodes' line marks.
_BaseLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _UniqueKeyLoader(_BaseLoader):
    """SafeLoader that refuses a key given twice: YAML keeps the last silently, hiding mistakes."""

    def construct_mapping(self, node, deep=False):
        seen: dict[object, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            line = key_node.start_mark.line + 1
            try:
                first = seen.get(key)
            except TypeError:
                first = None
            if first is not None:
                raise yaml.MarkedYAMLError(
                    problem=f"duplicate key {key!r} (first given on line {first})",
                    problem_mark=key_node.start_mark,
                )
            with contextlib.suppress(TypeError):  # unhashable keys are PyYAML's to refuse
                seen[key] = line
        return super().construct_mapping(node, deep=deep)


def _walk(node: yaml.Node, path: tuple, lines: LineMap) -> None:
    if isinstance(node, yaml.MappingNode):
        first: dict[tuple[str, str], int] = {}
        for key_node, value_node in node.value:
            child = (*path, key_node.value)
            line = key_node.start_mark.line + 1
            if isinstance(key_node, yaml.ScalarNode):
                # Here the key's path is known; the loader's own check below catches only what this misses.
                ident = (key_node.tag, key_node.value)
                if ident in first:
                    raise yaml.MarkedYAMLError(
                        problem=f"{'.'.join(map(str, child))}: duplicate key (first given on line {first[ident]})",
                        problem_mark=key_node.start_mark,
                    )
                first[ident] = line
            lines[child] = line
            _walk(value_node, child, lines)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            child = (*path, index)
            lines[child] = item.start_mark.line + 1
            _walk(item, child, lines)


def load_yaml_with_lines(
    text: str, filename: str, *, error: type[InputError] = InputError
) -> tuple[object, LineMap]:
    """Parse one YAML document; return the data and a map from key path to line number."""
    loader = _UniqueKeyLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None, {}
        lines: LineMap = {(): node.start_mark.line + 1}
        _walk(node, (), lines)
        return loader.construct_document(node), lines
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else 1
        raise error(f"{filename}:{line}: {exc.problem or exc.context}") from exc
    except yaml.YAMLError as exc:
        raise error(f"{filename}: not valid YAML: {exc}") from exc
    finally:
        loader.dispose()


def locate(lines: LineMap, loc: Sequence[object]) -> int:
    """Return the line of the longest prefix of loc that the file has (pydantic adds its own parts)."""
    best = lines.get((), 1)
    prefix: tuple = ()
    for part in loc:
        prefix = (*prefix, part)
        if prefix in lines:
            best = lines[prefix]
        else:
            # pydantic inserts union/tag names into loc; skip them and keep looking.
            prefix = prefix[:-1]
    return best

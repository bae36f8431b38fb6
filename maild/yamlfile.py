"""YAML loading that remembers where every key came from.

Config, rule and SLA files are written by hand. When one is wrong, the admin needs the file,
the key and the line: PyYAML's composed node tree has the marks, so we build plain Python data
and, beside it, a map from key path to line number.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from maild.errors import ConfigError

KeyPath = tuple[str | int, ...]


@dataclass(frozen=True)
class YamlDocument:
    """Parsed YAML data with the line (1-based) of each key path."""

    path: Path
    data: Any
    lines: dict[KeyPath, int]

    def line_of(self, loc: Sequence[str | int]) -> int | None:
        """The line of the deepest known prefix of `loc`."""
        for n in range(len(loc), 0, -1):
            # A mapping key `1:` is stored as "1"; a validator may report it as the int 1.
            for key in (tuple(loc[:n]), tuple(str(p) for p in loc[:n]),
                        tuple(int(p) if isinstance(p, str) and p.isdigit() else p
                              for p in loc[:n])):
                if key in self.lines:
                    return self.lines[key]
        return self.lines.get((), None)

    def error(self, message: str, loc: Sequence[str | int]) -> ConfigError:
        """A ConfigError that points at `loc` in this file."""
        dotted = ".".join(str(p) for p in loc) or None
        return ConfigError(message, file=str(self.path), key=dotted, line=self.line_of(loc))


def _construct(node: yaml.Node, path: KeyPath, lines: dict[KeyPath, int], doc: Path) -> Any:
    lines[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        out: dict[str, Any] = {}
        for key_node, value_node in node.value:
            key = yaml.safe_load(yaml.serialize(key_node))
            if not isinstance(key, str | int | float | bool):
                raise ConfigError(
                    "mapping keys must be scalars", file=str(doc),
                    line=key_node.start_mark.line + 1,
                )
            skey = str(key)
            if skey in out:
                raise ConfigError(
                    f"duplicate key '{skey}'", file=str(doc),
                    key=".".join(str(p) for p in (*path, skey)),
                    line=key_node.start_mark.line + 1,
                )
            child = (*path, skey)
            out[skey] = _construct(value_node, child, lines, doc)
            lines[child] = key_node.start_mark.line + 1
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_construct(n, (*path, i), lines, doc) for i, n in enumerate(node.value)]
    return yaml.safe_load(yaml.serialize(node))


def load_yaml(path: Path) -> YamlDocument:
    """Read and parse one YAML file; every failure is a ConfigError naming the file."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError("file not found", file=str(path)) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read file: {exc}", file=str(path)) from None
    return parse_yaml(text, path)


def parse_yaml(text: str, path: Path) -> YamlDocument:
    """Parse YAML text that came from `path` (used for messages only)."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        line = exc.problem_mark.line + 1 if exc.problem_mark else None
        raise ConfigError(f"invalid YAML: {exc.problem}", file=str(path), line=line) from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"invalid YAML: {exc}", file=str(path)) from None
    lines: dict[KeyPath, int] = {}
    data = {} if node is None else _construct(node, (), lines, path)
    return YamlDocument(path=path, data=data, lines=lines)

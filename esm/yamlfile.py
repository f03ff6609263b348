"""The YAML files esm reads (esm.yaml, templates, overlays): bytes to a document, or a
:class:`~esm.errors.ConfigError` whose one line names the file and what is wrong with it.

Hostile input is refused before it costs time or memory:

================  ================================================================================
bytes             at most :data:`MAX_BYTES`; a missing file, a directory, a file without read
                  permission is ``cannot read: <the system's reason>``
encoding          UTF-8 (a byte order mark is skipped), or UTF-16 with a byte order mark: the
                  encodings a YAML 1.1 processor reads (CloudFormation reads YAML 1.1). Anything
                  else (Latin-1, UTF-32, a binary file) names the first byte that is not UTF-8
                  and its line
structure         nesting at most :data:`MAX_DEPTH` deep, at most :data:`MAX_NODES` values
                  holding at most :data:`MAX_CHARS` characters, all counted with aliases
                  expanded, so an alias bomb ("billion laughs") is refused while it is parsed,
                  before anything walks the document; no alias inside its own anchor
keys              a key appears once per mapping; the second one is named with both lines
================  ================================================================================

CloudFormation's own YAML has no aliases (nor merge keys, nor the binary, omap, pairs, set and
timestamp tags); esm reads them, as it always has, within these bounds. :class:`BoundedLoader`
is a ``yaml.SafeLoader`` with the bounds; :mod:`esm.intrinsics` adds CloudFormation's short tags
to it.
"""

from __future__ import annotations

import codecs
from pathlib import Path
from typing import Any

import yaml

from esm.errors import ConfigError, Problem

MAX_BYTES = 4 * 1024 * 1024  # four times CloudFormation's largest template (1 MB, from S3)
MAX_DEPTH = 100
MAX_NODES = 200_000  # values, aliases expanded; a dense 1 MB template holds about 80,000
MAX_CHARS = 4 * MAX_BYTES  # characters of all scalars, aliases expanded

_ENCODINGS = "esm reads UTF-8, or UTF-16 with a byte order mark (YAML 1.1's encodings)"


class DocumentError(yaml.MarkedYAMLError):
    """A rule of esm's broken by well-formed YAML (too deep, too large, a duplicate key), with
    the document path (``Functions``) where it was found."""

    def __init__(self, rule: str, mark: yaml.Mark | None, path: str = "") -> None:
        super().__init__(problem=rule, problem_mark=mark)
        self.path = path


class BoundedLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` within :data:`MAX_DEPTH` and :data:`MAX_NODES`, counting aliases
    expanded, refusing recursive aliases and duplicate keys (see the module's docstring)."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0
        self._nodes = 0
        self._chars = 0
        self._path: list[str] = []
        self._open_anchors: list[str] = []
        self._sizes: dict[int, tuple[int, int, int]] = {}  # id(node) → values, height, chars

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node:
        segment = f"[{index}]" if isinstance(index, int) else None
        if isinstance(index, yaml.ScalarNode):
            segment = str(index.value)
        self._path.append(segment or "")
        try:
            if self.check_event(yaml.AliasEvent):
                return self._alias(parent, index)
            return self._node(parent, index)
        finally:
            self._path.pop()

    def _alias(self, parent: yaml.Node | None, index: Any) -> yaml.Node:
        event = self.peek_event()  # type: ignore[no-untyped-call]
        anchor = str(event.anchor)
        if anchor in self._open_anchors:
            raise DocumentError(
                f"alias *{anchor} {_line(event.start_mark)} is inside its own anchor &{anchor}: "
                "a recursive structure",
                event.start_mark,
                self.where(),
            )
        node = super().compose_node(parent, index)
        assert node is not None  # an alias always names a node (PyYAML raises otherwise)
        values, height, chars = self._size(node)
        self._count(values, chars, event.start_mark)
        if self._depth + height > MAX_DEPTH:
            raise DocumentError(
                f"alias *{anchor} {_line(event.start_mark)} nests values deeper than {MAX_DEPTH} "
                "levels (esm's limit)",
                event.start_mark,
            )
        return node

    def _node(self, parent: yaml.Node | None, index: Any) -> yaml.Node:
        event = self.peek_event()  # type: ignore[no-untyped-call]
        if self._depth >= MAX_DEPTH:
            raise DocumentError(
                f"nested deeper than {MAX_DEPTH} levels {_line(event.start_mark)} (esm's limit)",
                event.start_mark,
            )
        self._count(1, len(getattr(event, "value", "")), event.start_mark)
        anchor = getattr(event, "anchor", None)
        if anchor is not None:
            self._open_anchors.append(str(anchor))
        self._depth += 1
        try:
            node = super().compose_node(parent, index)
        finally:
            self._depth -= 1
            if anchor is not None:
                self._open_anchors.pop()
        if isinstance(node, yaml.MappingNode):
            self._unique_keys(node)
        assert node is not None  # an event that starts a node was peeked
        return node

    def _count(self, values: int, chars: int, mark: yaml.Mark) -> None:
        self._nodes += values
        self._chars += chars
        if self._chars > MAX_CHARS:
            raise DocumentError(
                f"more than {MAX_CHARS:,} characters with aliases expanded {_line(mark)} (esm's "
                "limit; an alias bomb?)",
                mark,
            )
        if self._nodes > MAX_NODES:
            raise DocumentError(
                f"more than {MAX_NODES:,} values with aliases expanded {_line(mark)} (esm's limit; "
                "an alias bomb?)",
                mark,
            )

    def _size(self, node: yaml.Node) -> tuple[int, int, int]:
        """(values, height, characters) of ``node`` with the aliases in it expanded; memoized,
        so shared nodes cost once. Bounded recursion: every node's height was checked when
        composed."""
        key = id(node)
        if key not in self._sizes:
            values, height, chars = 1, 1, 0
            children: list[yaml.Node] = []
            if isinstance(node, yaml.ScalarNode):
                chars = len(node.value)
            elif isinstance(node, yaml.SequenceNode):
                children = list(node.value)
            elif isinstance(node, yaml.MappingNode):
                children = [n for pair in node.value for n in pair]
            for child in children:
                v, h, c = self._size(child)
                values += v
                height = max(height, h + 1)
                chars += c
            self._sizes[key] = (values, height, chars)
        return self._sizes[key]

    def _unique_keys(self, node: yaml.MappingNode) -> None:
        seen: dict[tuple[str, str], yaml.Node] = {}
        for key, _ in node.value:
            if not isinstance(key, yaml.ScalarNode):
                continue
            first = seen.setdefault((key.tag, key.value), key)
            if first is not key:
                raise DocumentError(
                    f"duplicate key {key.value!r} at line {key.start_mark.line + 1} (first at "
                    f"line {first.start_mark.line + 1}): a key may appear once in a mapping",
                    key.start_mark,
                    self.where(),
                )

    def where(self) -> str:
        """The document path being composed, e.g. ``Resources.Fn.Properties``."""
        out = ""
        for segment in filter(None, self._path):
            if segment.startswith("[") or not out:
                out += segment
            else:
                out += f".{segment}"
        return out

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        """A scalar Python cannot build (``2024-13-01`` as a timestamp, an integer of 5,000
        digits) is a YAML error at its line, not a ValueError from deep inside PyYAML."""
        try:
            return super().construct_object(node, deep)
        except (ValueError, OverflowError) as exc:
            raise yaml.constructor.ConstructorError(
                None,
                None,
                f"{_short(node.value)} is not a valid {node.tag}: {exc}",
                node.start_mark,
            ) from None


def read_yaml_file(path: Path, loader: type[BoundedLoader] = BoundedLoader) -> Any:
    """The document in ``path`` (``None`` when the file holds none); ConfigError names the file
    and the one thing wrong with it."""
    source = str(path)
    text = _decode(_read_bytes(path), source)
    try:
        return yaml.load(text, Loader=loader)  # a SafeLoader
    except DocumentError as exc:
        raise ConfigError([Problem(exc.path, _one_line(exc))], source) from None
    except yaml.YAMLError as exc:
        raise ConfigError([Problem("", _one_line(exc, text))], source) from None
    except RecursionError:  # a backstop: MAX_DEPTH stops nesting long before
        raise ConfigError([Problem("", "nested too deeply")], source) from None


def _read_bytes(path: Path) -> bytes:
    try:
        with path.open("rb") as f:
            data = f.read(MAX_BYTES + 1)
    except OSError as exc:
        raise ConfigError([Problem("", f"cannot read: {exc.strerror or exc}")], str(path)) from None
    if len(data) > MAX_BYTES:
        rule = f"larger than {MAX_BYTES // (1024 * 1024)} MiB (esm's limit)"
        raise ConfigError([Problem("", rule)], str(path))
    return data


def _decode(data: bytes, source: str) -> str:
    if data.startswith((codecs.BOM_UTF32_LE, codecs.BOM_UTF32_BE)):
        rule = f"UTF-32 (its byte order mark): {_ENCODINGS}"
        raise ConfigError([Problem("", rule)], source)
    utf16 = data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE))
    if not utf16 and b"\0" in data:
        nul = data.index(b"\0")
        rule = f"holds NUL bytes ({_byte_at(data, nul)}): a binary file, or UTF-16 without a "
        rule += f"byte order mark? {_ENCODINGS}"
        raise ConfigError([Problem("", rule)], source)
    if utf16:
        try:
            return data.decode("utf-16")
        except UnicodeDecodeError as exc:
            rule = f"not valid UTF-16 (byte {exc.start}: {exc.reason}): {_ENCODINGS}"
            raise ConfigError([Problem("", rule)], source) from None
    bom = len(codecs.BOM_UTF8) if data.startswith(codecs.BOM_UTF8) else 0
    try:
        return data[bom:].decode("utf-8")
    except UnicodeDecodeError as exc:
        rule = f"not UTF-8: {_byte_at(data, bom + exc.start)}; {_ENCODINGS}"
        raise ConfigError([Problem("", rule)], source) from None


def _byte_at(data: bytes, index: int) -> str:
    line = data.count(b"\n", 0, index) + 1
    column = index - data.rfind(b"\n", 0, index)
    return f"byte 0x{data[index]:02x} at line {line}, column {column}"


def _one_line(exc: yaml.YAMLError, text: str = "") -> str:
    """A PyYAML error in one line: what, then where (PyYAML's own text spans several)."""
    if isinstance(exc, DocumentError):
        return str(exc.problem)
    if isinstance(exc, yaml.reader.ReaderError):
        pos = int(exc.position)
        line = text.count("\n", 0, pos) + 1
        column = pos - text.rfind("\n", 0, pos)
        return (
            f"character U+{int(exc.character):04X} at line {line}, column {column} is not "
            "allowed in YAML (not a text file?)"
        )
    if isinstance(exc, yaml.MarkedYAMLError):
        parts = []
        if exc.context:
            parts.append(f"{exc.context}{_at(exc.context_mark)}")
        if exc.problem:
            parts.append(f"{exc.problem}{_at(exc.problem_mark)}")
        return "not valid YAML: " + " ".join(": ".join(parts).split())
    return "not valid YAML: " + " ".join(str(exc).split())


def _at(mark: yaml.Mark | None) -> str:
    return f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""


def _line(mark: yaml.Mark) -> str:
    return f"at line {mark.line + 1}, column {mark.column + 1}"


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else f"{text[:40]}…({len(text)} characters)"

"""Hostile files: every one is refused with one line naming the file and what is wrong with it,
by esm.yaml's loader, the template loader and the overlay loader alike (esm.yamlfile)."""

from __future__ import annotations

import codecs
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from esm.config import load_config
from esm.errors import ConfigError, Problem
from esm.templates import load_overlay, load_template
from esm.yamlfile import MAX_BYTES, MAX_CHARS, MAX_DEPTH, MAX_NODES

CONFIG = "Functions:\n  orders: {Target: 'python:app.handler'}\n"
TEMPLATE = """\
Resources:
  Orders:
    Type: AWS::Serverless::Function
    Properties: {Handler: app.handler, Runtime: python3.12}
"""
OVERLAY = "Settings: {Region: eu-west-1}\n"

Loader = Callable[[Path], Any]
LOADERS: dict[str, tuple[Loader, str]] = {
    "esm.yaml": (load_config, CONFIG),
    "template": (load_template, TEMPLATE),
    "overlay": (load_overlay, OVERLAY),
}


def refusal(load: Loader, path: Path) -> str:
    """The one line a refused file gets; fails unless it is exactly one, naming the file."""
    with pytest.raises(ConfigError) as info:
        load(path)
    lines = str(info.value).splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"{path}: ")
    return lines[0][len(f"{path}: ") :]


def bomb(levels: int = 9, fan: int = 9) -> str:
    """'Billion laughs': ``levels`` anchors, each a list of ``fan`` aliases of the one before."""
    lines = [f"a0: &a0 [{', '.join(['lol'] * fan)}]"]
    for i in range(1, levels):
        lines.append(f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * fan)}]")
    return "\n".join(lines) + "\n"


@pytest.fixture(params=sorted(LOADERS))
def loader(request: pytest.FixtureRequest) -> tuple[Loader, str]:
    return LOADERS[request.param]


# -- bytes and encodings ---------------------------------------------------------------------


def test_a_file_that_is_not_utf8_names_the_byte_and_its_line(
    tmp_path: Path, loader: tuple[Loader, str]
) -> None:
    load, good = loader
    path = tmp_path / "f.yaml"
    path.write_bytes(good.encode() + b"# caf\xe9\n")  # Latin-1
    rule = refusal(load, path)
    lines = good.count("\n") + 1
    assert rule == (
        f"not UTF-8: byte 0xe9 at line {lines}, column 6; esm reads UTF-8, or UTF-16 with a "
        "byte order mark (YAML 1.1's encodings)"
    )


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le", "utf-16-be", "utf-8-sig"])
def test_utf16_and_utf8_with_a_byte_order_mark_read_as_utf8_does(
    tmp_path: Path, encoding: str
) -> None:
    """YAML 1.1 processors read UTF-8 and UTF-16 by their byte order mark (what Windows editors
    and PowerShell's ``>`` write); without a mark, UTF-16 is refused below."""
    bom = {"utf-16-le": codecs.BOM_UTF16_LE, "utf-16-be": codecs.BOM_UTF16_BE}.get(encoding, b"")
    path = tmp_path / "esm.yaml"
    path.write_bytes(bom + CONFIG.encode(encoding))
    plain = tmp_path / "plain.yaml"
    plain.write_text(CONFIG)
    assert load_config(path) == load_config(plain)


def test_utf16_without_a_byte_order_mark_and_binary_files_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "esm.yaml"
    path.write_bytes(CONFIG.encode("utf-16-le"))
    assert refusal(load_config, path) == (
        "holds NUL bytes (byte 0x00 at line 1, column 2): a binary file, or UTF-16 without a byte "
        "order mark? esm reads UTF-8, or UTF-16 with a byte order mark (YAML 1.1's encodings)"
    )
    path.write_bytes(bytes(range(256)))
    assert refusal(load_config, path).startswith("holds NUL bytes (byte 0x00 at line 1, column 1)")
    path.write_bytes(b"\x7fELF\x02\x01\x01\x00" + bytes(range(128, 256)))
    assert refusal(load_config, path).startswith("holds NUL bytes (byte 0x00 at line 1, column 8)")
    path.write_bytes(codecs.BOM_UTF8 + b"Functions: {}\n  \xff")
    assert refusal(load_config, path).startswith("not UTF-8: byte 0xff at line 2, column 3")
    path.write_bytes(b"\x89PNG\r\n\x1a\n")
    assert refusal(load_config, path).startswith("not UTF-8: byte 0x89 at line 1, column 1")
    path.write_bytes(b"Functions: {}\n\x1b[31m\n")
    assert refusal(load_config, path) == (
        "character U+001B at line 2, column 1 is not allowed in YAML (not a text file?)"
    )


def test_utf32_is_refused_with_what_esm_reads(tmp_path: Path) -> None:
    path = tmp_path / "esm.yaml"
    path.write_bytes(CONFIG.encode("utf-32"))
    assert refusal(load_config, path) == (
        "UTF-32 (its byte order mark): esm reads UTF-8, or UTF-16 with a byte order mark "
        "(YAML 1.1's encodings)"
    )


def test_a_file_larger_than_the_limit_is_refused_unread(tmp_path: Path) -> None:
    path = tmp_path / "esm.yaml"
    path.write_bytes(b"#" * (MAX_BYTES + 1))
    assert refusal(load_config, path) == "larger than 4 MiB (esm's limit)"


# -- files that are not there, not files, not readable -----------------------------------------


def test_missing_files_and_directories_cannot_be_read(
    tmp_path: Path, loader: tuple[Loader, str]
) -> None:
    load, _ = loader
    assert refusal(load, tmp_path / "nope.yaml") == "cannot read: No such file or directory"
    (tmp_path / "dir.yaml").mkdir()
    assert refusal(load, tmp_path / "dir.yaml") == "cannot read: Is a directory"


def test_a_file_without_read_permission_cannot_be_read(tmp_path: Path) -> None:
    path = tmp_path / "esm.yaml"
    path.write_text(CONFIG)
    path.chmod(0)
    try:
        if os.access(path, os.R_OK):
            pytest.skip("this user reads files without read permission (root)")
        assert refusal(load_config, path) == "cannot read: Permission denied"
    finally:
        path.chmod(0o600)


# -- documents of the wrong shape ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "what"),
    [("- a\n- b\n", "a list"), ("hello\n", "a string"), ("42\n", "a number")],
)
def test_a_document_that_is_not_a_mapping_says_what_it_is(
    tmp_path: Path, text: str, what: str
) -> None:
    path = tmp_path / "f.yaml"
    path.write_text(text)
    assert refusal(load_config, path) == (
        f"the file must hold a mapping (Functions, EventSourceMappings …), not {what}"
    )
    assert (
        refusal(load_template, path) == f"a template must hold a mapping (Resources …), not {what}"
    )
    assert refusal(load_overlay, path) == (
        "an overlay must hold a mapping (Settings, Functions, Parameters, IgnoredResources, "
        f"Attributes, Embedded, ImportValues), not {what}"
    )


@pytest.mark.parametrize("text", ["", "\n\n", "# only a comment\n", "---\n"])
def test_an_empty_config_or_template_is_refused(tmp_path: Path, text: str) -> None:
    path = tmp_path / "f.yaml"
    path.write_text(text)
    assert refusal(load_config, path) == (
        "the file is empty (or only comments): an esm.yaml holds at least Functions"
    )
    assert refusal(load_template, path) == (
        "the file is empty (or only comments): a template holds at least Resources"
    )


def test_yaml_syntax_errors_are_one_line_with_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "esm.yaml"
    path.write_text("Functions:\n  orders: {Target: 'python:app.handler'\nx: [1\n")
    assert refusal(load_config, path).startswith("not valid YAML: while parsing a flow mapping")
    path.write_text("a: 1\n---\nb: 2\n")
    assert refusal(load_config, path) == (
        "not valid YAML: expected a single document in the stream (line 1, column 1): "
        "but found another document (line 2, column 1)"
    )


@pytest.mark.parametrize(
    ("value", "rule"),
    [
        ("2024-13-01", "'2024-13-01' is not a valid tag:yaml.org,2002:timestamp: month must be"),
        ("9" * 5000, "is not a valid tag:yaml.org,2002:int: Exceeds the limit"),
        ("!!python/object:os.system x", "could not determine a constructor for the tag"),
    ],
)
def test_values_python_cannot_build_are_yaml_errors(tmp_path: Path, value: str, rule: str) -> None:
    path = tmp_path / "esm.yaml"
    path.write_text(f"Settings: {{Region: {value}}}\n")
    assert rule in refusal(load_config, path)


# -- nesting and aliases ---------------------------------------------------------------------


@pytest.mark.parametrize("style", ["flow", "block"])
def test_nesting_deeper_than_the_limit_is_refused(
    tmp_path: Path, loader: tuple[Loader, str], style: str
) -> None:
    load, _ = loader
    path = tmp_path / "f.yaml"
    if style == "flow":
        path.write_text("a: " + "[" * 5000 + "]" * 5000 + "\n")
    else:
        path.write_text("".join(" " * i + "k:\n" for i in range(MAX_DEPTH + 5)))
    rule = refusal(load, path)
    assert rule.startswith(f"nested deeper than {MAX_DEPTH} levels at line ")
    assert rule.endswith("(esm's limit)")


def test_nesting_up_to_the_limit_is_read(tmp_path: Path) -> None:
    path = tmp_path / "esm.yaml"
    depth = MAX_DEPTH - 2  # the root mapping and Settings' mapping
    path.write_text("Settings: {Region: " + "[" * depth + "]" * depth + "}\n")
    assert "Settings.Region" in refusal(load_config, path)  # a list, not a string: read, refused


def test_an_alias_bomb_is_refused_while_parsed(tmp_path: Path, loader: tuple[Loader, str]) -> None:
    load, _ = loader
    path = tmp_path / "f.yaml"
    path.write_text(bomb())
    rule = refusal(load, path)
    assert rule.startswith(f"more than {MAX_NODES:,} values with aliases expanded at line ")
    assert rule.endswith("(esm's limit; an alias bomb?)")


def test_an_alias_bomb_of_long_strings_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "esm.yaml"
    text = "x" * 100_000
    path.write_text(f"s: &s {text}\nl: [{', '.join(['*s'] * (MAX_CHARS // len(text)))}]\n")
    assert refusal(load_config, path).startswith(
        f"more than {MAX_CHARS:,} characters with aliases expanded at line 2"
    )


def test_aliases_nesting_deeper_than_the_limit_together_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "esm.yaml"
    deep = "[" * 60 + "]" * 60
    path.write_text(f"a: &a {deep}\nb: &b [{deep.replace('[]', '[*a]')}]\n")
    assert refusal(load_config, path).startswith(
        f"alias *a at line 2, column {len('b: &b [') + 61} nests values deeper than {MAX_DEPTH}"
    )


def test_a_recursive_alias_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "esm.yaml"
    path.write_text("Settings: &s\n  Region: [*s]\n")
    assert refusal(load_config, path) == (
        "Settings.Region[0]: alias *s at line 2, column 12 is inside its own anchor &s: "
        "a recursive structure"
    )


def test_a_few_aliases_are_fine(tmp_path: Path) -> None:
    path = tmp_path / "esm.yaml"
    path.write_text(
        "Functions:\n"
        "  a: &fn {Target: 'python:app.handler', Timeout: 30}\n"
        "  b: *fn\n"
        "  c: {<<: *fn, Timeout: 60}\n"
    )
    functions = load_config(path).functions
    assert [functions[n].timeout_s for n in "abc"] == [30, 30, 60]


# -- duplicate keys ----------------------------------------------------------------------------


def test_a_duplicate_key_is_named_with_both_lines(
    tmp_path: Path, loader: tuple[Loader, str]
) -> None:
    load, good = loader
    path = tmp_path / "f.yaml"
    first = good.splitlines()[0]
    path.write_text(good + first + "\n")
    key = first.split(":")[0]
    assert refusal(load, path) == (
        f"duplicate key {key!r} at line {good.count(chr(10)) + 1} (first at line 1): a key may "
        "appear once in a mapping"
    )


def test_a_nested_duplicate_key_names_the_mapping_it_is_in(tmp_path: Path) -> None:
    path = tmp_path / "template.yaml"
    path.write_text(TEMPLATE + "    Properties: {}\n")
    assert refusal(load_template, path) == (
        "Resources.Orders: duplicate key 'Properties' at line 5 (first at line 4): a key may "
        "appear once in a mapping"
    )
    path.write_text("Resources:\n  Q: {Type: AWS::SQS::Queue, 'Type': AWS::SNS::Topic}\n")
    assert refusal(load_template, path).startswith("Resources.Q: duplicate key 'Type' at line 2")


# -- rendering ---------------------------------------------------------------------------------


def test_a_config_error_shows_at_most_a_hundred_problems() -> None:
    error = ConfigError([Problem(f"Functions.f{i}", "bad") for i in range(250)], "esm.yaml")
    lines = str(error).splitlines()
    assert len(lines) == 101
    assert lines[-1] == "esm.yaml: … and 150 more problem(s)"

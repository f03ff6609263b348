"""Mutated configs, templates and overlays: the repository's own files, mutated deterministically
(seeded) a few hundred times. Every case loads or raises ConfigError whose problems are one line
each; no other exception, no traceback, nothing that takes seconds."""

from __future__ import annotations

import codecs
import random
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from esm.config import load_config
from esm.errors import ConfigError
from esm.templates import load_overlay, load_template

ROOT = Path(__file__).resolve().parents[2]
STREAMS = """\
Settings: {Region: us-east-1, Store: "memory://"}
Functions:
  audit:
    Target: python:handlers.audit
    Timeout: 30
    EventInvokeConfig:
      MaximumRetryAttempts: 1
      DestinationConfig: {OnFailure: {Destination: "arn:aws:sqs:us-east-1:000000000000:dlq"}}
EventSourceMappings:
  - FunctionName: audit
    UUID: 5d0b4e4c-6a44-4f7e-9a5e-0e5e3c3a7e11
    EventSourceArn: arn:aws:kinesis:us-east-1:000000000000:stream/events
    StartingPosition: TRIM_HORIZON
    BatchSize: 100
    BisectBatchOnFunctionError: true
    FilterCriteria: {Filters: [{Pattern: '{"data": {"kind": ["a"]}}'}]}
"""
INTRINSICS = """\
AWSTemplateFormatVersion: "2010-09-09"
Transform: [AWS::Serverless-2016-10-31, AWS::LanguageExtensions]
Parameters:
  Stage: {Type: String, Default: dev, AllowedValues: [dev, prod], AllowedPattern: "[a-z]+"}
  Sizes: {Type: CommaDelimitedList, Default: "5,10"}
Mappings:
  ByStage: {dev: {Batch: 5}, prod: {Batch: 10}}
Conditions:
  IsProd: !Equals [!Ref Stage, prod]
  NotProd: !Not [{Condition: IsProd}]
  Both: !Or [{Condition: IsProd}, {Condition: NotProd}]
Globals:
  Function: {Runtime: python3.12, CodeUri: src/, Timeout: 5}
Resources:
  Queue:
    Type: AWS::SQS::Queue
    Properties:
      QueueName: !Join ["-", [!Ref "AWS::StackName", !Select [0, !Split [",", "q,x"]]]]
      VisibilityTimeout: 30
      RedrivePolicy: {deadLetterTargetArn: !GetAtt Dlq.Arn, maxReceiveCount: 2}
  Dlq:
    Type: AWS::SQS::Queue
    Condition: Both
    Properties: {QueueName: !Sub "${Queue.QueueName}-dlq"}
  Stream:
    Type: AWS::Kinesis::Stream
    Properties: {Name: !Sub "${AWS::StackName}-${Stage}", ShardCount: 1}
  Fn:
    Type: AWS::Serverless::Function
    Properties:
      FunctionName: !Sub "${AWS::StackName}-fn"
      Handler: orders.handler
      Environment: {Variables: {STAGE: !Ref Stage, PROD: !If [IsProd, "yes", "no"]}}
      Events:
        Q:
          Type: SQS
          Properties:
            Queue: !GetAtt Queue.Arn
            BatchSize: !FindInMap [ByStage, !Ref Stage, Batch]
            FunctionResponseTypes: [ReportBatchItemFailures]
  Esm:
    Type: AWS::Lambda::EventSourceMapping
    Properties:
      FunctionName: !Ref Fn
      EventSourceArn: !GetAtt Stream.Arn
      StartingPosition: LATEST
      BatchSize: !Select [1, !Ref Sizes]
  InvokeConfig:
    Type: AWS::Lambda::EventInvokeConfig
    Properties:
      FunctionName: !Ref Fn
      Qualifier: $LATEST
      MaximumRetryAttempts: 1
      DestinationConfig: {OnFailure: {Destination: !GetAtt Dlq.Arn}}
"""
SEEDS: dict[str, tuple[str, Callable[[Path], Any]]] = {
    "quickstart": ("examples/quickstart/esm.yaml", load_config),
    "compose": ("examples/compose/esm.yaml", load_config),
    "compose-native": ("examples/compose/esm.native.yaml", load_config),
    "testing": ("examples/testing/esm.yaml", load_config),
    "streams": ("", load_config),
    "sam": ("examples/sam/template.yaml", load_template),
    "intrinsics": ("", load_template),
    "sam-overlay": ("examples/sam/overlay.yaml", load_overlay),
}
INLINE = {"streams": STREAMS, "intrinsics": INTRINSICS}
CASES_PER_SEED = 60

# -- mutations: text in, bytes out -------------------------------------------------------------

Mutation = Callable[[random.Random, list[str]], bytes | list[str]]


def _pick(rng: random.Random, lines: list[str]) -> int:
    return rng.randrange(len(lines)) if lines else 0


def delete_line(rng: random.Random, lines: list[str]) -> list[str]:
    i = _pick(rng, lines)
    return lines[:i] + lines[i + 1 :]


def duplicate_line(rng: random.Random, lines: list[str]) -> list[str]:
    i = _pick(rng, lines)
    return lines[: i + 1] + lines[i:]


def swap_lines(rng: random.Random, lines: list[str]) -> list[str]:
    out = list(lines)
    i, j = _pick(rng, out), _pick(rng, out)
    if out:
        out[i], out[j] = out[j], out[i]
    return out


def flip_bytes(rng: random.Random, lines: list[str]) -> bytes:
    data = bytearray("".join(lines).encode())
    for _ in range(rng.randint(1, 4)):
        if data:
            data[rng.randrange(len(data))] = rng.randrange(256)
    return bytes(data)


def truncate(rng: random.Random, lines: list[str]) -> bytes:
    data = "".join(lines).encode()
    return data[: rng.randrange(len(data) + 1)]


def _value_at(rng: random.Random, lines: list[str]) -> tuple[int, str, str] | None:
    """A line ``key: value`` (its index, the text up to the value, the value)."""
    candidates = [i for i, line in enumerate(lines) if ": " in line and line.strip()[0] != "#"]
    if not candidates:
        return None
    i = rng.choice(candidates)
    head, _, value = lines[i].rstrip("\n").partition(": ")
    return i, head + ": ", value


def change_type(rng: random.Random, lines: list[str]) -> list[str]:
    found = _value_at(rng, lines)
    if found is None:
        return lines
    i, head, _ = found
    value = rng.choice(
        [
            "[]",
            "{}",
            "null",
            "true",
            "-1",
            "1e400",
            "9" * 50,
            "0x1F",
            "2024-13-45",
            "[1, [2, [3]]]",
            "{a: {b: c}}",
            "'..'",
            "'../../../x:y'",
            "x" * 5000,
            '"\\u0000"',
            "!!binary aGk=",
            "!!set {a, b}",
            "!!omap [{a: 1}]",
            "!Ref Nope",
            "!GetAtt [A, B, C]",
            "!Sub ['${X}', {X: !Ref AWS::Region}]",
            "!Select [99, [a]]",
            "!Join [',', {a: 1}]",
            "!If [Nope, a, b]",
            "!FindInMap [M, a, b]",
            "!Fn::Unknown x",
            "&anchor value",
            "*undefined",
        ]
    )
    return [*lines[:i], f"{head}{value}\n", *lines[i + 1 :]]


def insert_aliases(rng: random.Random, lines: list[str]) -> list[str]:
    """An anchor on one value and aliases of it elsewhere (and sometimes a bomb)."""
    if rng.random() < 0.3:
        levels = rng.randint(3, 9)
        bomb = ["Bomb0: &b0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n"]
        bomb += [f"Bomb{n}: &b{n} [{', '.join([f'*b{n - 1}'] * 9)}]\n" for n in range(1, levels)]
        return [*lines, *bomb]
    found = _value_at(rng, lines)
    if found is None:
        return lines
    i, head, value = found
    out = [*lines[:i], f"{head}&a {value}\n", *lines[i + 1 :]]
    for _ in range(rng.randint(1, 3)):
        other = _value_at(rng, out)
        if other is not None:
            j, head2, _ = other
            out[j] = f"{head2}*a\n"
    return out


def deepen(rng: random.Random, lines: list[str]) -> list[str]:
    found = _value_at(rng, lines)
    if found is None:
        return lines
    i, head, value = found
    depth = rng.choice([3, 50, 98, 99, 100, 101, 500, 5000])
    if rng.random() < 0.5:
        nested = "[" * depth + (value or "x") + "]" * depth
    else:
        nested = "{k: " * depth + (value or "x") + "}" * depth
    return [*lines[:i], f"{head}{nested}\n", *lines[i + 1 :]]


def reindent(rng: random.Random, lines: list[str]) -> list[str]:
    i = _pick(rng, lines)
    out = list(lines)
    if out:
        out[i] = " " * rng.choice([1, 3, 7]) + out[i]
    return out


def insert_junk(rng: random.Random, lines: list[str]) -> list[str]:
    junk = rng.choice(
        [
            "\t\n",
            "- just a list item\n",
            "? [complex, key]\n: value\n",
            "---\nsecond: document\n",
            "%YAML 1.1\n",
            "key: 'unterminated\n",
            "\x1b[31m red\n",
            "\u2028\n",
            "<<: *nowhere\n",
            "!!python/object:os.system x\n",
        ]
    )
    i = _pick(rng, lines)
    return [*lines[:i], junk, *lines[i:]]


def reencode(rng: random.Random, lines: list[str]) -> bytes:
    text = "".join(lines)
    encoding = rng.choice(["utf-16", "utf-16-le", "utf-32", "latin-1", "utf-8-sig"])
    data = text.replace("a", "\u00e9", 1).encode(encoding, errors="replace")
    if encoding == "utf-16-le" and rng.random() < 0.5:
        data = codecs.BOM_UTF16_LE + data
    return data


MUTATIONS: list[Mutation] = [
    delete_line,
    duplicate_line,
    swap_lines,
    flip_bytes,
    truncate,
    change_type,
    insert_aliases,
    deepen,
    reindent,
    insert_junk,
    reencode,
]


def mutate(rng: random.Random, text: str) -> bytes:
    lines = text.splitlines(keepends=True)
    data: bytes | list[str] = lines
    for _ in range(rng.choice([1, 1, 1, 2, 3])):
        if isinstance(data, bytes):
            break  # byte-level mutations come last
        data = rng.choice(MUTATIONS)(rng, data)
    return data if isinstance(data, bytes) else "".join(data).encode()


# -- the test ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sam_copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The SAM example's folder (its src/ is the functions' CodeUri), to mutate the template in."""
    folder = tmp_path_factory.mktemp("sam")
    shutil.copytree(ROOT / "examples" / "sam", folder, dirs_exist_ok=True)
    return folder


@pytest.mark.parametrize("seed_name", sorted(SEEDS))
def test_mutated_files_load_or_raise_one_line_config_errors(
    seed_name: str, sam_copy: Path, tmp_path: Path
) -> None:
    relative, load = SEEDS[seed_name]
    original = (ROOT / relative).read_text() if relative else INLINE[seed_name]
    folder = sam_copy if load is load_template else tmp_path
    path = folder / f"mutated-{seed_name}.yaml"
    path.write_text(original)
    load(path)  # the seed itself loads: mutations start from a good file
    rng = random.Random(f"esm-config-fuzz/{seed_name}")
    outcomes = {"loaded": 0, "refused": 0}
    started = time.monotonic()
    for case in range(CASES_PER_SEED):
        data = mutate(rng, original)
        path.write_bytes(data)
        try:
            load(path)
        except ConfigError as exc:
            outcomes["refused"] += 1
            assert exc.problems, (case, data[:300])
            for problem in exc.problems:
                assert "\n" not in str(problem) and "\r" not in str(problem), (case, problem)
            for line in str(exc).splitlines():
                assert line.startswith(f"{path}: "), (case, line)
        except Exception as exc:  # the point of the test: nothing else escapes
            pytest.fail(f"case {case} of {seed_name}: {type(exc).__name__}: {exc}\n{data[:500]!r}")
        else:
            outcomes["loaded"] += 1
    assert outcomes["refused"] > CASES_PER_SEED // 4, outcomes  # the mutations do bite
    assert time.monotonic() - started < 60, "a case took seconds: something is unbounded"

"""The chaos suite's options and report: ``--chaos-scale`` (how much each scenario does),
``--chaos-seed`` (its random choices), and one line per scenario in the terminal summary."""

from __future__ import annotations

import random
from collections.abc import Callable

import pytest

from tests.chaos.tally import Tally

_LINES = pytest.StashKey[list[str]]()
_SEED = pytest.StashKey[int]()


@pytest.fixture(scope="session")
def chaos_scale(pytestconfig: pytest.Config) -> int:
    scale = int(pytestconfig.getoption("--chaos-scale"))
    if scale < 1:
        raise pytest.UsageError(f"--chaos-scale must be 1 or more, not {scale}")
    return scale


@pytest.fixture(scope="session")
def chaos_seed(pytestconfig: pytest.Config) -> int:
    if _SEED not in pytestconfig.stash:
        given = pytestconfig.getoption("--chaos-seed")
        pytestconfig.stash[_SEED] = random.randrange(1_000_000) if given is None else int(given)
    return pytestconfig.stash[_SEED]


@pytest.fixture
def chaos_rng(chaos_seed: int, request: pytest.FixtureRequest) -> random.Random:
    """This test's random choices: the seed and the test's name decide them."""
    return random.Random(f"{chaos_seed}:{request.node.name}")


@pytest.fixture
def chaos_report(
    pytestconfig: pytest.Config, chaos_seed: int, chaos_scale: int
) -> Callable[[Tally], None]:
    """Print a scenario's tally (seen with ``-s``) and keep it for the terminal summary."""

    def report(tally: Tally) -> None:
        line = f"{tally.line()} scale={chaos_scale} seed={chaos_seed}"
        print(line)
        pytestconfig.stash.setdefault(_LINES, []).append(line)

    return report


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """A chaos test's time limit grows with ``--chaos-scale`` (120 s a unit)."""
    scale = max(1, int(config.getoption("--chaos-scale")))
    for item in items:
        if item.get_closest_marker("chaos") is not None:
            item.add_marker(pytest.mark.timeout(120 * scale))


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    lines = terminalreporter.config.stash.get(_LINES, [])
    if lines:
        terminalreporter.section("chaos: lost / duplicated / out of order")
        for line in lines:
            terminalreporter.write_line(line)

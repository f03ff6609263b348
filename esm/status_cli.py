"""``esm status [--api URL] [--json] [--watch [--interval S]]``: a running daemon's state.

Reads ``GET /esm/status`` of the daemon's API (``--api``, else ``AWS_ENDPOINT_URL_LAMBDA``, else
``http://127.0.0.1:3001``), so it works against a daemon in a container, and prints two tables
(rich): the event source mappings (state and why, batch size / concurrency, backlog, in flight,
last result, the last invocation, errors and records sent on or dropped in the last minute) and
the functions' async queues (queued, in flight, retries waiting and when the next is due, the
oldest event's age, destination failures). ``--json`` prints the endpoint's JSON as it is, for
scripts; ``--watch`` redraws the tables every ``--interval`` seconds until Ctrl-C.

Exit status: 0, or 1 when the daemon cannot be reached (the reason on stderr).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import urllib.error
import urllib.request
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

DEFAULT_API = "http://127.0.0.1:3001"
TIMEOUT_S = 10.0


class Unreachable(Exception):
    pass


def fetch(api: str) -> dict[str, Any]:
    url = api.rstrip("/") + "/esm/status"
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_S) as resp:
            doc: dict[str, Any] = json.loads(resp.read())
            return doc
    except urllib.error.HTTPError as exc:
        raise Unreachable(f"{url}: HTTP {exc.code} (is this esm's API?)") from exc
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise Unreachable(f"cannot read {url}: {reason}") from exc


def run_status(args: argparse.Namespace) -> int:
    api = args.api or os.environ.get("AWS_ENDPOINT_URL_LAMBDA") or DEFAULT_API
    if args.interval <= 0:
        print("esm status: --interval must be more than 0 seconds", file=sys.stderr)
        return 2
    console = Console()
    try:
        if not args.watch:
            doc = fetch(api)
            if args.json:
                print(json.dumps(doc, indent=2))
            else:
                console.print(render(doc, api))
            return 0
        return _watch(api, args, console)
    except Unreachable as exc:
        print(f"esm status: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0


def _watch(api: str, args: argparse.Namespace, console: Console) -> int:
    with Live(console=console, auto_refresh=False, transient=False) as live:
        while True:
            try:
                doc = fetch(api)
                shown: Any = Text(json.dumps(doc)) if args.json else render(doc, api)
            except Unreachable as exc:
                shown = Text(f"esm status: {exc}", style="red")
            live.update(shown, refresh=True)
            time.sleep(args.interval)


# -- rendering ------------------------------------------------------------------------------------


def render(doc: dict[str, Any], api: str) -> Group:
    stamp = time.strftime("%H:%M:%S", time.localtime(doc.get("time", time.time())))
    title = Text.assemble(("esm ", "bold"), f"{api}  ", (doc.get("owner", ""), "dim"), f"  {stamp}")
    return Group(title, mapping_table(doc["mappings"]), async_table(doc["functions"], doc["time"]))


def mapping_table(rows: list[dict[str, Any]]) -> Table:
    t = Table(title="Event source mappings", title_justify="left", expand=False)
    for col in (
        "UUID",
        "Function",
        "Source",
        "State",
        "Batch / conc.",
        "Backlog",
        "In flight",
        "Last result",
        "Last invocation",
        "Errors 1m",
        "Sent on / dropped 1m",
    ):
        t.add_column(col, overflow="fold")
    for m in rows:
        health = m["health"]
        minute = m["last_minute"]
        t.add_row(
            m["uuid"],
            m["function"],
            _short_arn(m["source"]),
            Text(health, style="red" if health.startswith("Failing") else "green"),
            f"{m['batch_size']} / {m['concurrency']}",
            _backlog(m["backlog"]),
            str(m["in_flight"]),
            m["last_result"],
            _last(m["recent"]),
            _count(minute["errors"]),
            f"{minute['sent_on']} / {minute['dropped']}",
        )
    if not rows:
        t.add_row(*(["(none)"] + [""] * 10))
    return t


def async_table(rows: list[dict[str, Any]], now: float) -> Table:
    t = Table(title="Functions (async queue)", title_justify="left", expand=False)
    for col in (
        "Function",
        "Queued",
        "In flight",
        "Retries waiting",
        "Oldest event",
        "Last invocation",
        "Errors 1m",
        "Destination failures",
    ):
        t.add_column(col, overflow="fold")
    for f in rows:
        q = f["async"]
        minute = f["last_minute"]
        if "error" in q:
            t.add_row(f["function"], Text(q["error"], style="red"), *[""] * 6)
            continue
        retries = str(q["delayed"])
        if q["next_due"]:
            retries += f" (next in {max(0.0, q['next_due'][0]['due'] - now):.0f}s)"
        t.add_row(
            f["function"],
            str(q["ready"]),
            str(q["in_flight"] or f["in_flight"]),
            retries,
            f"{q['oldest_age_s']:.1f}s" if q["oldest_age_s"] else "-",
            _last(f["recent"]),
            _count(minute["errors"]),
            _count(int(q["destination_failures"] + q["dead_letter_errors"])),
        )
    return t


def _short_arn(arn: str) -> str:
    return arn.rsplit(":", 1)[-1]


def _backlog(b: dict[str, Any]) -> str:
    if "error" in b:
        return f"? ({b['error']})"
    if "visible" in b:
        return f"{b['visible']} visible, {b['in_flight']} in flight"
    if "shards" in b:
        behind = [s["millis_behind"] for s in b["shards"] if s["millis_behind"] is not None]
        most = max(behind) if behind else 0
        return (
            f"{len(b['shards'])} shard(s), {most:,} ms behind, age {b['iterator_age_ms']:,.0f} ms"
        )
    return "-"


def _last(recent: list[dict[str, Any]]) -> str:
    if not recent:
        return "-"
    inv = recent[0]
    outcome = inv["outcome"]
    if outcome == "partial":
        outcome = f"partial {inv.get('failed', '?')} failed"
    elif inv.get("error"):
        outcome = f"{outcome} {inv['error']}"
    return f"{outcome}, {inv['batch']} rec, {inv['duration_ms']:.0f} ms, {inv['request_id']}"


def _count(n: int) -> Text:
    return Text(str(n), style="red" if n else "")

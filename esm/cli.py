"""``esm``: the command line. Logging configuration and signal handling live here only.

::

    esm run esm.yaml [--embedded] [--watch]
                                      run the mappings until SIGINT / SIGTERM (--watch: code
                                      and config changes applied, see esm.watch)
    esm validate esm.yaml             check a config file; non-zero exit with every problem

    esm run template.yaml [--overlay overlay.yaml] [--target FUNCTION=TARGET …]
            [--parameter-overrides KEY=VALUE …] [--import-value NAME=VALUE …]
            [--stack-name NAME] [--strict] [--embedded]
    esm validate template.yaml [the same options]
                                      an AWS SAM / CloudFormation template instead of esm.yaml
                                      (see esm.templates), recognised by its sections
                                      (AWSTemplateFormatVersion, Transform, or Resources
                                      without esm.yaml's own); --template TEMPLATE says so
                                      explicitly. With no file, the first of esm.yaml,
                                      esm.yml, template.yaml, template.yml in the current folder.

    esm generate-event sqs|kinesis|dynamodb [options]
                                      print an event as Lambda sends it (see esm.testing)

    esm build esm.yaml (or --template …) install each function's requirements.txt / package.json
                                      into the build cache (see esm.builds)

    esm status [--api URL] [--json] [--watch [--interval S]]
                                      what a running daemon is doing (see esm.status_cli)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import logging
import signal
import sys
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from esm._version import __version__
from esm.config import EsmConfig, filter_warnings, load_config
from esm.errors import ConfigError, LambdaApiError, Problem
from esm.logs import configure as configure_logs
from esm.templates import (
    DEFAULT_STACK_NAME,
    Overlay,
    Template,
    TemplateOptions,
    is_template,
    load_overlay,
    load_template,
    parse_assignments,
)

if TYPE_CHECKING:
    from esm.aws import AwsClients
    from esm.builds import Build
    from esm.engine import Engine

log = logging.getLogger("esm")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="esm", description=__doc__.splitlines()[0] if __doc__ else "")
    p.add_argument("--version", action="version", version=f"esm {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run the event source mappings of a config file")
    _add_sources(run)
    run.add_argument(
        "--embedded",
        action="store_true",
        help="start an AWS emulator (moto's server) in process on loopback, create the "
        "config's queues in it and run against it",
    )
    run.add_argument(
        "--watch",
        action="store_true",
        help="recycle a function's idle environments when its code changes, and apply changes "
        "to the config file without a restart (a broken one is reported and the running "
        "config kept)",
    )
    run.add_argument(
        "--log-level",
        default="INFO",
        type=str.upper,  # case-insensitive, as logging's names are
        choices=LOG_LEVELS,
        help="DEBUG, INFO, WARNING, ERROR or CRITICAL (default INFO; WARNING hides the "
        "per-invocation lines)",
    )
    run.add_argument(
        "--log-format",
        choices=("text", "json"),
        help="text (key=value, the default) or json (one object per line); "
        "overrides Settings.LogFormat",
    )
    run.add_argument(
        "--access-log",
        action="store_true",
        help="log every API request (aiohttp.access); /health and /metrics never",
    )
    run.add_argument(
        "--debug-aws",
        action="store_true",
        help="with --log-level DEBUG, also botocore's, aiobotocore's and urllib3's DEBUG lines "
        "(they print signed request headers; otherwise those libraries log WARNING and above)",
    )

    val = sub.add_parser("validate", help="check a config file and exit")
    _add_sources(val)
    build = sub.add_parser(
        "build",
        help="install the functions' requirements.txt / package.json into esm's build cache",
    )
    _add_sources(build)
    _add_generate_event(sub)
    _add_status(sub)
    return p


def _add_status(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("status", help="what a running daemon is doing (mappings, async queues)")
    p.add_argument(
        "--api",
        help="the daemon's API (default: AWS_ENDPOINT_URL_LAMBDA, else http://127.0.0.1:3001)",
    )
    p.add_argument("--json", action="store_true", help="print the status as JSON")
    p.add_argument("--watch", action="store_true", help="refresh until Ctrl-C")
    p.add_argument(
        "--interval", type=float, default=2.0, help="seconds between refreshes (default 2)"
    )


def _add_generate_event(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    gen = sub.add_parser(
        "generate-event", help="print an event as Lambda sends it, for tests and local runs"
    )
    kinds = gen.add_subparsers(dest="source", required=True)
    sqs = kinds.add_parser("sqs", help="an SQS event")
    sqs.add_argument("--body", action="append", help="a message body; repeat for more records")
    sqs.add_argument("--queue-arn", help="eventSourceARN (default: my-queue in us-east-1)")
    sqs.add_argument("--fifo", action="store_true", help="a FIFO queue (the ARN ends in .fifo)")
    sqs.add_argument("--group", help="MessageGroupId (FIFO; default 1)")
    sqs.add_argument("--deduplication-id", help="MessageDeduplicationId (FIFO)")
    sqs.add_argument("--receive-count", type=int, help="ApproximateReceiveCount (default 1)")
    sqs.add_argument(
        "--attribute", action="append", metavar="NAME=VALUE", help="a String message attribute"
    )
    kin = kinds.add_parser("kinesis", help="a Kinesis event")
    kin.add_argument("--data", action="append", help="a record's payload; repeat for more")
    kin.add_argument("--partition-key", help="partitionKey (default 1)")
    kin.add_argument("--stream-arn", help="eventSourceARN")
    kin.add_argument("--shard-id", help="the shard in eventID (default shardId-000000000000)")
    ddb = kinds.add_parser("dynamodb", help="a DynamoDB Streams event")
    ddb.add_argument("--event-name", choices=["INSERT", "MODIFY", "REMOVE"])
    ddb.add_argument("--keys", help="the item's keys as JSON, e.g. '{\"Id\": 1}'")
    ddb.add_argument("--new-image", help="the new item as JSON (plain values)")
    ddb.add_argument("--old-image", help="the old item as JSON (plain values)")
    ddb.add_argument(
        "--view-type", choices=["KEYS_ONLY", "NEW_IMAGE", "OLD_IMAGE", "NEW_AND_OLD_IMAGES"]
    )
    ddb.add_argument("--stream-arn", help="eventSourceARN")
    ddb.add_argument("--ttl", action="store_true", help="a REMOVE made by TTL (userIdentity)")


def _add_sources(p: argparse.ArgumentParser) -> None:
    p.add_argument("config", nargs="?", help="path to esm.yaml")
    t = p.add_argument_group("an AWS SAM / CloudFormation template instead of esm.yaml")
    t.add_argument("--template", metavar="TEMPLATE", help="path to template.yaml")
    t.add_argument(
        "--overlay",
        metavar="OVERLAY",
        help="YAML with what a template cannot hold: Settings, Functions (Target …), "
        "Parameters, IgnoredResources, Embedded",
    )
    t.add_argument(
        "--target",
        action="append",
        metavar="FUNCTION=TARGET",
        help="a function's target (python:, http(s)://, rie://, lambda:), the function named by "
        "FunctionName or logical id; repeatable",
    )
    t.add_argument(
        "--parameter-overrides",
        nargs="+",
        action="extend",
        metavar="KEY=VALUE",
        help="values of the template's Parameters",
    )
    t.add_argument(
        "--import-value",
        action="append",
        metavar="NAME=VALUE",
        help="what Fn::ImportValue NAME gives (another stack's export); repeatable",
    )
    t.add_argument(
        "--strict",
        action="store_true",
        default=None,
        help="refuse what esm cannot run (other event types, resources, properties, layers by "
        "ARN …) instead of skipping it with a warning: for CI of templates",
    )
    t.add_argument("--stack-name", help=f"AWS::StackName (default {DEFAULT_STACK_NAME})")


@dataclass(frozen=True)
class _Source:
    """What ``run`` and ``validate`` read: the config, the folders python: targets import from
    (first on ``sys.path``), and the template it came from, if any."""

    path: str
    config: EsmConfig
    code_paths: tuple[Path, ...]
    template: Template | None = None

    @property
    def warnings(self) -> tuple[str, ...]:
        """What the user should know about the config: once, when it is loaded."""
        if self.template is not None:
            return self.template.warnings
        return tuple(str(p) for p in filter_warnings(self.config))


DEFAULT_FILES = ("esm.yaml", "esm.yml", "template.yaml", "template.yml")


def _load(parser: argparse.ArgumentParser, args: argparse.Namespace) -> _Source:
    """esm.yaml or a template with its options; ConfigError on problems, usage errors exit."""
    template_only = [
        args.overlay,
        args.target,
        args.parameter_overrides,
        args.stack_name,
        args.import_value,
        args.strict,
    ]
    if args.template is None and args.config is None:
        found = next((f for f in DEFAULT_FILES if Path(f).is_file()), None)
        if found is None:
            parser.error(
                f"give a config file (esm.yaml) or a template; none of {', '.join(DEFAULT_FILES)} "
                "is in the current folder"
            )
        args.config = found
    if args.template is None and is_template(args.config):
        args.template, args.config = args.config, None
    if args.template is None:
        if any(v is not None for v in template_only):
            parser.error(
                "--overlay, --target, --parameter-overrides, --import-value, --strict and "
                "--stack-name go with a template"
            )
        # python: targets are imported with the config file's folder first on sys.path, as
        # Lambda imports handlers from the folder the code was deployed to.
        folder = Path(args.config).resolve().parent
        config = load_config(args.config)
        return _Source(args.config, config, (folder, *_layer_paths(config)))
    if args.config is not None:
        parser.error("give a config file or --template, not both")
    options = TemplateOptions(
        overlay=load_overlay(args.overlay) if args.overlay else Overlay(),
        targets=parse_assignments(args.target, "--target"),
        parameters=parse_assignments(args.parameter_overrides, "--parameter-overrides"),
        stack_name=args.stack_name or DEFAULT_STACK_NAME,
        import_values=parse_assignments(args.import_value, "--import-value"),
        strict=bool(args.strict),
    )
    template = load_template(args.template, options)
    return _Source(args.template, template.config, template.code_paths, template)


def _layer_paths(config: EsmConfig) -> list[Path]:
    """The Python folders of the layers of in-process (``python:``) functions, for sys.path."""
    from esm.layers import python_paths

    out: list[Path] = []
    for fn in config.functions.values():
        if fn.target and fn.target.startswith("python:"):
            for layer in fn.layers:
                out += [p for p in python_paths(Path(layer).resolve()) if p not in out]
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command == "validate":
        return _validate(parser, args)
    if args.command == "build":
        return _build(parser, args)
    if args.command == "generate-event":
        return _generate_event(args)
    if args.command == "status":
        from esm.status_cli import run_status

        return run_status(args)
    try:
        source = _load(parser, args)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 1
    configure_logs(
        args.log_level,
        args.log_format or source.config.settings.log_format,
        debug_aws=args.debug_aws,
        access_log=args.access_log,
    )
    for warning in source.warnings:
        log.warning("%s: %s", source.path, warning)
    for folder in reversed(source.code_paths):
        sys.path.insert(0, str(folder))
    try:
        return asyncio.run(
            _run(
                source.config,
                embedded=args.embedded,
                template=source.template,
                access_log=args.access_log,
                watch=_watcher(parser, args) if args.watch else None,
            )
        )
    except KeyboardInterrupt:
        return 130


# Libraries whose DEBUG lines carry secrets: botocore prints each request's signed headers
# (Authorization, X-Amz-Security-Token) and the canonical request; urllib3 the URLs it opens.
def _validate(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    try:
        source = _load(parser, args)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 1
    for warning in source.warnings:
        print(f"{source.path}: warning: {warning}", file=sys.stderr)
    config = source.config
    enabled = sum(1 for m in config.event_source_mappings if m.enabled)
    print(
        f"{source.path}: OK ({len(config.functions)} function(s), "
        f"{len(config.event_source_mappings)} mapping(s), {enabled} enabled)"
    )
    return 0


def _build(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    """Install every Runtime function's dependencies (esm.builds), as ``sam build`` does."""
    from esm import builds

    try:
        source = _load(parser, args)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 1
    plans = [
        builds.plan(name, fn.runtime, Path(fn.code_uri or ".").resolve())
        for name, fn in source.config.functions.items()
    ]
    return asyncio.run(_install([plan for plan in plans if plan is not None]))


async def _install(plans: list[Build]) -> int:
    from esm import builds
    from esm.environments import python_for

    failed = 0
    for build in plans:
        interpreter = (await python_for(build.runtime))[0] if build.tool == "pip" else ""
        cached = builds.is_cached(build, interpreter)
        try:
            folder = await builds.ensure(build, interpreter)
        except builds.BuildError as exc:
            print(exc, file=sys.stderr)
            failed += 1
            continue
        print(f"{build.function}: {build.manifest} -> {folder}{' (cached)' if cached else ''}")
    return 1 if failed else 0


def _generate_event(args: argparse.Namespace) -> int:
    from esm.testing import generate

    try:
        event = generate.event(args.source, vars(args))
    except ValueError as exc:
        print(f"esm generate-event {args.source}: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(event, indent=2))
    return 0


Watch = Callable[["Engine", asyncio.Event], Coroutine[Any, Any, None]]


def _watcher(parser: argparse.ArgumentParser, args: argparse.Namespace) -> Watch:
    """``--watch``: the files whose change reloads the config, and how to load it again (with
    a template, the config holds the real URLs and ARNs esm looked up at start: code only)."""
    from esm.watch import watch

    logging.getLogger("watchfiles").setLevel(logging.WARNING)  # not "1 change detected" lines
    files = [Path(args.config)] if args.template is None else [Path(args.template)]
    if args.overlay:
        files.append(Path(args.overlay))

    def load() -> EsmConfig:
        if args.template is not None:
            raise ConfigError([Problem("", "with a template, config changes need a restart")])
        return _load(parser, args).config

    return lambda engine, stop: watch(engine, files, load, stop)


async def _run(
    config: EsmConfig,
    *,
    embedded: bool,
    template: Template | None = None,
    access_log: bool = False,
    watch: Watch | None = None,
) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    main_task = asyncio.current_task()

    def on_signal(signame: str) -> None:
        if stop.is_set():
            log.warning("%s again: stopping now", signame)
            if main_task:
                main_task.cancel()
            return
        log.info("%s: stopping (in-flight batches may finish; send again to stop now)", signame)
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal, sig.name)
    raise_open_files_limit()
    try:
        if embedded:
            return await _run_embedded(config, stop, template, access_log=access_log, watch=watch)
        if template is not None:
            return await _run_template(template, stop, access_log=access_log, watch=watch)
        return await _serve(config, stop, aws=None, access_log=access_log, watch=watch)
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


def raise_open_files_limit() -> None:
    """Every SQS poller holds a connection for its long poll (Lambda's 5 per mapping at first):
    take the hard limit on open files as the soft one, as servers do."""
    try:
        import resource
    except ImportError:  # not on this platform
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        hard = max(soft, 1 << 20)
    if soft != resource.RLIM_INFINITY and soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError) as exc:
            log.warning("open files stay limited to %d: %s", soft, exc)


async def _serve(
    config: EsmConfig,
    stop: asyncio.Event,
    *,
    aws: AwsClients | None,
    after_start: Callable[[Engine], Awaitable[object]] | None = None,
    access_log: bool = False,
    watch: Watch | None = None,
) -> int:
    """Start the engine, run until ``stop``, stop it gracefully."""
    from esm.api import serve
    from esm.api_server import ApiLimits
    from esm.engine import Engine
    from esm.sigv4 import Verifier
    from esm.store import StoreError

    try:
        engine = Engine(config, aws=aws)
        await engine.start()
    except (LambdaApiError, StoreError) as exc:  # a mapping's checks; the store's ping
        log.error("%s", exc)
        return 1
    settings = config.settings
    auth = None
    if settings.api_auth.mode == "sigv4":
        auth = Verifier(settings.api_auth.secrets(), settings.region, now=engine.clock.now)
    try:
        limits = ApiLimits(settings.api_max_connections, settings.api_read_timeout_s)
        api = await serve(
            engine,
            host=settings.api_host,
            port=settings.api_port,
            limits=limits,
            auth=auth,
            access_log=access_log,
        )
    except OSError as exc:
        log.error(
            "cannot serve the Lambda API on %s:%s: %s", settings.api_host, settings.api_port, exc
        )
        await engine.aclose()
        return 1
    log.info("Lambda API at %s (AWS_ENDPOINT_URL_LAMBDA)", api.url)
    if auth is not None:
        log.info(
            "Lambda API: SigV4 signatures required (%d access key(s), region %s); /health, "
            "/health/live and /metrics open",
            len(settings.api_auth.keys),
            settings.region,
        )
    elif not is_loopback(settings.api_host):
        log.warning(
            "Lambda API on %s without authentication: anyone who reaches this port can invoke "
            "functions, create mappings on any queue or stream esm's credentials read, and "
            "change or delete them (set Settings.ApiAuth, or ApiHost: 127.0.0.1)",
            settings.api_host,
        )
    # What exists now (modules, config, clients) lives as long as the daemon: keep it out of the
    # cyclic collector, whose full passes otherwise stall the loop for tens of milliseconds.
    gc.freeze()
    watching: asyncio.Task[None] | None = None
    try:
        if after_start is not None:
            await after_start(engine)
        if watch is not None:
            watching = asyncio.create_task(watch(engine, stop), name="watch")
        await stop.wait()
    finally:
        if watching is not None:
            watching.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await watching
        await api.aclose()  # no new invocations, then drain what is in flight
        await engine.aclose()
    return 0


def queue_attributes(config: EsmConfig, urls: Mapping[str, str]) -> dict[tuple[str, str], str]:
    """What ``Ref`` / ``Fn::GetAtt QueueUrl`` give for the template's queues once they exist:
    the URL the emulator answers with, by logical id (the ARN is already the emulator's)."""
    out: dict[tuple[str, str], str] = {}
    for logical, res in config.resources.items():
        url = urls.get(res.properties.queue_name or logical)
        if url is not None:
            out[(logical, "Ref")] = out[(logical, "QueueUrl")] = url
    return out


def is_loopback(host: str) -> bool:
    """Whether ``ApiHost`` is reachable from this machine only (a name is taken at its word
    only when it is ``localhost``)."""
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


async def _run_template(
    template: Template,
    stop: asyncio.Event,
    *,
    access_log: bool = False,
    watch: Watch | None = None,
) -> int:
    """A template against the AWS esm talks to: its queues, streams and tables that exist there
    give ``Ref`` / ``Fn::GetAtt`` their real URLs and ARNs (what handlers read from their
    ``Environment``), then the daemon runs."""
    from esm.aws import AwsClients
    from esm.embedded import live_attributes

    aws = AwsClients()
    try:
        region = template.config.settings.region
        attributes = await live_attributes(template.config, template.resources, aws, region)
        try:
            template = template.with_attributes(attributes)
        except ConfigError as exc:
            log.error("%s", exc)
            return 1
        for name, value in template.outputs.items():
            log.info("output %s = %s", name, value)
        return await _serve(template.config, stop, aws=aws, access_log=access_log, watch=watch)
    finally:
        await aws.aclose()


async def _run_embedded(
    config: EsmConfig,
    stop: asyncio.Event,
    template: Template | None = None,
    *,
    access_log: bool = False,
    watch: Watch | None = None,
) -> int:
    """moto's server in process, the config's queues in it, the engine against it. With a
    template, the emulator runs as Settings.AccountId and also holds the template's streams,
    tables, topics, buckets and buses; the config is translated again with their real ARNs."""
    from esm.aws import AwsClients
    from esm.embedded import (
        EmbeddedAws,
        EmbeddedUnavailable,
        provision,
        provision_template,
        send_messages,
        watch_queues,
    )

    account = config.settings.account_id if template is not None else None
    emulator = EmbeddedAws(config.embedded.port, account_id=account)
    try:
        url = emulator.start()
    except EmbeddedUnavailable as exc:
        log.error("%s", exc)
        return 1
    log.info("embedded AWS emulator (moto) at %s", url)
    aws = AwsClients(endpoint_url=url)
    watcher: asyncio.Task[None] | None = None
    try:
        urls = await provision(config, aws)
        for name, queue_url in sorted(urls.items()):
            log.info("embedded queue %s: %s", name, queue_url)
        if template is not None:
            try:
                region = config.settings.region
                attributes = await provision_template(template.resources, aws, region)
                attributes.update(queue_attributes(config, urls))
                template = template.with_attributes(attributes)
                config = template.config
            except ConfigError as exc:
                log.error("%s", exc)
                return 1
            for name, value in template.outputs.items():
                log.info("output %s = %s", name, value)

        async def after_start(engine: Engine) -> None:
            nonlocal watcher
            sent = await send_messages(config, aws, urls)
            if sent:
                log.info("embedded: sent %d message(s) from Embedded.SendMessages", sent)
            watcher = asyncio.create_task(
                watch_queues(aws, urls, config.settings.region, engine.clock)
            )

        return await _serve(
            config, stop, aws=aws, after_start=after_start, access_log=access_log, watch=watch
        )
    finally:
        if watcher is not None:
            watcher.cancel()
        await aws.aclose()
        emulator.stop()


if __name__ == "__main__":
    sys.exit(main())

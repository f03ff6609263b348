"""``esm``: the command line. Logging configuration and signal handling live here only.

::

    esm run esm.yaml [--embedded]     run the mappings until SIGINT / SIGTERM
    esm validate esm.yaml             check a config file; non-zero exit with every problem
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from esm import __version__
from esm.config import EsmConfig, load_config
from esm.errors import ConfigError, LambdaApiError

if TYPE_CHECKING:
    from esm.aws import AwsClients
    from esm.engine import Engine

log = logging.getLogger("esm")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="esm", description=__doc__.splitlines()[0] if __doc__ else "")
    p.add_argument("--version", action="version", version=f"esm {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run the event source mappings of a config file")
    run.add_argument("config", help="path to esm.yaml")
    run.add_argument(
        "--embedded",
        action="store_true",
        help="start an AWS emulator (moto's server) in process on loopback, create the "
        "config's queues in it and run against it",
    )
    run.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING … (default INFO)")

    val = sub.add_parser("validate", help="check a config file and exit")
    val.add_argument("config", help="path to esm.yaml")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "validate":
        return _validate(args.config)
    logging.basicConfig(
        level=args.log_level.upper(),
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 1
    # python: targets are imported with the config file's folder first on sys.path, as Lambda
    # imports handlers from the folder the code was deployed to.
    sys.path.insert(0, str(Path(args.config).resolve().parent))
    try:
        return asyncio.run(_run(config, embedded=args.embedded))
    except KeyboardInterrupt:
        return 130


def _validate(path: str) -> int:
    try:
        config = load_config(path)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 1
    enabled = sum(1 for m in config.event_source_mappings if m.enabled)
    print(
        f"{path}: OK ({len(config.functions)} function(s), "
        f"{len(config.event_source_mappings)} mapping(s), {enabled} enabled)"
    )
    return 0


async def _run(config: EsmConfig, *, embedded: bool) -> int:
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
    try:
        if embedded:
            return await _run_embedded(config, stop)
        return await _serve(config, stop, aws=None)
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


async def _serve(
    config: EsmConfig,
    stop: asyncio.Event,
    *,
    aws: AwsClients | None,
    after_start: Callable[[Engine], Awaitable[object]] | None = None,
) -> int:
    """Start the engine, run until ``stop``, stop it gracefully."""
    from esm.api import serve
    from esm.engine import Engine

    try:
        engine = Engine(config, aws=aws)
        await engine.start()
    except LambdaApiError as exc:
        log.error("%s", exc)
        return 1
    settings = config.settings
    try:
        api = await serve(engine, host=settings.api_host, port=settings.api_port)
    except OSError as exc:
        log.error(
            "cannot serve the Lambda API on %s:%s: %s", settings.api_host, settings.api_port, exc
        )
        await engine.aclose()
        return 1
    log.info("Lambda API at %s (AWS_ENDPOINT_URL_LAMBDA)", api.url)
    try:
        if after_start is not None:
            await after_start(engine)
        await stop.wait()
    finally:
        await api.aclose()  # no new invocations, then drain what is in flight
        await engine.aclose()
    return 0


async def _run_embedded(config: EsmConfig, stop: asyncio.Event) -> int:
    """moto's server in process, the config's queues in it, the engine against it."""
    from esm.aws import AwsClients
    from esm.embedded import EmbeddedAws, provision, send_messages, watch_queues

    emulator = EmbeddedAws(config.embedded.port)
    url = emulator.start()
    log.info("embedded AWS emulator (moto) at %s", url)
    aws = AwsClients(endpoint_url=url)
    watcher: asyncio.Task[None] | None = None
    try:
        urls = await provision(config, aws)
        for name, queue_url in sorted(urls.items()):
            log.info("embedded queue %s: %s", name, queue_url)

        async def after_start(engine: Engine) -> None:
            nonlocal watcher
            sent = await send_messages(config, aws, urls)
            if sent:
                log.info("embedded: sent %d message(s) from Embedded.SendMessages", sent)
            watcher = asyncio.create_task(
                watch_queues(aws, urls, config.settings.region, engine.clock)
            )

        return await _serve(config, stop, aws=aws, after_start=after_start)
    finally:
        if watcher is not None:
            watcher.cancel()
        await aws.aclose()
        emulator.stop()


if __name__ == "__main__":
    sys.exit(main())

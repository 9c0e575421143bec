"""Run the router under uvicorn: ``python -m router`` or ``rollout router``.

``main(argv)`` reads everything not on the command line from the ``ROLLOUT_*`` environment
(:meth:`router.config.RouterConfig.from_env`). With ``--workers N`` uvicorn starts N processes,
each rebuilding the same configuration from the environment. Their metrics are shared through
``PROMETHEUS_MULTIPROC_DIR``: when it is not set, ``serve`` creates a directory for the run (and
removes it afterwards); when it is, its stale files from an earlier run are removed first, so a
scrape sums the live workers of this run only.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import uvicorn
from fastapi import FastAPI

from router.app import create_app
from router.config import RouterConfig
from router.metrics import MULTIPROC_ENV
from router.request_ids import new_key

_log = logging.getLogger(__name__)
SWITCH_INTERVAL_S = 0.001


def serve(
    config: RouterConfig,
    host: str = "127.0.0.1",
    port: int = 8080,
    workers: int = 1,
    *,
    log_level: str = "info",
) -> None:
    """Serve until interrupted (SIGINT/SIGTERM shut down cleanly, flushing the log)."""
    if workers <= 1:
        tune_interpreter()
        uvicorn.run(create_app(config), host=host, port=port, log_level=log_level)
        return
    # Worker processes rebuild the configuration from the environment they inherit; they must
    # share one request id key, or a label could reach a worker that cannot check its id.
    if config.request_id_key is None and config.request_id_key_file is None:
        config = config.with_changes(request_id_key=new_key())
    os.environ.update(config.env())
    with multiprocess_dir():
        uvicorn.run(
            "router.server:app_from_env",
            factory=True,
            host=host,
            port=port,
            workers=workers,
            log_level=log_level,
        )


@contextmanager
def multiprocess_dir() -> Iterator[Path]:
    """A clean ``PROMETHEUS_MULTIPROC_DIR`` for this run's workers (made here if not set)."""
    given = os.environ.get(MULTIPROC_ENV)
    if given:
        path = Path(given)
        path.mkdir(parents=True, exist_ok=True)
        for stale in path.glob("*.db"):
            stale.unlink(missing_ok=True)
        yield path
        return
    path = Path(tempfile.mkdtemp(prefix="rollout-router-metrics-"))
    os.environ[MULTIPROC_ENV] = str(path)
    try:
        yield path
    finally:
        os.environ.pop(MULTIPROC_ENV, None)
        shutil.rmtree(path, ignore_errors=True)


def app_from_env() -> FastAPI:
    """The app for the configuration in the environment (uvicorn's factory for workers)."""
    tune_interpreter()
    return create_app(RouterConfig.from_env())


def tune_interpreter() -> None:
    """Hand the GIL back to the event loop sooner (1 ms, not 5 ms) when the prediction-log
    writer or the plan poller holds it: a request then never waits long behind their batches.
    Only for a process that is a router (``serve``, worker factory), never on import."""
    sys.setswitchinterval(SWITCH_INTERVAL_S)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="router",
        description="Serve MLflow model versions by traffic plan (README, Router).",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--environment", help="whose plans to serve (ROLLOUT_ENVIRONMENT)")
    parser.add_argument("--default-model", help="the model /invocations serves")
    parser.add_argument("--store-url", help="the rollout store (ROLLOUT_STORE_URL)")
    parser.add_argument("--registry-uri", help="the MLflow registry (ROLLOUT_REGISTRY_URI)")
    parser.add_argument("--plan-poll-s", type=float, help="seconds between plan reads")
    parser.add_argument("--batch-max-size", type=int, help="rows per micro-batch (1 = off)")
    parser.add_argument("--batch-max-wait-s", type=float, help="longest wait for a batch")
    parser.add_argument(
        "--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"]
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(list(argv) if argv is not None else None)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        config = RouterConfig.from_env(
            environment=args.environment,
            default_model=args.default_model,
            store_url=args.store_url,
            registry_uri=args.registry_uri,
            plan_poll_s=args.plan_poll_s,
            batch_max_size=args.batch_max_size,
            batch_max_wait_s=args.batch_max_wait_s,
        )
    except (TypeError, ValueError) as exc:
        print(f"router: {exc}", file=sys.stderr)
        return 2
    _log.info(
        "router for environment %r on %s:%d (store %s, registry %s)",
        config.environment,
        args.host,
        args.port,
        config.store_url,
        config.registry_uri,
    )
    serve(config, args.host, args.port, args.workers, log_level=args.log_level)
    return 0

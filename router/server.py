"""Run the router under uvicorn: ``python -m router`` or ``rollout router``.

``main(argv)`` reads everything not on the command line from the ``ROLLOUT_*`` environment
(:meth:`router.config.RouterConfig.from_env`). With ``--workers N`` uvicorn starts N processes,
each rebuilding the same configuration from the environment; each keeps its own metrics.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

import uvicorn
from fastapi import FastAPI

from router.app import create_app
from router.config import RouterConfig

_log = logging.getLogger(__name__)


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
        uvicorn.run(create_app(config), host=host, port=port, log_level=log_level)
        return
    # Worker processes rebuild the configuration from the environment they inherit.
    os.environ.update(config.env())
    uvicorn.run(
        "router.server:app_from_env",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_level=log_level,
    )


def app_from_env() -> FastAPI:
    """The app for the configuration in the environment (uvicorn's factory for workers)."""
    return create_app(RouterConfig.from_env())


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="router",
        description="Serve MLflow model versions by traffic plan (see DESIGN.md, Router).",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--environment", help="whose plans to serve (ROLLOUT_ENVIRONMENT)")
    parser.add_argument("--default-model", help="the model /invocations serves")
    parser.add_argument("--store-url", help="the rollout store (ROLLOUT_STORE_URL)")
    parser.add_argument("--registry-uri", help="the MLflow registry (ROLLOUT_REGISTRY_URI)")
    parser.add_argument("--plan-poll-s", type=float, help="seconds between plan reads")
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

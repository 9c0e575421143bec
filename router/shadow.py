"""Shadow: the plan's shadow version answers mirrored requests, and nobody hears it.

When the plan has a shadow version, ``shadow_fraction`` of the answered requests are mirrored
to it after the reply is sent (:attr:`~router.reply.Reply.after` holds a
:meth:`ShadowRunner.mirror` call; the ASGI layer hands it to :meth:`ShadowRunner.launch`), on
one background thread; its outputs are recorded with arm ``shadow`` and the same request id,
never changing the reply. At most ``SHADOW_MAX_PENDING`` mirrors wait; more are skipped and
counted (``rollout_router_shadow_skipped_total``). A mirror that raises is logged, never raised.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Final

from contract.names import SHADOW
from contract.plans import TrafficPlan
from router.errors import ModelError, RouterError
from router.payload import Payload
from router.predictor import Predictor
from router.reply import Reply

_log = logging.getLogger(__name__)

SHADOW_MAX_PENDING: Final = 64  # mirrored requests waiting; more are skipped and counted

Record = Callable[
    [str, str, str, str, TrafficPlan, Any, Any, float, RouterError | None, Reply, str], None
]
"""Record one prediction and count it: ``Inference._record`` (request id, model, version, arm,
plan, features, outputs, seconds, error, reply, release)."""


class ShadowRunner:
    """Runs mirrored predictions on one background thread, recording each with ``record``."""

    def __init__(self, record: Record, on_skip: Callable[[], None]) -> None:
        self._record = record
        self._on_skip = on_skip
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="router-shadow")
        self._lock = threading.Lock()
        self._pending = 0

    def close(self) -> None:
        """Let the mirrors already waiting finish; launch no more."""
        self._pool.shutdown(wait=True, cancel_futures=False)

    def launch(self, work: Callable[[], None]) -> bool:
        """Start background work (a shadow prediction) after a reply; False if too much waits."""
        with self._lock:
            if self._pending >= SHADOW_MAX_PENDING:
                self._on_skip()
                return False
            self._pending += 1
        try:
            self._pool.submit(self._done, work)
        except RuntimeError:  # shut down
            with self._lock:
                self._pending -= 1
            return False
        return True

    def _done(self, work: Callable[[], None]) -> None:
        try:
            work()
        except Exception:
            _log.exception("shadow prediction failed")
        finally:
            with self._lock:
                self._pending -= 1

    def mirror(
        self,
        predictor: Predictor,
        name: str,
        plan: TrafficPlan,
        payload: Payload,
        features: Any,
        request_id: str,
    ) -> None:
        """Predict the shadow version on a served request and record it (arm ``shadow``)."""
        started = time.perf_counter()
        error: RouterError | None = None
        outputs: Any = None
        status = 200
        try:
            outputs = predictor.predict(payload).outputs
        except RouterError as exc:
            error, status = exc, exc.status_code
        except Exception as exc:
            error = ModelError(f"{predictor.label} failed: {type(exc).__name__}: {exc}")
            status = 500
        elapsed = time.perf_counter() - started
        self._record(
            request_id,
            name,
            predictor.version,
            SHADOW,
            plan,
            features,
            outputs,
            elapsed,
            error,
            Reply(status, b""),
            plan.release_of(predictor.version) or "",
        )

"""Micro-batching: requests that arrive together are predicted in one call, each reply its own."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pytest

from router.batching import MicroBatcher
from router.errors import ModelError
from router.payload import parse_body
from router.predictor import Predictor


@pytest.fixture(scope="module")
def predictor(numeric_dir: Path) -> Predictor:
    loaded = Predictor("num", "1", mlflow.pyfunc.load_model(str(numeric_dir)))
    loaded.warm()
    assert loaded.fast is not None
    return loaded


def _matrix(predictor: Predictor, rows: list[dict[str, Any]]) -> Any:
    body = json.dumps({"dataframe_records": rows}).encode()
    return predictor.matrix(parse_body(body, "application/json"))


def test_requests_of_one_loop_turn_share_one_prediction(
    predictor: Predictor, make_numeric: Any
) -> None:
    frame = make_numeric(30, seed=4)
    requests = [frame.iloc[i : i + 1 + i % 3].to_dict(orient="records") for i in range(0, 24, 3)]
    alone = [predictor.predict_matrix(_matrix(predictor, rows)).body for rows in requests]

    async def together() -> tuple[list[bytes], MicroBatcher]:
        batcher = MicroBatcher(predictor, max_size=64)
        replies = await asyncio.gather(*(batcher.predict(_matrix(predictor, r)) for r in requests))
        return [r.body for r in replies], batcher

    bodies, batcher = asyncio.run(together())
    assert bodies == alone
    assert (batcher.batches, batcher.largest) == (1, len(requests))


def test_a_full_batch_is_predicted_at_once(predictor: Predictor, make_numeric: Any) -> None:
    rows = make_numeric(10, seed=5).to_dict(orient="records")

    async def run() -> MicroBatcher:
        batcher = MicroBatcher(predictor, max_size=4)
        await asyncio.gather(*(batcher.predict(_matrix(predictor, [row])) for row in rows))
        return batcher

    batcher = asyncio.run(run())
    assert batcher.batches == 3 and batcher.largest == 4  # 4 + 4 + 2


def test_a_failing_batch_is_retried_request_by_request(predictor: Predictor) -> None:
    good = _matrix(predictor, [{"a": 0.1, "b": 4.0, "n": 2}])
    bad = np.array([[np.nan, 1.0, 2.0]])  # sklearn refuses NaN

    async def run() -> list[Any]:
        batcher = MicroBatcher(predictor, max_size=64)
        return await asyncio.gather(
            batcher.predict(good), batcher.predict(bad), return_exceptions=True
        )

    ok, failed = asyncio.run(run())
    assert ok.body == predictor.predict_matrix(good).body
    assert isinstance(failed, ModelError) and "num v1 failed: ValueError" in failed.message


def test_max_size_must_be_positive(predictor: Predictor) -> None:
    with pytest.raises(ValueError, match="max_size must be >= 1, got 0"):
        MicroBatcher(predictor, max_size=0)

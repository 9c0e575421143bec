"""The benchmark's floor: a bare FastAPI endpoint calling ``model.predict`` on numpy.

``python bench/router_bare.py --model-dir DIR --port PORT`` serves ``POST /invocations`` with a
``dataframe_split`` body: no signature check, no logging, no metrics, one uvicorn worker.
"""

from __future__ import annotations

import argparse
from typing import Any

import mlflow.sklearn
import numpy as np
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse


def build(model_dir: str) -> FastAPI:
    model: Any = mlflow.sklearn.load_model(model_dir)
    app = FastAPI()

    @app.post("/invocations")
    async def invocations(request: Request) -> JSONResponse:
        body = await request.json()
        rows = np.asarray(body["dataframe_split"]["data"], dtype=np.float64)
        return JSONResponse({"predictions": model.predict(rows).tolist()})

    return app


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model-dir", required=True)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    uvicorn.run(build(args.model_dir), host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()

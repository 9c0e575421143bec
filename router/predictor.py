"""One loaded model version: check a payload against its signature, predict, serialize.

``Predictor.predict`` returns the reply body ``mlflow models serve`` would send for the same
version and payload, byte for byte: predictions go through MLflow's ``_get_jsonable_obj`` and
``NumpyEncoder``. The input reaches ``PyFuncModel.predict`` by one of two roads:

- fast: the payload is a table whose every value already has its column's type (see
  :meth:`router.schema.InputSchema.check`); the frame is built straight from the rows, in the
  signature's column order, with the dtypes MLflow would cast to;
- MLflow: anything else (tensors, positional lists, CSV, values that need converting) goes
  through ``mlflow.pyfunc.scoring_server``'s own parser with the version's schema.

For scikit-learn versions whose signature is all numeric columns there is a third, quicker
road (:class:`router.fastpath.NumpyModel`): the rows become one numpy matrix in the signature's
column order and go straight to the estimator's ``pyfunc_predict_fn``, skipping pandas and
MLflow's schema enforcement (the router has already checked the input). It is only enabled
when, at load time, it returns exactly what ``PyFuncModel.predict`` returns on the warm-up
input; :meth:`Predictor.matrix` says whether a payload can take it.

Errors: input that does not fit the signature → :class:`~router.errors.SignatureMismatch`
(422); anything the model raises on input that fits → :class:`~router.errors.ModelError` (500),
whose client-facing message names the version and the exception's type only (the exception's
text may hold internal addresses; it goes to the log and the prediction record).
"""

from __future__ import annotations

import io
import json
import logging
import time
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.pyfunc.scoring_server import infer_and_parse_data, parse_csv_input
from mlflow.utils.proto_json_utils import NumpyEncoder, _get_jsonable_obj

from router.errors import MalformedRequest, ModelError, SignatureMismatch
from router.fastpath import NumpyModel
from router.payload import CSV_FORMAT, DATAFRAME_RECORDS, DATAFRAME_SPLIT, INPUTS, Payload
from router.schema import NUMPY_DTYPES, InputSchema

_log = logging.getLogger(__name__)
_INPUT_ERROR_CODES = frozenset({"INVALID_PARAMETER_VALUE", "BAD_REQUEST"})
_MAX_MESSAGE = 600


class PyfuncLike(Protocol):
    """What the router needs of ``mlflow.pyfunc.PyFuncModel``."""

    @property
    def metadata(self) -> Any: ...

    def predict(self, data: Any, params: dict[str, Any] | None = None) -> Any: ...


@dataclass(frozen=True)
class Prediction:
    body: bytes  # {"predictions": [...]} as mlflow's scoring server writes it
    outputs: Any  # the JSON-able predictions, for the prediction log


class Predictor:
    def __init__(self, model_name: str, version: str, model: PyfuncLike) -> None:
        self.model_name = model_name
        self.version = version
        self.model = model
        self.label = f"{model_name} v{version}"
        metadata = getattr(model, "metadata", None)
        self.mlflow_schema: Any = _call(metadata, "get_input_schema")
        self.type_hinted = bool(_call(metadata, "_is_signature_from_type_hint"))
        self.schema = None if self.type_hinted else InputSchema.from_mlflow(self.mlflow_schema)
        self.fast: NumpyModel | None = None  # set by warm() when the numpy road is exact
        self.predict_s: float | None = None  # seconds of one warm 1-row prediction

    def __repr__(self) -> str:
        return f"Predictor({self.label})"

    # -- the hot path --
    def predict(self, payload: Payload) -> Prediction:
        matrix = self.matrix(payload)
        if matrix is not None:
            return self.predict_matrix(matrix)
        data = self.model_input(payload)
        return self._finish(self._call(data, payload.params), payload.n_rows)

    def matrix(self, payload: Payload) -> np.ndarray[Any, Any] | None:
        """The payload as the numpy road's input, or None when it must take another road.

        Checks the payload against the signature first (422 naming what is wrong).
        """
        fast = self.fast
        if fast is None or payload.params or not payload.tabular or payload.has_index:
            return None
        if payload.format == CSV_FORMAT:
            return None  # pandas' CSV float parser is not exact: MLflow's road, MLflow's values
        schema = self.schema
        if schema is None or not schema.check(payload, self.label):
            return None
        return fast.matrix(payload)

    def predict_matrix(self, matrix: np.ndarray[Any, Any]) -> Prediction:
        """Predict the rows of a :meth:`matrix` (several requests' rows when batched)."""
        assert self.fast is not None
        try:
            raw = self.fast.predict(matrix)
        except Exception as exc:
            raise _failed(self.label, exc) from exc
        return self._finish(raw, len(matrix))

    def split(self, prediction: Prediction, counts: list[int]) -> list[Prediction]:
        """One batched prediction cut back into per-request replies of ``counts`` rows each."""
        outputs = prediction.outputs
        out = []
        start = 0
        for n in counts:
            part = outputs[start : start + n]
            start += n
            out.append(Prediction(json.dumps({"predictions": part}).encode(), part))
        return out

    def _call(self, data: Any, params: dict[str, Any] | None) -> Any:
        try:
            return self.model.predict(data, params=params)
        except MlflowException as exc:
            if exc.error_code in _INPUT_ERROR_CODES:
                raise SignatureMismatch(
                    f"the input does not match the signature of {self.label}: {_short(exc.message)}"
                ) from exc
            raise ModelError(
                f"{self.label} failed: {_short(exc.message)}",
                public=f"{self.label} failed: MlflowException {exc.error_code}",
            ) from exc
        except Exception as exc:
            raise _failed(self.label, exc) from exc

    def _finish(self, raw: Any, n_rows: int | None) -> Prediction:
        """The reply body for ``raw`` predictions; 500 when they are malformed."""
        if raw is None:
            raise ModelError(f"{self.label} returned no predictions (None)")
        if type(raw) is np.ndarray and raw.dtype.kind in "biuf":
            outputs: Any = raw.tolist()
            encoder: type[json.JSONEncoder] | None = None
        else:
            try:
                outputs = _get_jsonable_obj(raw, pandas_orient="records")  # type: ignore[no-untyped-call]
            except Exception as exc:
                raise ModelError(
                    f"{self.label} returned malformed predictions "
                    f"({type(raw).__name__}): {_short(str(exc))}",
                    public=f"{self.label} returned malformed predictions ({type(raw).__name__})",
                ) from exc
            encoder = NumpyEncoder
        if n_rows is not None and isinstance(outputs, list) and len(outputs) != n_rows:
            raise ModelError(
                f"{self.label} returned {len(outputs)} predictions for {n_rows} input rows"
            )
        try:
            body = json.dumps({"predictions": outputs}, cls=encoder).encode()
        except (TypeError, ValueError) as exc:
            raise ModelError(
                f"{self.label} returned predictions that are not JSON-serializable: {exc}",
                public=f"{self.label} returned predictions that are not JSON-serializable",
            ) from exc
        return Prediction(body=body, outputs=outputs)

    def model_input(self, payload: Payload) -> Any:
        """What ``PyFuncModel.predict`` gets for ``payload`` (422 if it cannot fit)."""
        if self.type_hinted:
            if payload.format != INPUTS:
                raise MalformedRequest(
                    f"{self.label} takes its input as 'inputs' (its signature comes from type "
                    f"hints); got '{payload.format}'",
                    error_code="invalid_format",
                )
            return payload.data
        schema = self.schema
        if (
            schema is not None
            and schema.scalar
            and len(schema.columns) > 1
            and not payload.tabular
            and _positional(payload)
        ):
            shown = ", ".join(repr(n) for n in schema.names[:5])
            raise SignatureMismatch(
                f"the input's rows have no column names, but {self.label} takes "
                f"{len(schema.columns)} named columns ({shown}"
                f"{', ...' if len(schema.columns) > 5 else ''}); send 'dataframe_split' with "
                "'columns', 'dataframe_records', or 'inputs' as records or as an object of "
                "columns"
            )
        exact = schema.check(payload, self.label) if schema is not None else False
        if (
            exact
            and schema is not None
            and schema.scalar
            and not payload.has_index
            and payload.format != CSV_FORMAT
        ):
            frame = self._frame(payload)
            if frame is not None:
                return frame
        return self._mlflow_input(payload)

    def _frame(self, payload: Payload) -> pd.DataFrame | None:
        assert self.schema is not None and payload.columns is not None and payload.rows
        index = {name: i for i, name in enumerate(payload.columns)}
        specs = [c for c in self.schema.columns if c.name in index]
        names = [c.name for c in specs]
        dtypes = {NUMPY_DTYPES[c.type] for c in specs}
        try:
            if len(dtypes) == 1:
                if tuple(names) == payload.columns:
                    matrix = payload.rows
                else:
                    positions = [index[n] for n in names]
                    matrix = tuple(tuple(row[p] for p in positions) for row in payload.rows)
                return pd.DataFrame(np.array(matrix, dtype=dtypes.pop()), columns=names)
            return pd.DataFrame(
                {
                    c.name: np.array(
                        [row[index[c.name]] for row in payload.rows], dtype=NUMPY_DTYPES[c.type]
                    )
                    for c in specs
                }
            )
        except (OverflowError, ValueError, TypeError):
            return None  # e.g. an int too large for an int32 column: let MLflow say so

    def _mlflow_input(self, payload: Payload) -> Any:
        try:
            if payload.format == CSV_FORMAT:
                return parse_csv_input(io.StringIO(payload.data), schema=self.mlflow_schema)
            return infer_and_parse_data({payload.format: payload.data}, self.mlflow_schema)
        except MlflowException as exc:
            message = exc.message
        except Exception as exc:
            message = f"{type(exc).__name__}: {exc}"
        raise SignatureMismatch(
            f"the input does not match the signature of {self.label}: {_short(message)}"
        )

    # -- loading --
    def warm(self) -> str:
        """Run one prediction so the first request does not pay for lazy setup.

        Uses the version's logged input example (a failure raises: the version is broken), else
        a synthetic row from its signature (a failure is only logged: zeros may be refused by
        a healthy model). Returns what was used.
        """
        example = getattr(self.model, "input_example", None)
        if example is not None:
            self.model.predict(example)
            self.fast = NumpyModel.verified(self.model, self.schema, example)
            self._time_one(example)
            return "input example"
        if self.schema is None or not self.schema.scalar:
            return "nothing (no column signature)"
        payload = Payload(
            DATAFRAME_RECORDS,
            [self.schema.example_row()],
            columns=self.schema.names,
            rows=(tuple(self.schema.example_row().values()),),
        )
        try:
            self.predict(payload)
            self.fast = NumpyModel.verified(self.model, self.schema, self.model_input(payload))
            self._time_one(payload)
        except Exception as exc:
            _log.warning("warm-up of %s on a synthetic row failed: %s", self.label, exc)
            return "synthetic row (failed)"
        return "synthetic row" + (" (numpy road)" if self.fast is not None else "")

    def _time_one(self, example: Any) -> None:
        """Measure one warm prediction (the best of three) to decide where it may run."""
        best = float("inf")
        for _ in range(3):
            started = time.perf_counter()
            try:
                if isinstance(example, Payload):
                    self.predict(example)
                elif self.fast is not None:
                    self.fast.predict(self.fast.frame_matrix(example))
                else:
                    self.model.predict(example)
            except Exception:
                return
            best = min(best, time.perf_counter() - started)
        self.predict_s = best


def _failed(label: str, exc: Exception) -> ModelError:
    """A version raised: the client hears the exception's type, the log its text."""
    kind = type(exc).__name__
    return ModelError(
        f"{label} failed: {kind}: {_short(str(exc))}", public=f"{label} failed: {kind}"
    )


def _positional(payload: Payload) -> bool:
    """Rows given as bare lists: a split frame without ``columns``, or a list of lists."""
    data = payload.data
    if payload.format == DATAFRAME_SPLIT:
        return isinstance(data, dict) and data.get("columns") is None
    return isinstance(data, list) and bool(data) and all(isinstance(r, list) for r in data)


def _call(obj: Any, method: str) -> Any:
    function = getattr(obj, method, None)
    if function is None:
        return None
    try:
        return function()
    except Exception:
        return None


def _short(message: str) -> str:
    message = " ".join(str(message).split())
    return message if len(message) <= _MAX_MESSAGE else message[: _MAX_MESSAGE - 3] + "..."

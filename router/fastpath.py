"""The numpy road: predict a scikit-learn version on a numpy matrix, skipping pandas and MLflow.

``PyFuncModel.predict`` on a one-row DataFrame costs about a millisecond (schema enforcement,
frame building, the estimator's pandas checks); the estimator itself on a numpy row costs a
tenth of that. :class:`NumpyModel` calls the estimator's ``pyfunc_predict_fn`` directly on a
matrix whose columns are in the signature's order, with the dtype pandas would have handed the
estimator (the common type of the signature's columns).

It is only built for a version when all of this holds, so its replies equal MLflow's:

- the pyfunc flavor's loader is ``mlflow.sklearn`` and every signature column is numeric;
- the estimator was fitted on exactly the signature's columns, in that order (an estimator
  fitted on a DataFrame remembers ``feature_names_in_``; the router predicts with a shallow copy
  that forgets them, so scikit-learn does not warn that a matrix has no column names);
- on the warm-up input it returns exactly what ``PyFuncModel.predict`` returns, without a
  warning (a pipeline that selects columns by name fails here, and keeps the MLflow road).
"""

from __future__ import annotations

import copy
import logging
import warnings
from collections.abc import Callable
from typing import Any, Final

import numpy as np

from router.payload import Payload
from router.schema import NUMPY_DTYPES, InputSchema

_log = logging.getLogger(__name__)
_NUMERIC: Final = frozenset({"double", "float", "long", "integer"})


class NumpyModel:
    def __init__(
        self, predict: Callable[[Any], Any], names: tuple[str, ...], dtype: np.dtype[Any]
    ) -> None:
        self.predict = predict
        self.names = names
        self.dtype = dtype

    @classmethod
    def verified(cls, model: Any, schema: InputSchema | None, example: Any) -> NumpyModel | None:
        """The numpy road for ``model`` if it is exact on ``example`` (a DataFrame), else None."""
        candidate = cls.build(model, schema)
        if candidate is None:
            return None
        try:
            with warnings.catch_warnings(record=True):
                warnings.simplefilter("always")  # MLflow's own road may warn: not our concern
                expected = np.asarray(model.predict(example))
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                got = np.asarray(candidate.predict(candidate.frame_matrix(example)))
        except Exception as exc:
            _log.info("numpy road off: %s: %s", type(exc).__name__, exc)
            return None
        if caught:
            _log.info("numpy road off: it warns (%s)", caught[0].message)
            return None
        if expected.shape != got.shape or not np.array_equal(expected, got, equal_nan=True):
            _log.info("numpy road off: its predictions differ from PyFuncModel.predict")
            return None
        return candidate

    @classmethod
    def build(cls, model: Any, schema: InputSchema | None) -> NumpyModel | None:
        if schema is None or not all(c.type in _NUMERIC for c in schema.columns):
            return None
        metadata = getattr(model, "metadata", None)
        flavors = getattr(metadata, "flavors", None) or {}
        pyfunc = flavors.get("python_function", {})
        if pyfunc.get("loader_module") != "mlflow.sklearn":
            return None
        try:
            impl = model._model_impl
            estimator = impl.sklearn_model
        except AttributeError:
            return None
        names = schema.names
        fitted = getattr(estimator, "feature_names_in_", None)
        if fitted is not None and tuple(str(n) for n in fitted) != names:
            return None
        if getattr(estimator, "n_features_in_", len(names)) != len(names):
            return None
        stripped = _without_feature_names(estimator)
        function = getattr(stripped, pyfunc.get("predict_fn") or "predict", None)
        if function is None:
            return None
        dtype = np.result_type(*(np.dtype(NUMPY_DTYPES[c.type]) for c in schema.columns))
        return cls(function, names, dtype)

    def matrix(self, payload: Payload) -> np.ndarray[Any, Any] | None:
        """The payload's rows in signature order (the payload was checked: exact types)."""
        assert payload.columns is not None and payload.rows is not None
        columns = payload.columns
        try:
            if columns == self.names:
                return np.array(payload.rows, dtype=self.dtype)
            positions = [columns.index(n) for n in self.names]
            return np.array([[row[p] for p in positions] for row in payload.rows], dtype=self.dtype)
        except (OverflowError, ValueError, TypeError):
            return None

    def frame_matrix(self, frame: Any) -> np.ndarray[Any, Any]:
        """A DataFrame's signature columns as this road's matrix."""
        return np.asarray(frame[list(self.names)].to_numpy(), dtype=self.dtype)


def _without_feature_names(estimator: Any) -> Any:
    """A shallow copy of ``estimator`` (and of a pipeline's first step) without column names."""
    steps = getattr(estimator, "steps", None)
    if isinstance(steps, list) and steps:
        pipeline = copy.copy(estimator)
        name, first = steps[0]
        pipeline.steps = [(name, _without_feature_names(first)), *steps[1:]]
        return pipeline
    if not hasattr(estimator, "feature_names_in_"):
        return estimator
    clone = copy.copy(estimator)
    try:
        del clone.feature_names_in_
    except AttributeError:
        return estimator
    return clone

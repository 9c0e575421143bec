"""What every part of the rollout spec shares: durations, request counts, the base model.

- :func:`parse_duration`: seconds from ``30``, ``"30s"``, ``"10m"``, ``"1h"``, ``"1h30m"``,
  ``"250ms"``; ``ValueError`` (which pydantic reports with the field's path) on anything else
  or a negative value.
- ``Requests``, ``Duration``, ``OptionalDuration``: the field types of the strategies and the
  approval. Durations are seconds or strings such as ``"30s"``, ``"10m"``, ``"1h"``,
  ``"1h30m"``; they are stored as float seconds (``min_duration_s``; YAML key ``min_duration``).
- ``_Model`` (frozen, unknown keys rejected, fields by name or by YAML alias) and ``_tag`` (the
  discriminator of the one-key unions: ``strategy`` and each ``analysis.gates`` item) are
  internal to :mod:`rollout.spec`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Annotated

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict

_UNIT_S = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")


def parse_duration(value: object) -> float:
    """Seconds from ``30``, ``"30s"``, ``"10m"``, ``"1h"``, ``"1h30m"``, ``"250ms"``."""
    if isinstance(value, bool):
        raise ValueError(f"expected a duration such as '30s', '10m' or '1h', got {value!r}")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        text = value.strip().lower().replace(" ", "")
        if re.fullmatch(r"\d+(\.\d+)?", text):
            seconds = float(text)
        elif text and re.fullmatch(rf"(?:{_DURATION_PART.pattern})+", text):
            seconds = sum(float(n) * _UNIT_S[unit] for n, unit in _DURATION_PART.findall(text))
        else:
            raise ValueError(f"expected a duration such as '30s', '10m' or '1h', got {value!r}")
    else:
        raise ValueError(f"expected a duration such as '30s', '10m' or '1h', got {value!r}")
    if seconds < 0:
        raise ValueError(f"must not be negative, got {value!r}")
    return seconds


def _requests(value: object) -> object:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"must be an integer >= 0, got {value!r}")
    return value


def _optional_duration(value: object) -> object:
    return None if value is None else parse_duration(value)


MAX_WATCH_S = 30 * 86_400.0  # a watch keeps the previous version loaded: bounded


def _watch_bounded(value: float | None) -> float | None:
    if value is not None and value > MAX_WATCH_S:
        raise ValueError(f"at most 30 days ({MAX_WATCH_S:.0f}s), got {value:.0f}s")
    return value


# Field types shared by the strategies: a request count, a duration, an optional duration.
Requests = Annotated[int, BeforeValidator(_requests)]
Duration = Annotated[float, BeforeValidator(parse_duration)]
OptionalDuration = Annotated[float | None, BeforeValidator(_optional_duration)]
# How long a promoted release is watched (the spec's and an environment's ``watch``).
WatchDuration = Annotated[OptionalDuration, AfterValidator(_watch_bounded)]


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)


def _tag(value: object, models: tuple[type[_Model], ...]) -> str | None:
    """Which model of a one-key union validates ``value``: the one whose only field is its key.

    The tag is the model's class name, never a YAML key, so :func:`format_errors` can drop it
    from error paths (pydantic puts it there, between the union and the model's field).
    """
    for model in models:
        if isinstance(value, model) or (
            isinstance(value, Mapping) and next(iter(model.model_fields)) in value
        ):
            return model.__name__
    return None

"""Bounded JSON for request bodies: never deeper than ``MAX_DEPTH``, never a non-finite number.

:func:`loads` decodes a body (UTF-8 bytes) and either returns the document or raises
:class:`~router.errors.MalformedRequest` (400) naming what was wrong and where. It never raises
anything else: not ``RecursionError`` (deep nesting), not ``ValueError`` (an integer longer than
Python converts), not a decoder's internal error.

=====================  ==================================================================
``malformed_json``     not UTF-8, not JSON (the message has the line and column)
``too_deep``           arrays and objects nested more than ``MAX_DEPTH`` (64) levels deep
``non_finite_number``  ``NaN``, ``Infinity``, ``-Infinity``, or a number that overflows a
                       64-bit float (``1e400``); the message names the field (a JSON path
                       like ``dataframe_split.data[0][2]``) and the text sent
``number_too_long``    an integer of more digits than Python converts (4,300)
``invalid_string``     a string holding a lone UTF-16 surrogate (``"\\ud800"``), which no
                       store or encoder can write
=====================  ==================================================================

Cost on the hot path: two ``bytes.count`` calls and the search for a run of 19 digits the
router always made. Only a body with more than ``MAX_DEPTH`` brackets has its depth measured,
before any decoder runs, in numpy (:func:`nesting_depth`, a few ms per MiB). ``orjson`` decodes
first (it refuses ``NaN``, ``Infinity``, overflowing numbers and lone surrogates itself); the
standard library decodes what it refuses and every body with a run of 19 digits (``orjson``
would turn an integer beyond 64 bits into a float where MLflow keeps the integer), with hooks
that mark the bad numbers so the first one can be named.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any, Final

import numpy as np
import orjson

from router.errors import MalformedRequest

MAX_DEPTH: Final = 64
_LONG_DIGITS: Final = re.compile(rb"\d{19}")  # orjson would make an integer beyond 64 bits a float
_SURROGATE: Final = re.compile(rb"\\u[dD][89a-fA-F]")
_EXCERPT: Final = 24
_QUOTE, _BACKSLASH = ord('"'), ord("\\")
_OPENERS = np.frombuffer(b"[{", dtype=np.uint8)
_BRACKETS = np.frombuffer(b"[]{}", dtype=np.uint8)


class _Bad:
    """Put in the document where a number was refused, so that :func:`_path_of` can name it."""

    __slots__ = ("code", "text")

    def __init__(self, code: str, text: str) -> None:
        self.code = code
        self.text = text


def loads(body: bytes) -> Any:
    """The JSON document in ``body``; 400 (:class:`MalformedRequest`) for anything else."""
    if body.count(b"[") + body.count(b"{") > MAX_DEPTH:
        check_depth(body)
    if _LONG_DIGITS.search(body) is None:
        try:
            return orjson.loads(body)
        except orjson.JSONDecodeError:
            pass  # NaN, 1e400, lone surrogates, or malformed: the careful road decides and says
    return _careful(body)


def check_depth(body: bytes) -> None:
    """400 ``too_deep`` if arrays and objects in ``body`` nest more than ``MAX_DEPTH`` levels."""
    depth = nesting_depth(body)
    if depth > MAX_DEPTH:
        raise MalformedRequest(
            f"the JSON body nests arrays and objects {depth} levels deep; at most {MAX_DEPTH} "
            "are accepted",
            error_code="too_deep",
        )


def nesting_depth(body: bytes) -> int:
    """How deep the brackets outside strings nest, in numpy (a few ms per MiB).

    A quote ends or starts a string unless an odd run of backslashes precedes it; a bracket is
    outside every string when an even number of such quotes precede it. For a body that is not
    JSON this is what a decoder would see up to its first error, so never less.
    """
    codes = np.frombuffer(body, dtype=np.uint8)
    quotes = np.flatnonzero(codes == _QUOTE)
    if quotes.size:
        backslash = codes == _BACKSLASH
        if backslash.any():
            positions = np.arange(codes.size)
            last_other = np.maximum.accumulate(np.where(backslash, -1, positions))
            before = quotes - 1
            run = np.where(before >= 0, before - last_other[np.maximum(before, 0)], 0)
            quotes = quotes[run % 2 == 0]
    brackets = np.flatnonzero(np.isin(codes, _BRACKETS))
    if quotes.size:
        brackets = brackets[np.searchsorted(quotes, brackets) % 2 == 0]
    if not brackets.size:
        return 0
    steps = np.where(np.isin(codes[brackets], _OPENERS), 1, -1)
    return int(np.cumsum(steps).max())


def _careful(body: bytes) -> Any:
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise MalformedRequest(
            f"the body is not UTF-8 text: {exc.reason} at byte {exc.start}",
            error_code="malformed_json",
        ) from None
    found: list[_Bad] = []

    def constant(name: str) -> _Bad:
        bad = _Bad("non_finite_number", name)
        found.append(bad)
        return bad

    def number(text: str) -> float | _Bad:
        value = float(text)
        if math.isfinite(value):
            return value
        bad = _Bad("non_finite_number", text if len(text) <= _EXCERPT else f"{text[:20]}...")
        found.append(bad)
        return bad

    def integer(text: str) -> int | _Bad:
        try:
            return int(text)
        except ValueError:  # more digits than int() converts (sys.get_int_max_str_digits)
            bad = _Bad("number_too_long", f"an integer of {len(text)} digits")
            found.append(bad)
            return bad

    try:
        document = json.loads(text, parse_constant=constant, parse_float=number, parse_int=integer)
    except json.JSONDecodeError as exc:
        raise MalformedRequest(
            f"the body is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}",
            error_code="malformed_json",
        ) from None
    except RecursionError:  # not reachable after check_depth; a 400 all the same
        raise MalformedRequest(
            f"the JSON body nests too deep; at most {MAX_DEPTH} levels are accepted",
            error_code="too_deep",
        ) from None
    if found:
        _refuse(document, found[0])
    if _SURROGATE.search(body) is not None:
        _refuse_surrogates(document)
    return document


def _refuse(document: Any, bad: _Bad) -> None:
    where = _path_of(document, lambda value: value is bad) or "the body"
    if bad.code == "number_too_long":
        raise MalformedRequest(
            f"{where}: {bad.text}; integers of at most 4300 digits are accepted",
            error_code="number_too_long",
        )
    raise MalformedRequest(
        f"{where}: {bad.text} is not a finite number (NaN and Infinity are not JSON, and a "
        "number must fit a 64-bit float); send a finite number, or null for a missing value",
        error_code="non_finite_number",
    )


def _refuse_surrogates(document: Any) -> None:
    where = _path_of(document, _unencodable)
    if where is not None:
        raise MalformedRequest(
            f"{where}: the string holds a lone UTF-16 surrogate (\\ud800-\\udfff without its "
            "pair); send valid Unicode text",
            error_code="invalid_string",
        )


def _unencodable(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _path_of(document: Any, match: Any) -> str | None:
    """The JSON path (``a.b[2]``) of the first value (or object key) for which ``match`` is
    true, walking depth-first without recursion; None if there is none."""
    stack: list[tuple[str, Any]] = [("", document)]
    while stack:
        path, value = stack.pop()
        if match(value):
            return path or "the body"
        if isinstance(value, dict):
            items = list(value.items())
            for key, item in reversed(items):
                if match(key):
                    return f"{path}.{_key(key)}" if path else _key(key)
                stack.append((f"{path}.{_key(key)}" if path else _key(key), item))
        elif isinstance(value, list):
            stack.extend((f"{path}[{i}]", item) for i, item in reversed(list(enumerate(value))))
    return None


def _key(key: str) -> str:
    shown = key.encode("utf-8", "backslashreplace").decode("ascii", "backslashreplace")
    return shown if len(shown) <= _EXCERPT else f"{shown[: _EXCERPT - 3]}..."

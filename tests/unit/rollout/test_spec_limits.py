"""The spec loader's limits (issue 11, attack 7): no aliases, a size and a depth limit, and
errors that quote only a short excerpt of what was sent."""

from __future__ import annotations

import os
import time
import tracemalloc
from pathlib import Path

import pytest

from rollout.errors import SpecError
from rollout.spec import load_spec
from rollout.spec.document import MAX_DEPTH, MAX_MESSAGE_CHARS, MAX_SPEC_BYTES

# the 730-byte spec that reached MemoryError at 4 GB after 56 s
BILLION_LAUGHS = """\
model: bc
strategy: {canary: {steps: [{weight: 10}]}}
a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]
i: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]
"""


def _refused(source: object) -> tuple[str, float, int]:
    """The error, the seconds, and the peak bytes allocated while loading ``source`` (timed
    and traced in two runs: tracing slows the pure-Python YAML parser down)."""
    started = time.perf_counter()
    with pytest.raises(SpecError) as caught:
        load_spec(source)  # type: ignore[arg-type]
    seconds = time.perf_counter() - started
    tracemalloc.start()
    try:
        with pytest.raises(SpecError):
            load_spec(source)  # type: ignore[arg-type]
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    return str(caught.value), seconds, peak


def test_billion_laughs_is_refused_at_its_first_alias() -> None:
    message, seconds, peak = _refused(BILLION_LAUGHS)
    assert message == (
        "aliases are not allowed in a spec (found '*a' at line 4); write the value out"
    )
    assert seconds < 1.0
    assert peak < 5_000_000


def test_one_alias_is_refused_too() -> None:
    text = "strategy: &s {canary: {steps: [{weight: 10}]}}\nwatch: 0\nx: *s\n"
    assert "aliases are not allowed" in _refused(text)[0]


@pytest.mark.parametrize(
    "text",
    [
        "strategy: " + "[" * 20_000 + "]" * 20_000,  # flow style
        "strategy:\n" + "".join(f"{'  ' * i}- \n" for i in range(1, 60)),  # block style
        "strategy: " + "{a: " * 5_000 + "1" + "}" * 5_000,
    ],
    ids=["flow-lists", "block-lists", "flow-maps"],
)
def test_deep_yaml_is_refused_without_a_traceback(text: str) -> None:
    message, seconds, _peak = _refused(text)
    assert message.startswith(f"nested more than {MAX_DEPTH} levels deep at line ")
    assert seconds < 1.0


def test_a_deep_mapping_is_refused() -> None:
    deep: dict[str, object] = {}
    inner = deep
    for _ in range(100_000):
        inner["a"] = {}
        inner = inner["a"]  # type: ignore[assignment]
    message, seconds, _peak = _refused({"strategy": deep})
    assert message == f"the spec is nested more than {MAX_DEPTH} levels deep"
    assert seconds < 1.0


def test_a_spec_at_the_depth_limit_still_loads_to_its_own_errors() -> None:
    nested: object = 1
    for _ in range(MAX_DEPTH - 1):
        nested = [nested]
    with pytest.raises(SpecError, match="strategy"):
        load_spec({"strategy": nested})


def test_text_over_the_size_limit_is_refused_before_parsing() -> None:
    text = "model: bc\n" + "# padding\n" * (MAX_SPEC_BYTES // 10)
    message, seconds, _peak = _refused(text)
    assert message == f"a spec may be at most {MAX_SPEC_BYTES} bytes"
    assert seconds < 1.0


def test_a_50_mb_file_is_refused_by_its_size_before_it_is_read(tmp_path: Path) -> None:
    path = tmp_path / "big.yaml"
    with path.open("w") as handle:
        handle.write("strategy: {canary: {steps: [{weight: 10}]}}\n")
        handle.write("x: [" + "1," * (25 * 1024 * 1024) + "1]\n")
    size = path.stat().st_size
    assert size > 50 * 1024 * 1024
    message, seconds, peak = _refused(path)
    assert message == f"{path}: a spec may be at most {MAX_SPEC_BYTES} bytes, the file has {size}"
    assert seconds < 1.0
    assert peak < 1_000_000  # the file was never read


def test_a_fifo_named_as_the_spec_file_does_not_block(tmp_path: Path) -> None:
    fifo = tmp_path / "spec.yaml"
    os.mkfifo(fifo)
    message, seconds, _peak = _refused(fifo)
    assert message == f"cannot read spec file {fifo}: not a regular file"
    assert seconds < 1.0


def test_a_directory_named_as_the_spec_file_is_refused(tmp_path: Path) -> None:
    assert _refused(tmp_path)[0] == f"cannot read spec file {tmp_path}: not a regular file"


def test_errors_quote_a_short_excerpt_of_a_huge_value() -> None:
    huge = "z" * 12_000_000
    message, _seconds, _peak = _refused(
        {"strategy": {"canary": {"steps": [{"weight": huge}] * 50}}, "watch": huge}
    )
    assert len(message) <= MAX_MESSAGE_CHARS + 200
    assert message.startswith("strategy.canary.steps[0].weight: ")
    assert "zzz... (cut)" in message
    assert message.endswith("more problem(s)")


def test_invalid_yaml_names_the_line_and_stays_short() -> None:
    message, _seconds, _peak = _refused("strategy: [unclosed\nmodel: " + "q" * 100_000)
    assert message.startswith("not valid YAML at line ")
    assert len(message) < 400

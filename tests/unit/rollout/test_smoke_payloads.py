"""``smoke_tests[].payload_file`` (issue 11, attack 3): only regular files inside the payload
directory, read without blocking, with a size limit, and one error for every refusal (no
oracle for files elsewhere)."""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

import pytest

from rollout.errors import SpecError
from rollout.smoke import SmokeRunner, check_payload_files, read_payload
from rollout.spec import SmokeTest

PAYLOAD = {"dataframe_split": {"columns": ["a"], "data": [[1.0]]}}


@pytest.fixture
def payloads(tmp_path: Path) -> Path:
    directory = tmp_path / "payloads"
    directory.mkdir()
    (directory / "ok.json").write_text(json.dumps(PAYLOAD))
    (directory / "sub").mkdir()
    (directory / "sub" / "nested.json").write_text(json.dumps(PAYLOAD))
    (tmp_path / "outside.json").write_text(json.dumps(PAYLOAD))
    return directory


def refusal(name: str, directory: Path) -> str:
    return (
        f"{name!r} is not a readable regular file in the payload directory {directory} "
        "(ROLLOUT_SMOKE_PAYLOAD_DIR; name files relative to it)"
    )


def test_files_inside_the_directory_are_read(payloads: Path) -> None:
    assert read_payload("ok.json", payloads) == PAYLOAD
    assert read_payload("sub/nested.json", payloads) == PAYLOAD
    assert read_payload("sub/../ok.json", payloads) == PAYLOAD  # stays inside
    assert read_payload(str(payloads / "ok.json"), payloads) == PAYLOAD  # absolute, inside


@pytest.mark.parametrize(
    "name",
    [
        "/etc/shadow",  # exists, not allowed
        "/etc/does-not-exist",  # does not exist
        "../outside.json",  # a regular file outside
        "missing.json",  # inside, missing
        "link-out.json",  # a symlink pointing outside
        "sub",  # a directory
        "fifo",  # would block a reader
        "/dev/zero",  # a device: would never end
        "bad\x00name",
        "",
    ],
)
def test_every_refusal_is_the_same_error_and_immediate(payloads: Path, name: str) -> None:
    (payloads / "link-out.json").symlink_to(payloads.parent / "outside.json")
    os.mkfifo(payloads / "fifo")
    started = time.perf_counter()
    with pytest.raises(SpecError) as caught:
        read_payload(name, payloads)
    assert time.perf_counter() - started < 1.0
    assert str(caught.value) == refusal(name, payloads)


def test_a_fifo_does_not_block_even_with_a_writer_waiting(payloads: Path) -> None:
    """The attack: a FIFO named as the payload blocked the API thread and the manager loop."""
    fifo = payloads / "fifo.json"
    os.mkfifo(fifo)
    done = threading.Event()

    def attempt() -> None:
        with pytest.raises(SpecError):
            read_payload("fifo.json", payloads)
        done.set()

    thread = threading.Thread(target=attempt, daemon=True)
    thread.start()
    assert done.wait(2.0), "reading the FIFO blocked"


def test_size_and_json_are_checked(payloads: Path) -> None:
    (payloads / "big.json").write_text(" " * 100 + "1")
    with pytest.raises(SpecError, match=r"^'big.json' has 101 bytes; at most 50$"):
        read_payload("big.json", payloads, max_bytes=50)
    (payloads / "bad.json").write_text("{not json")
    with pytest.raises(SpecError, match=r"^'bad.json' is not valid JSON: Expecting"):
        read_payload("bad.json", payloads)
    (payloads / "deep.json").write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(SpecError, match=r"^'deep.json' is not valid JSON"):
        read_payload("deep.json", payloads)


def test_no_directory_configured_refuses_every_file(payloads: Path) -> None:
    with pytest.raises(SpecError, match="not a readable regular file"):
        read_payload("ok.json", None)


def test_check_names_the_smoke_test(payloads: Path) -> None:
    tests = (SmokeTest(payload=PAYLOAD), SmokeTest(payload_file="ok.json"))
    check_payload_files(tests, payloads)  # fine
    bad = (*tests, SmokeTest(payload_file="/etc/shadow"))
    with pytest.raises(SpecError) as caught:
        check_payload_files(bad, payloads)
    assert str(caught.value) == "smoke_tests[2].payload_file: " + refusal("/etc/shadow", payloads)


def test_the_runner_reads_a_payload_that_became_a_fifo_without_blocking(payloads: Path) -> None:
    """The manager loop reads payload_file when it runs the smoke tests: a file swapped for a
    FIFO after the start fails that smoke test at once instead of stalling the loop."""
    os.mkfifo(payloads / "swapped.json")
    runner = SmokeRunner({"*": "http://127.0.0.1:9"}, "pin", payloads)
    started = time.perf_counter()
    evidence = runner.run("bc", "prod", "2", [SmokeTest(payload_file="swapped.json")], None, 0.0)
    assert time.perf_counter() - started < 1.0
    assert evidence is not None and evidence.verdict == "fail"
    (result,) = evidence.gates
    assert result.reason == "cannot read the payload: " + refusal("swapped.json", payloads)

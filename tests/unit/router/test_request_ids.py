"""Signed request ids: random, dated, checked by their tag, refused when forged or too old."""

from __future__ import annotations

import hashlib
import itertools
import os
import re
import threading
import time
from pathlib import Path

import pytest

from contract.clock import ManualClock
from router.errors import LabelExpired, UnknownRequest
from router.request_ids import ID_CHARS, RequestIds, load_key, load_keys, new_key

KEY = b"0123456789abcdef0123456789abcdef"
DAY_S = 86_400.0


def test_an_id_is_64_hex_characters_dated_and_verifiable() -> None:
    clock = ManualClock(1_700_000_000.0)
    ids = RequestIds(KEY, clock)
    request_id = ids.issue()
    assert re.fullmatch(r"[0-9a-f]{64}", request_id)
    assert len(request_id) == ID_CHARS
    assert request_id[:8] == f"{1_700_000_000:08x}"
    assert ids.issued_at(request_id) == 1_700_000_000.0
    clock.advance(3600)
    assert ids.check(request_id, max_age_s=DAY_S) == 1_700_000_000.0


def test_ids_are_unique_increasing_in_a_process_and_their_random_part_varies() -> None:
    ids = RequestIds(KEY, ManualClock())
    issued = [ids.issue() for _ in range(20_000)]
    assert len(set(issued)) == len(issued)
    assert len({i[8:16] for i in issued}) == 1  # this process
    counters = [int(i[16:24], 16) for i in issued]
    # one process's ids of one second follow each other (appends to the log's primary key)
    assert all((b - a) % 2**32 == 1 for a, b in itertools.pairwise(counters))
    randoms = [i[24:40] for i in issued]
    # 64 random bits per id: every hex position takes all 16 values over 20,000 draws.
    assert all(len({r[p] for r in randoms}) == 16 for p in range(16))
    tags = [i[40:] for i in issued]
    assert all(len({t[p] for t in tags}) == 16 for p in range(24))


def _id_in_forked_child(ids: RequestIds) -> str:
    """The first id a forked child of this process issues."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: one id, then exit at once
        os.write(write, ids.issue().encode())
        os._exit(0)
    os.close(write)
    child = os.read(read, ID_CHARS).decode()
    os.close(read)
    os.waitpid(pid, 0)
    assert len(child) == ID_CHARS
    return child


def test_a_forked_process_draws_its_own_process_bits() -> None:
    ids = RequestIds(KEY, ManualClock())
    assert _id_in_forked_child(ids)[8:16] != ids.issue()[8:16]


def test_a_forked_process_does_not_reuse_its_parents_random_pool() -> None:
    ids = RequestIds(KEY, ManualClock())
    ids.issue()  # the pool now holds 511 unused pieces, copied into the child by fork
    assert _id_in_forked_child(ids)[24:40] != ids.issue()[24:40]


def test_the_tag_is_keyed_blake2b_of_the_rest_and_long_keys_are_hashed_first() -> None:
    request_id = RequestIds(KEY, ManualClock()).issue()
    body = request_id[:40].encode()
    assert request_id[40:] == hashlib.blake2b(body, key=KEY, digest_size=12).hexdigest()
    long_key = bytes(range(100))
    long_id = RequestIds(long_key, ManualClock()).issue()
    digest = hashlib.blake2b(long_key).digest()
    tag = hashlib.blake2b(long_id[:40].encode(), key=digest, digest_size=12).hexdigest()
    assert long_id[40:] == tag
    with pytest.raises(UnknownRequest):  # the first 64 bytes alone are another key
        RequestIds(long_key[:64], ManualClock()).issued_at(long_id)


@pytest.mark.parametrize("position", [0, 7, 8, 20, 39, 40, 63])
def test_changing_any_character_makes_the_id_unknown(position: int) -> None:
    ids = RequestIds(KEY, ManualClock())
    request_id = ids.issue()
    flipped = "0" if request_id[position] != "0" else "1"
    forged = request_id[:position] + flipped + request_id[position + 1 :]
    with pytest.raises(UnknownRequest, match="not issued by a router with this key"):
        ids.issued_at(forged)


def test_an_id_signed_with_another_key_is_unknown() -> None:
    clock = ManualClock()
    other = RequestIds(b"another key of 32 bytes, exactly", clock).issue()
    with pytest.raises(UnknownRequest):
        RequestIds(KEY, clock).check(other, max_age_s=DAY_S)


@pytest.mark.parametrize(
    "request_id",
    ["", "req-1", "0" * 63, "0" * 65, "G" * 64, "A" * 64, "0" * 32 + "\u00e9" * 32],
)
def test_ids_of_the_wrong_shape_are_unknown_naming_the_expected_form(request_id: str) -> None:
    with pytest.raises(UnknownRequest, match="expected the 64 hex characters"):
        RequestIds(KEY, ManualClock()).issued_at(request_id)


def test_an_old_id_is_expired_and_one_from_the_future_unknown() -> None:
    clock = ManualClock(1_700_000_000.0)
    ids = RequestIds(KEY, clock)
    old = ids.issue()
    clock.advance(14 * DAY_S + 1)
    with pytest.raises(
        LabelExpired, match=r"issued 1209601 s ago; labels are accepted for 1209600"
    ):
        ids.check(old, max_age_s=14 * DAY_S)
    future = RequestIds(KEY, ManualClock(clock.time() + 3600)).issue()
    with pytest.raises(UnknownRequest, match="in the future"):
        ids.check(future, max_age_s=14 * DAY_S)
    # A little skew between routers is fine.
    near = RequestIds(KEY, ManualClock(clock.time() + 60)).issue()
    assert ids.check(near, max_age_s=14 * DAY_S) == clock.time() + 60


def test_a_short_key_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 16"):
        RequestIds(b"short", ManualClock())


def test_load_key_from_the_variable_or_a_file(tmp_path: Path) -> None:
    assert load_key(None, None) is None
    assert load_key("  " + "x" * 20 + "\n", None) == b"x" * 20
    key_file = tmp_path / "key"
    key_file.write_text(new_key() + "\n")
    loaded = load_key(None, str(key_file))
    assert loaded is not None and len(loaded) == 64
    with pytest.raises(ValueError, match="ROLLOUT_REQUEST_ID_KEY: the key has 5 bytes"):
        load_key("short", None)
    with pytest.raises(ValueError, match="cannot open"):
        load_key(None, str(tmp_path / "missing"))
    big = tmp_path / "big"
    big.write_bytes(b"x" * 5000)
    with pytest.raises(ValueError, match="larger than 4096 bytes"):
        load_key(None, str(big))


def test_load_key_refuses_a_fifo_at_once_and_a_symlink(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    outcome: list[str] = []

    def load() -> None:
        try:
            load_key(None, str(fifo))
        except ValueError as exc:
            outcome.append(str(exc))

    started = time.monotonic()
    thread = threading.Thread(target=load, daemon=True)
    thread.start()
    thread.join(5)
    assert not thread.is_alive() and time.monotonic() - started < 5
    assert outcome and "not a regular file" in outcome[0]
    target = tmp_path / "target"
    target.write_text("y" * 40)
    link = tmp_path / "link"
    link.symlink_to(target)
    with pytest.raises(ValueError, match="cannot open"):
        load_key(None, str(link))


def test_a_rotation_verifies_the_old_keys_and_signs_with_the_first() -> None:
    """Step by step as router/request_ids.py says: old key alone, then old signing with the new
    verifying, then the new signing with the old verifying, then the new alone."""
    clock = ManualClock(1_700_000_000.0)
    old, new = KEY, b"the new key, also 32 bytes long!"
    before = RequestIds(old, clock).issue()
    adding = RequestIds(old, clock, previous=[new])
    switched = RequestIds(new, clock, previous=[old])
    after = RequestIds(new, clock)
    during = adding.issue()
    signed_new = switched.issue()
    for ids in (adding, switched):  # both steps verify every id issued so far
        for request_id in (before, during, signed_new):
            assert ids.check(request_id, max_age_s=DAY_S) == clock.time()
    assert (
        signed_new[-24:]
        == hashlib.blake2b(signed_new[:-24].encode(), key=new, digest_size=12).hexdigest()
    )  # the first key signs
    assert after.check(signed_new, max_age_s=DAY_S) == clock.time()
    with pytest.raises(UnknownRequest, match="not issued by a router with this key"):
        after.check(before, max_age_s=DAY_S)  # the old key removed: its ids are unknown
    with pytest.raises(ValueError, match="at least 16"):
        RequestIds(KEY, clock, previous=[b"short"])


def test_load_keys_from_a_comma_list_or_one_per_line(tmp_path: Path) -> None:
    first, second = new_key(), new_key()
    assert load_keys(f"{first}, {second}", None) == [first.encode(), second.encode()]
    key_file = tmp_path / "keys"
    key_file.write_text(f"# rotated on 2026-12-01\n{first}\n\n  {second}  \n")
    assert load_keys(None, str(key_file)) == [first.encode(), second.encode()]
    assert load_key(None, str(key_file)) == first.encode()  # the one that signs
    with pytest.raises(ValueError, match=r"ROLLOUT_REQUEST_ID_KEY: key 2 of 2 has 5 bytes"):
        load_keys(f"{first},short", None)
    key_file.write_text("# nothing but a comment\n\n")
    with pytest.raises(ValueError, match=r"ROLLOUT_REQUEST_ID_KEY_FILE=.*: holds no key"):
        load_keys(None, str(key_file))

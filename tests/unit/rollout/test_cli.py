"""The CLI's parts: every command the parser declares has exactly one handler; the tables."""

from __future__ import annotations

import argparse

from rollout.cli import build_parser
from rollout.cli.formatting import error_budget, table, when
from rollout.cli.handlers import HANDLERS


def test_every_command_has_a_handler_and_every_handler_a_command() -> None:
    parser = build_parser()
    (commands,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    assert list(commands.choices) == list(HANDLERS)


def test_lifecycle_verbs_share_one_handler() -> None:
    verbs = ("promote", "approve", "pause", "resume", "abort")
    assert len({HANDLERS[verb] for verb in verbs}) == 1


def test_table_pads_columns_and_shows_none_as_a_dash() -> None:
    shown = table(["id", "verb"], [[1, "promote"], [12, None]], indent="  ")
    assert shown.splitlines() == [
        "  id  verb",
        "  --  -------",
        "  1   promote",
        "  12  -",
    ]


def test_when_shows_a_missing_time_as_a_dash() -> None:
    assert when(None) == "-"
    assert len(when(0.0)) == len("1970-01-01 00:00:00")


def test_the_error_budget_line_says_what_is_spent_and_how_it_is_shared() -> None:
    gates = [
        {"gate": "error_rate", "alpha": 0.0125, "blocking": True},
        {"gate": "latency", "alpha": 0.0125, "blocking": True},
        {"gate": "quality", "alpha": 0.0125, "blocking": True},
        {"gate": "output_drift", "alpha": 0.0125, "blocking": True},
        {"gate": "auc", "alpha": 0.0125, "blocking": False},  # advisory: no share
    ]
    line = error_budget(gates)
    assert line.startswith("error budget: alpha spent 0.05 of 0.05, all at the start: ")
    assert "0.0125 to each of 4 blocking gates" in line
    assert error_budget([{"gate": "auc", "alpha": 0.05, "blocking": False}]) == ""


def test_the_error_budget_of_the_candidate_alone_is_its_own() -> None:
    gates = [
        {"gate": "slo_error_rate", "alpha": 0.05 / 3, "blocking": True},
        {"gate": "error_rate_history", "alpha": 0.05 / 3, "blocking": True},
        {"gate": "latency_history", "alpha": 0.05 / 3, "blocking": True},
    ]
    assert error_budget(gates) == (
        "error budget of the candidate alone (its own): alpha 0.05, 0.0167 to each of 3 "
        "blocking gates (its SLO and history), one confidence sequence each over the 100% step"
    )

"""``rollout --api URL``: the CLI's verbs over the manager's HTTP API, as the token's identity.

With ``--api URL`` (or ``$ROLLOUT_API_URL``) and a token (``$ROLLOUT_TOKEN``, or
``--token-file``), each verb of :data:`REMOTE_HANDLERS` is one HTTP call with
``Authorization: Bearer`` (a spec file is read and checked here, and sent as a mapping):
the API checks the token's roles and records the token's identity, so ``--actor`` means nothing
here and is ignored with a warning. The output is the same as on the store: the API's JSON is
turned back into the records :mod:`rollout.cli.formatting` prints. ``status --watch`` polls
``GET .../status`` every ``--interval`` (each call bounded by :data:`TIMEOUT`) and shows the
same live view as the direct watch (:mod:`rollout.cli.live`). It polls rather than holding the
API's ``status?watch=true`` stream open: that stream says nothing while nothing changes, so a
bounded read time would cut a quiet step short. ``plan`` exits 1 on a problem, as on the store.

Every call has a bounded connect and read time and a bounded response size. An API error is
raised as :class:`ApiError` (a :class:`~contract.errors.RolloutError`), whose message is the
API's own, with its status; :func:`rollout.cli.main` prints it and exits 2. Verbs the API does
not serve (``monitor``, ``reference``, ``looks``, and the processes) say so and exit 2.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar, cast
from urllib.parse import quote

import httpx

from contract.errors import RolloutError
from contract.plans import TrafficPlan
from rollout.cli.formatting import (
    format_audit,
    format_events,
    format_history,
    format_report,
    to_json,
)

TIMEOUT = httpx.Timeout(30.0, connect=5.0)
MAX_RESPONSE_BYTES = 32 * 1024 * 1024
MAX_SPEC_BYTES = 1024 * 1024
MAX_TOKEN_FILE_BYTES = 4096


class ApiError(RolloutError):
    """The API answered with an error (its message), or could not be reached."""


class Client:
    """One API, one token: JSON in, JSON out, every call bounded."""

    def __init__(self, base_url: str, token: str) -> None:
        self.base_url = base_url.rstrip("/")
        self.http = httpx.Client(
            base_url=self.base_url,
            timeout=TIMEOUT,
            headers={"Authorization": f"Bearer {token}", "User-Agent": "rollout-cli"},
            follow_redirects=False,
        )

    def close(self) -> None:
        self.http.close()

    def call(
        self,
        method: str,
        path: str,
        body: Mapping[str, Any] | None = None,
        params: Mapping[str, Any] | None = None,
    ) -> Any:
        try:
            with self.http.stream(
                method,
                path,
                json=dict(body) if body is not None else None,
                params={k: v for k, v in (params or {}).items() if v is not None},
            ) as response:
                raw = bytearray()
                for chunk in response.iter_bytes():
                    raw += chunk
                    if len(raw) > MAX_RESPONSE_BYTES:
                        raise ApiError(
                            f"{method} {self.base_url}{path}: the answer is larger than "
                            f"{MAX_RESPONSE_BYTES // (1024 * 1024)} MiB"
                        )
                status = response.status_code
        except httpx.HTTPError as exc:
            raise ApiError(f"cannot reach the API at {self.base_url}: {exc}") from None
        try:
            value = json.loads(bytes(raw)) if raw else None
        except ValueError:
            value = None
        if status >= 400 or 300 <= status < 400:
            message = value.get("message") if isinstance(value, dict) else None
            code = value.get("error_code") if isinstance(value, dict) else None
            shown = message or bytes(raw[:200]).decode(errors="replace") or "no message"
            raise ApiError(f"{status} {code or 'error'}: {shown}")
        if value is None and raw:
            raise ApiError(f"{method} {self.base_url}{path}: the answer is not JSON")
        return value


def env_path(model: str, environment: str, verb: str) -> str:
    return f"/v1/models/{quote(model, safe='')}/environments/{quote(environment, safe='')}/{verb}"


def read_token_file(path: str) -> str:
    try:
        with Path(path).open("rb") as handle:
            text = handle.read(MAX_TOKEN_FILE_BYTES + 1)
    except OSError as exc:
        raise ApiError(f"--token-file {path}: cannot read it: {exc.strerror}") from None
    if len(text) > MAX_TOKEN_FILE_BYTES:
        raise ApiError(f"--token-file {path}: expected one token, got a larger file")
    return text.decode(errors="replace").strip()


def _spec_mapping(path: str) -> dict[str, Any]:
    """The spec file as a mapping (validated here first, so errors come before any call)."""
    import yaml

    from rollout.spec import load_spec

    try:
        with Path(path).open("rb") as handle:
            raw = handle.read(MAX_SPEC_BYTES + 1)
    except OSError as exc:
        raise ApiError(f"cannot read spec file {path}: {exc.strerror}") from None
    if len(raw) > MAX_SPEC_BYTES:
        raise ApiError(f"{path}: a spec is at most {MAX_SPEC_BYTES // 1024} KiB")
    text = raw.decode(errors="replace")
    load_spec(text if "\n" in text else text + "\n")  # SpecError names every problem
    data = yaml.safe_load(text)
    assert isinstance(data, dict)
    return data


# -- turning the API's JSON back into what formatting prints --

T = TypeVar("T")


def build(cls: type[T], data: Mapping[str, Any], **override: Any) -> T:
    """``cls`` (a dataclass) from the API's JSON, keeping only its fields (a newer API may
    send more)."""
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    return cls(**{k: v for k, v in {**data, **override}.items() if k in names})


def _record(data: Mapping[str, Any]) -> Any:
    from rollout.store.records import RolloutRecord

    return build(RolloutRecord, data, spec=json.dumps(data.get("spec"), sort_keys=True))


def _events(items: list[Any]) -> list[Any]:
    from rollout.store.records import EventRecord

    return [build(EventRecord, item) for item in items]


def _releases(items: list[Any]) -> list[Any]:
    from rollout.store.records import Release

    return [build(Release, item) for item in items]


class _Live:
    """The parts of a :class:`~rollout.lifecycle.StepEvidence` that formatting reads."""

    def __init__(self, data: Mapping[str, Any]) -> None:
        self.data = dict(data)
        self.gates = tuple(data.get("gates") or ())

    def to_dict(self) -> dict[str, Any]:
        return self.data


def _status(data: Mapping[str, Any]) -> Any:
    from rollout.queries import Status

    return Status(
        model=data["model"],
        environment=data["environment"],
        plan=build(TrafficPlan, data["plan"]) if data.get("plan") else None,
        alias_version=data.get("alias_version"),
        rollout=_record(data["rollout"]) if data.get("rollout") else None,
        live=cast(Any, _Live(data["live"])) if data.get("live") else None,
        next_move=data.get("next_move"),
        events=tuple(_events(data.get("events") or [])),
        expected=data.get("expected"),
    )


# -- the verbs --


def _start(client: Client, args: argparse.Namespace) -> int:
    spec = _spec_mapping(args.file) if args.file else None
    candidate = args.candidate or (spec or {}).get("candidate")
    environment = args.env or (spec or {}).get("environment")
    if candidate is None or environment is None:
        missing = "--candidate" if candidate is None else "--env"
        print(f"error: {missing} is required (or set it in the spec)", file=sys.stderr)
        return 2
    body = {
        "model": args.model,
        "candidate": str(candidate),
        "environment": environment,
        "spec": spec,
    }
    started = client.call("POST", "/v1/rollouts", body)
    if args.json:
        print(to_json(started))
    elif started.get("baseline_version") is None:
        print(
            f"{started['id']}: initial release of {started['model']} "
            f"v{started['candidate_version']} in {environment} (100% of traffic, @{environment})"
        )
    else:
        print(f"{started['id']}: {started['state']}: {started['reason']}")
    return 0


def _apply(client: Client, args: argparse.Namespace) -> int:
    result = client.call("POST", "/v1/apply", {"spec": _spec_mapping(args.file)})
    print(to_json(result) if args.json else result["message"])
    return 0


def _plan(client: Client, args: argparse.Namespace) -> int:
    from rollout.declarative import PlanStep, RolloutPlan, format_plan

    result = client.call("POST", "/v1/plan", {"spec": _spec_mapping(args.file)})
    problems = tuple(result.get("problems") or ())
    if args.json:
        print(to_json(result))
    else:
        steps = tuple(build(PlanStep, step) for step in result["steps"])
        gates = tuple(result["gates"])
        print(format_plan(build(RolloutPlan, result, steps=steps, gates=gates, problems=problems)))
    return 1 if problems else 0  # as on the store: it would do nothing because of a problem


def _status_verb(client: Client, args: argparse.Namespace) -> int:
    from rollout.cli.handlers import show_status

    path = env_path(args.model, args.env, "status")
    return show_status(lambda: _status(client.call("GET", path)), args)


def _lifecycle(client: Client, args: argparse.Namespace) -> int:
    body = {"reason": args.reason} if args.reason else None
    changed = client.call("POST", env_path(args.model, args.env, args.command), body)
    text = f"{changed['id']}: {changed['state']}: {changed['reason']}"
    print(to_json(changed) if args.json else text)
    return 0


def _rollback(client: Client, args: argparse.Namespace) -> int:
    body = {"to_release": args.to, "reason": args.reason}
    release = client.call("POST", env_path(args.model, args.env, "rollback"), body)
    if args.json:
        print(to_json(release))
        return 0
    reason = (release.get("evidence") or {}).get("reason", "")
    print(
        f"release {release['id']}: {release['model']} v{release['version']} serves "
        f"{release['environment']}"
    )
    if reason:
        print(f"  {reason}")
    return 0


def _history(client: Client, args: argparse.Namespace) -> int:
    releases = client.call("GET", env_path(args.model, args.env, "history"))
    if args.json:
        print(to_json(releases))
    elif not releases:
        print(f"no releases of {args.model} in {args.env}")
    else:
        print(format_history(_releases(releases)))
    return 0


def _report(client: Client, args: argparse.Namespace) -> int:
    report = client.call("GET", f"/v1/rollouts/{quote(args.rollout_id, safe='')}/report")
    if args.json:
        print(to_json(report))
    else:
        print(
            format_report(
                _record(report["rollout"]),
                _events(report["events"]),
                _releases(report["releases"]),
                report.get("drift_report"),
            )
        )
    return 0


def _events_verb(client: Client, args: argparse.Namespace) -> int:
    report = client.call("GET", f"/v1/rollouts/{quote(args.rollout_id, safe='')}/report")
    events = report["events"]
    print(to_json(events) if args.json else format_events(_events(events)))
    return 0


def _audit(client: Client, args: argparse.Namespace) -> int:
    from rollout.store.audit import AuditEntry, canonical

    if args.verify:
        result = client.call("GET", "/v1/audit/verify")
        if args.json:
            print(to_json(result))
        elif result["ok"]:
            print(f"audit log ok: {result['rows']} rows, head {result['head_hash']}")
        else:
            print(f"audit log broken at row {result['broken_id']}: {result['reason']}")
        return 0 if result["ok"] else 1
    params = {
        "model": args.model,
        "environment": args.env,
        "identity": args.identity,
        "limit": args.limit,
    }
    rows = client.call("GET", "/v1/audit", params=params)
    if args.json:
        print(to_json(rows))
    elif not rows:
        print("no audit rows")
    else:
        print(format_audit([build(AuditEntry, r, detail=canonical(r["detail"])) for r in rows]))
    return 0


def _token(client: Client, args: argparse.Namespace) -> int:
    from rollout.cli.formatting import format_tokens

    if args.token_command == "create":
        body = {
            "identity": args.identity,
            "roles": args.role,
            "environments": args.env or None,
            "expires": args.expires,
        }
        created = client.call("POST", "/v1/tokens", body)
        print_created(created, args.json)
    elif args.token_command == "list":
        listed = client.call("GET", "/v1/tokens")
        print(to_json(listed) if args.json else format_tokens(listed))
    else:
        answer = client.call("DELETE", f"/v1/tokens/{quote(args.target, safe='')}")
        print_revoked(answer["revoked"], args.target, args.json)
    return 0


def print_created(created: Mapping[str, Any], as_json: bool) -> None:
    if as_json:
        print(to_json(created))
        return
    print(created["token"])
    print(
        f"token {created['id']} for {created['identity']} "
        f"({'+'.join(created['roles'])}"
        + (f" @{'+'.join(created['environments'])}" if created["environments"] else "")
        + "): shown once, keep it secret",
        file=sys.stderr,
    )


def print_revoked(revoked: Sequence[Mapping[str, Any]], target: str, as_json: bool) -> None:
    if as_json:
        print(to_json(revoked))
    elif not revoked:
        print(f"nothing to revoke: every token of {target} is revoked already")
    else:
        for stored in revoked:
            print(f"revoked {stored['id']} ({stored['identity']})")


REMOTE_HANDLERS = {
    "start": _start,
    "apply": _apply,
    "plan": _plan,
    "status": _status_verb,
    "promote": _lifecycle,
    "approve": _lifecycle,
    "pause": _lifecycle,
    "resume": _lifecycle,
    "abort": _lifecycle,
    "rollback": _rollback,
    "history": _history,
    "report": _report,
    "events": _events_verb,
    "audit": _audit,
    "token": _token,
}


def run(args: argparse.Namespace, api_url: str, token: str | None) -> int:
    """Run ``args.command`` through the API at ``api_url``."""
    handler = REMOTE_HANDLERS.get(args.command)
    if handler is None:
        raise ApiError(
            f"rollout {args.command} is not available through the API (--api / "
            "ROLLOUT_API_URL); run it without --api on a machine with the store"
        )
    if not token:
        raise ApiError(
            "--api needs a token: set ROLLOUT_TOKEN or pass --token-file FILE "
            "(make one with `rollout token create`)"
        )
    if getattr(args, "actor", None) is not None:
        print(
            f"warning: --actor {args.actor} is ignored with --api: you act as the token's identity",
            file=sys.stderr,
        )
    client = Client(api_url, token)
    try:
        return handler(client, args)
    finally:
        client.close()

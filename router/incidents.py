"""Incident ids: a 5xx tells the client an id, the server log tells the operator the story.

:func:`reply_json` is the body of an error reply. For a 4xx it is the error's own message (it
names what the client sent wrong, and holds nothing else), and so it is for a 5xx that hides
nothing (a 504 timeout, a 503 "not loaded yet" without its cause). A 500, or a 5xx whose
``public`` message leaves details out, shows that public message (no exception text, host, port,
database name or traceback) followed by ``(incident <id>)``, and the full message is logged
with the same id (ERROR for a 500, WARNING otherwise), so an operator can find it from what the
client reports. :func:`unexpected` does the same for an exception
that is not a :class:`~router.errors.RouterError` (a bug: 500 ``internal_error``).
"""

from __future__ import annotations

import logging
import os
from typing import Any

from router.errors import RouterError

_log = logging.getLogger(__name__)


def new_id() -> str:
    return os.urandom(6).hex()


def reply_json(error: RouterError, where: str = "") -> dict[str, Any]:
    """The JSON body replying with ``error``; a 5xx's details go to the log under an id."""
    if error.client_error or (error.status_code != 500 and error.public == error.message):
        return error.to_json()  # nothing hidden: a 4xx, a timeout, "not ready" without details
    incident = new_id()
    _log.log(
        logging.ERROR if error.status_code == 500 else logging.WARNING,
        "incident %s%s: %s: %s", incident, f" ({where})" if where else "",
        error.error_code, error.message,
    )  # fmt: skip
    return {"error_code": error.error_code, "message": f"{error.public} (incident {incident})"}


def unexpected(exc: BaseException, where: str) -> dict[str, Any]:
    """The JSON body for a bug (500 ``internal_error``); the traceback goes to the log."""
    incident = new_id()
    _log.error("incident %s (%s): unexpected %s", incident, where, type(exc).__name__,
               exc_info=exc)  # fmt: skip
    return {
        "error_code": "internal_error",
        "message": f"unexpected error in the router (incident {incident})",
    }

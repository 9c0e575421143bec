"""Named errors. Each one is an HTTP reply ``{"error_code": ..., "message": ...}``.

The message says what was wrong, what was expected and where (the column, the limit, the
model). Bad input is always a 4xx; only the model itself, or a store the router cannot reach,
earns a 5xx. A 5xx never shows a client what only the server should know (a model's exception
text, a store's host, port or database, a traceback): the error's ``public`` message is sent
with an incident id, and the full ``message`` is logged under that id
(:func:`router.incidents.reply_json`) and kept in the prediction record.

RouterError                         status  error_code
 ├── MalformedRequest                400     malformed_request (or a more precise code)
 ├── Unauthorized                    401     unauthorized (no or malformed bearer token)
 ├── Forbidden                       403     forbidden (labels_not_configured, ...)
 ├── PinningNotAllowed               403     pinning_not_allowed
 ├── UnknownModel                    404     unknown_model / unknown_version
 ├── UnknownRequest                  404     unknown_request_id (a label's id not issued here)
 ├── LabelConflict                   409     label_conflict (labelled by another writer)
 ├── LabelExpired                    410     label_expired (the request is too old to label)
 ├── PayloadTooLarge                 413     payload_too_large
 ├── UnsupportedContentType          415     unsupported_content_type
 ├── SignatureMismatch               422     signature_mismatch
 ├── ModelError                      500     model_error
 ├── NotReady                        503     not_ready / no_plan / store_unavailable
 └── ModelTimeout                    504     model_timeout
"""

from __future__ import annotations

from typing import Any, ClassVar


class RouterError(Exception):
    """Base of every error the router replies with on purpose."""

    status_code: ClassVar[int] = 500
    default_code: ClassVar[str] = "internal_error"

    def __init__(
        self, message: str, *, error_code: str | None = None, public: str | None = None
    ) -> None:
        super().__init__(message)
        self.message = message  # the whole story: logs and prediction records
        self.public = public if public is not None else message  # what a client may read
        self.error_code = error_code or self.default_code

    @property
    def client_error(self) -> bool:
        """A 4xx: the request was wrong, not the router or a version."""
        return 400 <= self.status_code < 500

    def to_json(self) -> dict[str, Any]:
        return {"error_code": self.error_code, "message": self.public}


class MalformedRequest(RouterError):
    status_code = 400
    default_code = "malformed_request"


class Unauthorized(RouterError):
    status_code = 401
    default_code = "unauthorized"


class Forbidden(RouterError):
    status_code = 403
    default_code = "forbidden"


class PinningNotAllowed(RouterError):
    status_code = 403
    default_code = "pinning_not_allowed"


class UnknownModel(RouterError):
    status_code = 404
    default_code = "unknown_model"


class UnknownRequest(RouterError):
    status_code = 404
    default_code = "unknown_request_id"


class LabelConflict(RouterError):
    status_code = 409
    default_code = "label_conflict"


class LabelExpired(RouterError):
    status_code = 410
    default_code = "label_expired"


class PayloadTooLarge(RouterError):
    status_code = 413
    default_code = "payload_too_large"


class UnsupportedContentType(RouterError):
    status_code = 415
    default_code = "unsupported_content_type"


class SignatureMismatch(RouterError):
    status_code = 422
    default_code = "signature_mismatch"


class ModelError(RouterError):
    status_code = 500
    default_code = "model_error"


class NotReady(RouterError):
    status_code = 503
    default_code = "not_ready"


class ModelTimeout(RouterError):
    status_code = 504
    default_code = "model_timeout"

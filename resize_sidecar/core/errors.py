"""Errors that map to an HTTP answer.

Lower layers raise them; ``resize_sidecar.web.answers`` renders them, for every route. Each class carries its whole
answer: its status, the short message a client may see, the reason it is logged and counted under, whether it is a
fault of ours (``report``: logged with a traceback) or of the client's, and the headers it adds (:meth:`headers`).
Standard library only: the middleware imports this module.
"""

from __future__ import annotations


class SidecarError(Exception):
    """Base for errors that become an HTTP response."""

    status: int = 500
    public_message: str = "Internal Server Error"
    report: bool = True
    #: Short machine-readable reason, used as a metrics label.
    reason: str = "internal"
    #: Seconds after which a retry may succeed (a ``Retry-After`` header), for temporary refusals only.
    retry_after: int | None = None

    def __init__(self, detail: str = "") -> None:
        super().__init__(detail or self.public_message)
        self.detail = detail or self.public_message

    def headers(self) -> dict[str, str]:
        """The headers the answer carries besides its body's: ``Retry-After`` for a temporary refusal."""
        return {} if self.retry_after is None else {"Retry-After": str(self.retry_after)}


class SettingsError(Exception):
    """A setting is missing or invalid; the message is one line that names it."""


class MalformedPathError(SidecarError, ValueError):
    """A path, key or spec that is not in the contract's one canonical form."""

    status, public_message, report, reason = 400, "Bad Request", False, "malformed"


class BadRequestError(SidecarError):
    """A request whose other parts are malformed: a query parameter, a body, a form field, a cursor."""

    status, public_message, report, reason = 400, "Bad Request", False, "bad_request"


class PolicyError(SidecarError):
    """A correctly signed request asks for something the settings forbid (too large an output, say)."""

    status, public_message, report, reason = 400, "Bad Request", False, "policy"


class UnauthorizedError(SidecarError):
    """No ``Authorization: Bearer …`` header on an API request."""

    status, public_message, report, reason = 401, "Unauthorized", False, "api_unauthenticated"

    def headers(self) -> dict[str, str]:
        """The challenge that names the scheme to authenticate with."""
        return {"WWW-Authenticate": 'Bearer realm="resize-sidecar"'}


class BadSignatureError(SidecarError):
    status, public_message, report, reason = 403, "Forbidden", False, "signature"


class WrongSecretError(SidecarError):
    """A bearer token that is not one of the API secrets."""

    status, public_message, report, reason = 403, "Forbidden", False, "api_secret"


class NotFoundError(SidecarError):
    status, public_message, report, reason = 404, "Not Found", False, "not_found"


class MethodNotAllowedError(SidecarError):
    """A method the route does not answer; ``allowed`` lists those it does."""

    status, public_message, report, reason = 405, "Method Not Allowed", False, "method"

    def __init__(self, detail: str = "", allowed: tuple[str, ...] = ("GET", "HEAD")) -> None:
        super().__init__(detail)
        self.allowed = allowed

    def headers(self) -> dict[str, str]:
        return {"Allow": ", ".join(self.allowed)}


class ConflictError(SidecarError):
    """The key is taken by another image."""

    status, public_message, report, reason = 409, "Conflict", False, "conflict"


class PayloadTooLargeError(SidecarError):
    """A request body over the upload cap."""

    status, public_message, report, reason = 413, "Payload Too Large", False, "body_too_large"


class UnsupportedMediaTypeError(SidecarError):
    """An uploaded body that is not an image of an allowed format."""

    status, public_message, report, reason = 415, "Unsupported Media Type", False, "media_type"


class SourceTooLargeError(SidecarError):
    """An original over the byte, pixel or frame limits (checked before decoding)."""

    status, public_message, report, reason = 422, "Unprocessable Entity", False, "source_limit"


class UnsupportedImageError(SidecarError):
    """An original that is not an image, or of a format whose loader is not allowed."""

    status, public_message, report, reason = 422, "Unprocessable Entity", False, "not_an_image"


class UndecodableImageError(SidecarError):
    """An original that is truncated or corrupt."""

    status, public_message, report, reason = 422, "Unprocessable Entity", False, "undecodable"


class InterlacedTooLargeError(SourceTooLargeError):
    """A progressive JPEG or interlaced PNG over the interlaced pixel limit.

    libvips cannot decode such an original strip by strip: it decodes the whole image into memory first, and no
    shrink-on-load applies, so it is refused from its header at a lower limit than other originals.
    """

    reason = "interlaced_limit"


class StorageError(SidecarError):
    """Storage answered with an error or could not be reached."""

    status, public_message, report, reason = 502, "Bad Gateway", True, "storage"


class StorageTimeoutError(StorageError):
    status, public_message, report, reason = 504, "Gateway Timeout", True, "storage_timeout"


class StorageConflictError(StorageError):
    """Storage cannot hold the key beside what it holds already: on local storage, a file where the key needs a
    folder, or a folder where it needs a file (S3 has no such keys)."""

    status, public_message, report, reason = 409, "Conflict", False, "storage_conflict"


class OverloadedError(SidecarError):
    """This machine is too busy to make the derivative now; nothing was read or made.

    Every transform slot stayed busy for the whole overload wait, or a concurrent miss for the same derivative
    held its lock for longer than a transform may take. A temporary refusal: the client may retry after
    ``Retry-After`` seconds, and no cache keeps the answer.
    """

    status, public_message, report, reason, retry_after = 503, "Service Unavailable", False, "overloaded", 2


class SourceChangedError(SidecarError):
    """The original was replaced while a derivative of it was made: what was made is not stored, and a retry makes
    it from the new original."""

    status, public_message, report, reason, retry_after = 503, "Service Unavailable", False, "source_changed", 1


class TransformTimeoutError(SidecarError):
    """A transform ran past the transform deadline and was stopped; nothing was stored.

    503 with ``Retry-After`` rather than 422: the limits checked from the header (bytes, pixels, frames,
    interlacing) are what bound the work an original can ask for, so an original within them that still runs out
    of time most likely met a busy or slow machine, and a later try can succeed. A 422 would call the original
    broken for what is a fault of ours; hence also ``report``: logged and counted as a server fault, so an original
    that fails every try is looked at.
    """

    status, public_message, report, reason, retry_after = 503, "Service Unavailable", True, "transform_timeout", 10

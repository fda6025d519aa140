"""What every stored object is written with, by kind: its Content-Type and its Cache-Control.

S3 keeps both with the object and answers them to nginx and CDNs (local storage keeps neither; nginx sets them):
so they are chosen here, once per kind of object, and every write asks :func:`write_headers`. Standard library only.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, NamedTuple

if TYPE_CHECKING:
    from resize_sidecar.core.settings import Settings

ObjectKind = Literal["derivative", "original", "incoming", "manifest", "readiness_probe", "check_object", "faces"]

# Objects that may be replaced under the same key: a cache must ask again before it answers with its copy.
_ASK_AGAIN = "no-cache"
# Objects no cache should keep at all.
_NO_STORE = "no-store"


class WriteHeaders(NamedTuple):
    """The headers an object is stored with, in the order :meth:`Storage.put` takes them."""

    content_type: str
    cache_control: str


@dataclass(frozen=True)
class _Policy:
    #: ``None``: an image, whose type the writer knows from its bytes or its format.
    content_type: str | None
    cache_control: Callable[[Settings], str]


_POLICIES: dict[ObjectKind, _Policy] = {
    # Derivatives never change under their signed URL (CACHE_CONTROL, a year and immutable by default).
    "derivative": _Policy(None, lambda settings: settings.cache_control),
    # An original can be deleted and uploaded again (ORIGINALS_CACHE_CONTROL, no-cache by default).
    "original": _Policy(None, lambda settings: settings.originals_cache_control),
    # An upload waiting for activation: it may be activated or replaced any moment.
    "incoming": _Policy(None, lambda settings: _ASK_AGAIN),
    # Apps and scripts read the upload manifest to find what was uploaded: it must never be served stale.
    "manifest": _Policy("application/json", lambda settings: _ASK_AGAIN),
    # Readiness's small object, written again every few seconds.
    "readiness_probe": _Policy("text/plain", lambda settings: _NO_STORE),
    # The object 'resize-sidecar check' and 'setup-bucket' write, read back and delete.
    "check_object": _Policy("application/octet-stream", lambda settings: _NO_STORE),
    # The faces found in an original, read by the sidecar alone and replaced when the original is.
    "faces": _Policy("application/json", lambda settings: _NO_STORE),
}


def write_headers(kind: ObjectKind, settings: Settings, content_type: str | None = None) -> WriteHeaders:
    """The Content-Type and Cache-Control of an object of ``kind``; images (derivatives, originals, uploads waiting
    for activation) pass their ``content_type``.

    Raises:
        ValueError: an image's type is missing, or a type is given for a kind whose type is fixed.
    """
    policy = _POLICIES[kind]
    if (policy.content_type is None) == (content_type is None):
        raise ValueError(f"a {kind} object's content type is {'fixed' if content_type else 'needed'}")
    return WriteHeaders(policy.content_type or content_type or "", policy.cache_control(settings))

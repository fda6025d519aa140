"""The faces in an original, for fill crops with the ``face`` gravity: found once per version of the original and
kept beside it, never looked for per request.

The detector is OpenCV's frontal-face Haar cascade (``haarcascade_frontalface_alt2.xml``), which the
``opencv-python-headless`` wheel carries: nothing is downloaded at run time. It looks at a copy of the original at
most :data:`DETECTION_SIDE` pixels on its longer side, made upright by :func:`~resize_sidecar.media.imaging.render`
(shrink-on-load, within the transform deadline), so its cost does not grow with the original's size.

What it found is stored as a small JSON object, ``.resize-sidecar/faces/{key}.json``, naming the version of the
original (:meth:`~resize_sidecar.media.storage.Storage.version`) and the detector it was found with: a replaced
original, or another detector, has its faces found again. Not as the original's own S3 metadata: writing that means
writing the original again, which changes its version and could undo a concurrent replacement.
"""

from __future__ import annotations

import json
import logging
import threading
from dataclasses import astuple
from importlib import metadata
from typing import TYPE_CHECKING

import prometheus_client

from resize_sidecar.core.errors import StorageError
from resize_sidecar.core.objects import WriteHeaders
from resize_sidecar.core.settings import ImageLimits
from resize_sidecar.core.signing import PRIVATE_PREFIX, DerivativeSpec
from resize_sidecar.media import imaging
from resize_sidecar.media.imaging import FaceBox, SourceInfo
from resize_sidecar.media.storage import Storage

if TYPE_CHECKING:
    import cv2

log = logging.getLogger(__name__)

FACE_DETECTIONS = prometheus_client.Counter(
    "resize_sidecar_face_detections", "Originals looked at for faces (once per version of each)."
)

#: Where the faces of the original ``key`` are kept: ``{FACES_PREFIX}{key}.json``.
FACES_PREFIX = PRIVATE_PREFIX + "faces/"
#: The longer side of the copy faces are looked for in: the cascade's smallest face, 20 pixels, is then a 24th of
#: it. The cascade's time grows with the pixels: 640 took about twice as long as 480 on the labelled set
#: (tests/media/portraits), and found nothing more there.
DETECTION_SIDE = 480
_CASCADE = "haarcascade_frontalface_alt2.xml"
#: Named in every stored result: results of another detector, or of another OpenCV, are not reused.
DETECTOR = f"opencv-python-headless {metadata.version('opencv-python-headless')} {_CASCADE}"
# How much the cascade's window grows from one pass over the copy to the next, and how many overlapping hits make
# a face. With 5 hits and a coarser step (1.15), a rock face in the shared corpus was taken for one.
_SCALE_STEP = 1.1
_NEIGHBOURS = 6
# Each classifier holds scratch buffers: one per thread, as the gthread workers render in several.
_classifiers = threading.local()


def detect(data: bytes, info: SourceInfo, limits: ImageLimits) -> tuple[FaceBox, ...]:
    """The frontal faces in an original, largest first, as fractions of its upright width and height.

    Raises:
        UndecodableImageError, TransformTimeoutError: as :func:`~resize_sidecar.media.imaging.render`.
    """
    # Imported when first needed: OpenCV takes 250 ms and 30 MB of every worker that imports it.
    import cv2
    import numpy

    FACE_DETECTIONS.inc()
    copy = imaging.render(data, DerivativeSpec(DETECTION_SIDE, DETECTION_SIDE), "jpg", limits, info)
    grey = cv2.imdecode(numpy.frombuffer(copy.body, numpy.uint8), cv2.IMREAD_GRAYSCALE)
    # Evens out lighting, which the cascade's features are sensitive to (a face in shade is otherwise missed).
    # imdecode answers None only for bytes it cannot read, never for a JPEG libvips has just written.
    grey = cv2.equalizeHist(grey)  # type: ignore[arg-type]
    found = _classifier().detectMultiScale(grey, scaleFactor=_SCALE_STEP, minNeighbors=_NEIGHBOURS)
    boxes = [
        FaceBox(*_rounded((left / copy.width, top / copy.height, width / copy.width, height / copy.height)))
        for left, top, width, height in found
    ]
    return tuple(sorted(boxes, key=lambda box: box.width * box.height, reverse=True))


def _classifier() -> cv2.CascadeClassifier:
    import cv2

    classifier: cv2.CascadeClassifier | None = getattr(_classifiers, "classifier", None)
    if classifier is None:
        # One thread per detection, as for libvips: the transform slots bound how many run at once.
        cv2.setNumThreads(1)
        classifier = cv2.CascadeClassifier(cv2.data.haarcascades + _CASCADE)  # type: ignore[attr-defined]
        _classifiers.classifier = classifier
    return classifier


def faces_key(key: str) -> str:
    """The storage key of what was found in the original ``key``."""
    return f"{FACES_PREFIX}{key}.json"


class Faces:
    """The faces of originals: read from storage when found before in the same version, else found and stored."""

    def __init__(self, storage: Storage, headers: WriteHeaders, limits: ImageLimits) -> None:
        self.storage = storage
        self.headers = headers
        self.limits = limits

    def of(self, key: str, data: bytes, version: str, info: SourceInfo) -> tuple[FaceBox, ...]:
        """The faces in the original ``key`` whose bytes ``data`` are at ``version``; ``info`` is their probe.

        A failure to read or write what was found before costs a detection, never the request.

        Raises:
            UndecodableImageError, TransformTimeoutError: as :func:`detect`.
        """
        stored_at = faces_key(key)
        try:
            found = _parse(self.storage.get(stored_at), version)
        except StorageError as error:
            log.warning("could not read %s: %s", stored_at, error.detail)
            found = None
        if found is not None:
            return found
        boxes = detect(data, info, self.limits)
        record = {"version": version, "detector": DETECTOR, "faces": [list(astuple(box)) for box in boxes]}
        try:
            self.storage.put(stored_at, json.dumps(record).encode(), *self.headers)
        except StorageError as error:
            log.warning("could not store %s: %s", stored_at, error.detail)
        return boxes


def _parse(stored: bytes | None, version: str) -> tuple[FaceBox, ...] | None:
    """What a stored record says, if it was found in ``version`` by this detector; else ``None``."""
    if stored is None:
        return None
    try:
        record = json.loads(stored)
        if record["version"] != version or record["detector"] != DETECTOR:
            return None
        return tuple(FaceBox(*(float(value) for value in box)) for box in record["faces"])
    except (ValueError, KeyError, TypeError):
        # Written by something else, or cut short: found again, and written over.
        return None


def _rounded(values: tuple[float, float, float, float]) -> tuple[float, float, float, float]:
    # A ten-thousandth of a side is under a pixel of a derivative up to 10,000 pixels, and the result is stored as
    # it is used: a crop made from stored faces is the one made when they were found.
    left, top, width, height = (round(value, 4) for value in values)
    return left, top, width, height

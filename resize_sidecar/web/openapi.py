"""The OpenAPI 3 description of the media API (``resize_sidecar.web.api``), served at ``/api/openapi.json``.

Built from the settings, so that the limits it states are the ones in force. Standard library only.
"""

from __future__ import annotations

from typing import Any

from resize_sidecar import __version__
from resize_sidecar.core.formats import FORMATS
from resize_sidecar.core.settings import Settings
from resize_sidecar.core.signing import MAX_KEY_BYTES


def document(settings: Settings) -> dict[str, Any]:
    """The OpenAPI 3.0 document of the routes under ``/api/``."""
    key = _path_parameter("key", "The original's storage key, percent-encoded UTF-8 ('/' may stay as it is).")
    paths = {
        "/images": {
            "get": _operation(
                "listImages",
                "Originals in key order (never derivatives; uploads only when the prefix starts with the incoming "
                "prefix), one page at a time.",
                [
                    _query("prefix", {"type": "string", "maxLength": MAX_KEY_BYTES}, "Only keys starting with this."),
                    _query(
                        "match",
                        {"type": "string", "maxLength": 256},
                        "A glob over the whole key: '*' (crossing '/'), '?', '[...]'.",
                    ),
                    _query("limit", {"type": "integer", "minimum": 1, "maximum": 1000, "default": 100}, "Page size."),
                    _query("cursor", {"type": "string"}, "The cursor of the previous page."),
                ],
                {200: _json("Listing")},
            ),
            "post": _operation(
                "uploadImage",
                "Store an image under the incoming prefix, re-encoded, with its preset derivatives. Its type is read "
                "from its bytes, never from a name or header.",
                [_query("key", {"type": "string", "minLength": 1}, "The key to store it at, when allowed.")],
                {
                    201: _json("Upload"),
                    409: _error("The key is taken."),
                    413: _error("Over a size or pixel limit."),
                    415: _error("Not an image of an allowed format."),
                    422: _error("Truncated or corrupt."),
                    503: _error("Busy: try again after Retry-After seconds."),
                },
                request_body={
                    "required": True,
                    "content": {
                        "multipart/form-data": {
                            "schema": {
                                "type": "object",
                                "required": ["file"],
                                "properties": {"file": {"type": "string", "format": "binary"}},
                            }
                        },
                        "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
                    },
                },
            ),
        },
        "/images/{key}": {
            "delete": _operation(
                "deleteImage",
                "Delete the original and every derivative of it.",
                [key],
                {200: _json("Deletion"), 404: _error("No such original or derivatives.")},
            )
        },
        "/images/{key}/activate": {
            "post": _operation(
                "activateImage",
                "Move an upload and its derivatives from the incoming prefix to the key; idempotent.",
                [key],
                {
                    200: _json("Activation"),
                    404: _error("No such upload or image."),
                    409: _error("Another image is stored at the key."),
                },
            )
        },
        "/images/{key}/meta": {
            "get": _operation(
                "describeImage",
                "Size, format, frames, alpha, orientation, colour profile, camera and date, BlurHash.",
                [key, _query("gps", {"type": "integer", "enum": [0, 1], "default": 0}, "1: add the GPS location.")],
                {
                    200: _json("Meta"),
                    404: _error("No such original."),
                    422: _error("The original is not an allowed image, or is over a limit."),
                    503: _error("Busy: try again after Retry-After seconds."),
                },
            )
        },
        "/images/{key}/url": {
            "get": _operation(
                "temporaryURL",
                "A URL to the original, or to a private derivative of it, that works without the API secret until it"
                " expires.",
                [
                    key,
                    _query(
                        "expires",
                        {"type": "integer", "minimum": 1, "maximum": settings.temp_url_max_seconds},
                        "Lifetime in seconds.",
                    ),
                    _query(
                        "derivative",
                        {"type": "string"},
                        "A private derivative's URL instead, named {spec}.{format} (400x300-fill.webp, thumb.jpg).",
                    ),
                ],
                {200: _json("TemporaryURL"), 404: _error("No such original.")},
            )
        },
        "/files/{key}": {
            "get": _operation(
                "temporaryFile",
                "The original, through a temporary URL.",
                [
                    key,
                    _query("expires", {"type": "integer", "minimum": 0}, "Unix time it expires.", required=True),
                    _query("sig", {"type": "string"}, "Its signature.", required=True),
                ],
                {
                    200: {
                        "description": "The original.",
                        "content": {
                            "image/*": {"schema": {"type": "string", "format": "binary"}},
                            "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
                        },
                    },
                    404: _error("No such original."),
                    422: _error("The original is over the size limit."),
                },
                secured=False,
            )
        },
        "/archive": {
            "get": _operation(
                "archive",
                "A zip of originals, or of one derivative of each, streamed. Images that cannot be read are left "
                "out and named in ERRORS.txt.",
                [
                    _query("keys", {"type": "string"}, "Keys separated by commas."),
                    _query(
                        "key",
                        {"type": "array", "items": {"type": "string"}},
                        "A key (repeat it; for keys with commas).",
                    ),
                    _query("match", {"type": "string", "maxLength": 256}, "A glob over keys instead of keys."),
                    _query("prefix", {"type": "string", "maxLength": MAX_KEY_BYTES}, "With match: keys under this."),
                    _query("spec", {"type": "string"}, "A spec or preset: derivatives instead of originals."),
                    _query("fmt", {"type": "string", "enum": list(FORMATS)}, "Their format (default jpg)."),
                ],
                {
                    200: {
                        "description": f"At most {settings.archive_max_files} images and "
                        f"{settings.archive_max_bytes} bytes.",
                        "content": {"application/zip": {"schema": {"type": "string", "format": "binary"}}},
                    },
                    404: _error("A named original does not exist, or nothing matches."),
                },
            )
        },
        "/openapi.json": {
            "get": _operation(
                "openapi",
                "This document.",
                [],
                {200: {"description": "OpenAPI 3.0", "content": {"application/json": {"schema": {"type": "object"}}}}},
                secured=False,
            )
        },
    }
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "resize-sidecar media API",
            "version": __version__,
            "description": "Upload, activate, list, describe, share, archive and delete images. Send "
            "'Authorization: Bearer {API_SECRET}'.",
        },
        "servers": [{"url": "/api"}],
        "security": [{"apiSecret": []}],
        "paths": paths,
        "components": {"securitySchemes": {"apiSecret": {"type": "http", "scheme": "bearer"}}, "schemas": _SCHEMAS},
    }


def _operation(
    operation_id: str,
    summary: str,
    parameters: list[dict[str, Any]],
    responses: dict[int, dict[str, Any]],
    *,
    request_body: dict[str, Any] | None = None,
    secured: bool = True,
) -> dict[str, Any]:
    """One operation, with the answers every operation may give added to its own."""
    common = {400: _error("A malformed key or parameter.")}
    if secured:
        common |= {401: _error("No bearer token."), 403: _error("A wrong bearer token.")}
    else:
        common |= {403: _error("A wrong or expired signature.")}
    operation: dict[str, Any] = {
        "operationId": operation_id,
        "summary": summary,
        "parameters": parameters,
        "responses": {str(status): answer for status, answer in sorted((common | responses).items())},
    }
    if request_body is not None:
        operation["requestBody"] = request_body
    if not secured:
        operation["security"] = []
    return operation


def _path_parameter(name: str, description: str) -> dict[str, Any]:
    schema = {"type": "string", "minLength": 1, "maxLength": MAX_KEY_BYTES}
    return {"name": name, "in": "path", "required": True, "description": description, "schema": schema}


def _query(name: str, schema: dict[str, Any], description: str, *, required: bool = False) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": required, "description": description, "schema": schema}


def _json(schema: str) -> dict[str, Any]:
    return {
        "description": schema,
        "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{schema}"}}},
    }


def _error(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }


def _object(properties: dict[str, Any], *, required: list[str] | None = None) -> dict[str, Any]:
    return {"type": "object", "required": required or list(properties), "properties": properties}


_STRING = {"type": "string"}
_INTEGER = {"type": "integer"}
_URLS = {"type": "object", "additionalProperties": _STRING, "description": "Signed derivative URLs by preset name."}
_NULLABLE_STRING = {"type": "string", "nullable": True}

_SCHEMAS: dict[str, Any] = {
    "Error": _object({"error": _STRING, "detail": _STRING}, required=["error"]),
    "Upload": _object(
        {
            "key": _STRING,
            "incoming_key": _STRING,
            "width": _INTEGER,
            "height": _INTEGER,
            "pages": _INTEGER,
            "format": {"type": "string", "enum": list(FORMATS)},
            "content_type": _STRING,
            "bytes": _INTEGER,
            "urls": _URLS,
        }
    ),
    "Activation": _object(
        {"key": _STRING, "activated": {"type": "boolean"}, "moved_derivatives": _INTEGER, "urls": _URLS}
    ),
    "Listing": _object(
        {
            "items": {
                "type": "array",
                "items": _object(
                    {"key": _STRING, "size": _INTEGER, "last_modified": {"type": "string", "format": "date-time"}}
                ),
            },
            "cursor": {**_NULLABLE_STRING, "description": "Pass it back for the next page; null at the end."},
        }
    ),
    "Meta": _object(
        {
            "key": _STRING,
            "width": _INTEGER,
            "height": _INTEGER,
            "pages": _INTEGER,
            "format": {"type": "string", "enum": list(FORMATS)},
            "has_alpha": {"type": "boolean"},
            "orientation": {"type": "integer", "minimum": 1, "maximum": 8},
            "icc_profile": _NULLABLE_STRING,
            "bytes": _INTEGER,
            "exif": _object({"camera": _NULLABLE_STRING, "taken_at": _NULLABLE_STRING}),
            "blurhash": _STRING,
            "gps": {
                "type": "object",
                "nullable": True,
                "required": ["latitude", "longitude"],
                "properties": {"latitude": {"type": "number"}, "longitude": {"type": "number"}},
                "description": "Only with gps=1; null when the original has no location.",
            },
        },
        required=[
            "key",
            "width",
            "height",
            "pages",
            "format",
            "has_alpha",
            "orientation",
            "icc_profile",
            "bytes",
            "exif",
            "blurhash",
        ],
    ),
    "TemporaryURL": _object(
        {
            "key": _STRING,
            "url": {**_STRING, "description": "A path under this API's base, e.g. /api/files/..."},
            "expires": {**_INTEGER, "description": "Unix time."},
        }
    ),
    "Deletion": _object({"key": _STRING, "deleted_original": {"type": "boolean"}, "deleted_derivatives": _INTEGER}),
}

"""S3 through boto3: the object storage, and the bucket configuration calls ``setup-bucket`` makes.

The only module that imports boto3 or botocore: their exceptions become
:class:`~resize_sidecar.core.errors.StorageError` (and its timeout subclass) here, so no caller handles a library
exception.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import logging
import os
import threading
from datetime import UTC
from typing import TYPE_CHECKING, Any

import boto3
from botocore import UNSIGNED
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, ConnectTimeoutError, ReadTimeoutError

from resize_sidecar.core.errors import MalformedPathError, SourceTooLargeError, StorageError, StorageTimeoutError
from resize_sidecar.core.objects import write_headers
from resize_sidecar.media.storage import Metadata, StoredBytes, StoredObject, check_key, check_prefix, read_capped

if TYPE_CHECKING:
    from resize_sidecar.core.settings import Settings

logger = logging.getLogger(__name__)

#: S3 lists and deletes at most this many keys per request.
_S3_BATCH = 1000
#: Enough for a threaded worker's concurrent requests; a sync worker uses one connection.
_S3_POOL_CONNECTIONS = 32


class S3Storage:
    """Objects in an S3 bucket (or an S3-compatible store), keys under an optional prefix.

    One boto3 client per storage and process, made on first use: clients are thread-safe, but connection pools must
    not cross a fork, and gunicorn forks its workers after importing the app.
    """

    def __init__(
        self,
        bucket: str,
        *,
        prefix: str = "",
        endpoint_url: str = "",
        region: str = "us-east-1",
        connect_timeout: float = 2.0,
        read_timeout: float = 5.0,
        max_attempts: int = 2,
    ) -> None:
        self.bucket = bucket
        self.prefix = prefix
        self.endpoint_url = endpoint_url
        self.region = region
        self._config = Config(
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            # total_max_attempts counts the first call; botocore's max_attempts would count retries only.
            retries={"mode": "standard", "total_max_attempts": max_attempts},
            max_pool_connections=_S3_POOL_CONNECTIONS,
            # Since botocore 1.36 every upload carries a CRC32 checksum by default, which MinIO, Ceph, R2 and other
            # S3-compatible stores have refused or mishandled; ask for checksums only where S3 requires them.
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
            # Presigned URLs would otherwise be SigV2 for custom endpoints, which AWS no longer accepts.
            signature_version="s3v4",
            # Virtual-host addressing needs DNS for BUCKET.host; custom endpoints are addressed by path.
            s3={"addressing_style": "path"} if endpoint_url else None,
        )
        self._pid_and_client: tuple[int, Any] | None = None

    @classmethod
    def from_settings(cls, settings: Settings, bucket: str | None = None) -> S3Storage:
        """The bucket of the settings (or ``bucket``), with their prefix, endpoint, region, timeouts and attempts."""
        return cls(
            settings.s3_bucket if bucket is None else bucket,
            prefix=settings.s3_prefix,
            endpoint_url=settings.s3_endpoint_url,
            region=settings.s3_region,
            connect_timeout=settings.s3_connect_timeout,
            read_timeout=settings.s3_read_timeout,
            max_attempts=settings.s3_max_attempts,
        )

    def __repr__(self) -> str:
        return f"S3Storage(bucket={self.bucket!r}, prefix={self.prefix!r}, endpoint_url={self.endpoint_url!r})"

    def get(self, key: str, max_bytes: int | None = None) -> bytes | None:
        """See :meth:`Storage.get`."""
        found = self.get_versioned(key, max_bytes)
        return None if found is None else found.data

    def get_versioned(self, key: str, max_bytes: int | None = None) -> StoredBytes | None:
        """See :meth:`Storage.get_versioned`: the ETag of the GET that read the bytes."""
        check_key(key)
        # Limit messages reach the client (422): they name the key it asked for, never the bucket or its prefix.
        try:
            response = self.client().get_object(Bucket=self.bucket, Key=self.prefix + key)
            body = response["Body"]
            try:
                announced = response.get("ContentLength")
                if max_bytes is not None and announced is not None and announced > max_bytes:
                    raise SourceTooLargeError(f"{key!r} has {announced} bytes, more than {max_bytes}")
                data = read_capped(body.read, max_bytes, repr(key))
            finally:
                # Unread bytes make the connection unusable; closing drops it instead of returning it to the pool.
                body.close()
        except (BotoCoreError, ClientError) as error:
            if self._reads_as_absent(error, key):
                return None
            raise self._error("get", key, error) from error
        if announced is not None and len(data) != announced:
            raise StorageError(f"{self._where(key)}: got {len(data)} bytes of the {announced} announced")
        return StoredBytes(data, str(response.get("ETag", "")))

    def version(self, key: str) -> str | None:
        """See :meth:`Storage.version`: the ETag, from a HEAD."""
        response = self._head(key, "version")
        return None if response is None else str(response.get("ETag", ""))

    def head(self, key: str) -> Metadata | None:
        """See :meth:`Storage.head`: the user metadata (``x-amz-meta-*``), from a HEAD."""
        response = self._head(key, "head")
        return None if response is None else dict(response.get("Metadata", {}))

    def _head(self, key: str, operation: str) -> dict[str, Any] | None:
        check_key(key)
        try:
            response: dict[str, Any] = self.client().head_object(Bucket=self.bucket, Key=self.prefix + key)
        except (BotoCoreError, ClientError) as error:
            if self._reads_as_absent(error, key):
                return None
            raise self._error(operation, key, error) from error
        return response

    def put(
        self, key: str, data: bytes, content_type: str, cache_control: str, metadata: Metadata | None = None
    ) -> None:
        """See :meth:`Storage.put`. A single PUT is all or nothing on S3."""
        check_key(key)
        try:
            self.client().put_object(
                Bucket=self.bucket,
                Key=self.prefix + key,
                Body=data,
                ContentType=content_type,
                CacheControl=cache_control,
                Metadata=dict(metadata or {}),
            )
        except (BotoCoreError, ClientError) as error:
            raise self._error("put", key, error) from error

    def put_if_absent(
        self, key: str, data: bytes, content_type: str, cache_control: str, metadata: Metadata | None = None
    ) -> bool:
        """See :meth:`Storage.put_if_absent`: a conditional PUT (``If-None-Match: *``).

        A store without conditional writes ignores the header and overwrites: harmless for a derivative (the same
        URL makes the same bytes), not for anything else.
        """
        check_key(key)
        headers = (content_type, cache_control, dict(metadata or {}))
        written = self._put_unless_exists(key, data, *headers, last_try=False)
        if written is None:
            # S3 answers 409 ConditionalRequestConflict while a concurrent write to the key is in flight and asks
            # the client to retry; once is enough to learn who won.
            written = self._put_unless_exists(key, data, *headers, last_try=True)
        return bool(written)

    def _put_unless_exists(
        self, key: str, data: bytes, content_type: str, cache_control: str, metadata: dict[str, str], *, last_try: bool
    ) -> bool | None:
        """``True`` if written, ``False`` if the key exists, ``None`` on a conflict worth one more try."""
        try:
            self.client().put_object(
                Bucket=self.bucket,
                Key=self.prefix + key,
                Body=data,
                ContentType=content_type,
                CacheControl=cache_control,
                Metadata=metadata,
                IfNoneMatch="*",
            )
        except (BotoCoreError, ClientError) as error:
            status, code = _status_and_code(error)
            if status == 412 or code == "PreconditionFailed":
                return False
            if not last_try and (status == 409 or code == "ConditionalRequestConflict"):
                return None
            raise self._error("put_if_absent", key, error) from error
        return True

    def exists(self, key: str) -> bool:
        """See :meth:`Storage.exists`."""
        return self.version(key) is not None

    def delete(self, key: str) -> None:
        """See :meth:`Storage.delete`. S3 answers 204 for a missing key too."""
        check_key(key)
        try:
            self.client().delete_object(Bucket=self.bucket, Key=self.prefix + key)
        except (BotoCoreError, ClientError) as error:
            raise self._error("delete", key, error) from error

    def delete_prefix(self, prefix: str, *, nested: bool = True) -> int:
        """See :meth:`Storage.delete_prefix`: one listing and one DeleteObjects request per 1000 keys; not
        ``nested``, the listing has ``/`` as its delimiter, so S3 leaves out the keys below the next ``/``."""
        check_prefix(prefix)
        if not prefix:
            raise MalformedPathError("refusing to delete with an empty prefix (that is every object)")
        params: dict[str, Any] = {"Bucket": self.bucket, "Prefix": self.prefix + prefix, "MaxKeys": _S3_BATCH}
        if not nested:
            params["Delimiter"] = "/"
        deleted = 0
        try:
            client = self.client()
            while True:
                page = client.list_objects_v2(**params)
                objects = [{"Key": item["Key"]} for item in page.get("Contents", ())]
                if objects:
                    answer = client.delete_objects(Bucket=self.bucket, Delete={"Objects": objects, "Quiet": True})
                    failed = answer.get("Errors", [])
                    if failed:
                        first = failed[0]
                        raise StorageError(
                            f"S3 delete_prefix s3://{self.bucket}/{self.prefix}{prefix}: {len(failed)} of "
                            f"{len(objects)} objects not deleted, e.g. {first.get('Key')!r}: {first.get('Code')}"
                        )
                    deleted += len(objects)
                if not page.get("IsTruncated"):
                    return deleted
                params["ContinuationToken"] = page["NextContinuationToken"]
        except (BotoCoreError, ClientError) as error:
            raise self._error("delete_prefix", prefix, error) from error

    def presigned_url(self, key: str, seconds: int) -> str | None:
        """See :meth:`Storage.presigned_url`: a presigned GET (SigV4, so at most seven days).

        Raises:
            MalformedPathError: an unsafe key.
        """
        check_key(key)
        url: str = self.client().generate_presigned_url(
            "get_object", Params={"Bucket": self.bucket, "Key": self.prefix + key}, ExpiresIn=seconds
        )
        return url

    def check(self) -> None:
        """See :meth:`Storage.check`: HEAD on the bucket (needs ``s3:ListBucket``, as :meth:`list` does)."""
        try:
            self.client().head_bucket(Bucket=self.bucket)
        except (BotoCoreError, ClientError) as error:
            if _status_and_code(error)[0] == 404:
                raise StorageError(f"S3 bucket {self.bucket!r} does not exist") from error
            raise self._error("check", "", error) from error

    def list(self, prefix: str = "", *, start_after: str = "", limit: int = 1000) -> list[StoredObject]:
        """See :meth:`Storage.list`."""
        check_prefix(prefix)
        found: list[StoredObject] = []
        params: dict[str, Any] = {"Bucket": self.bucket, "Prefix": self.prefix + prefix}
        if start_after:
            params["StartAfter"] = self.prefix + start_after
        try:
            while len(found) < limit:
                page = self.client().list_objects_v2(MaxKeys=min(_S3_BATCH, limit - len(found)), **params)
                found.extend(
                    StoredObject(item["Key"][len(self.prefix) :], item["Size"], item["LastModified"].astimezone(UTC))
                    for item in page.get("Contents", ())
                )
                if not page.get("IsTruncated"):
                    break
                params["ContinuationToken"] = page["NextContinuationToken"]
        except (BotoCoreError, ClientError) as error:
            raise self._error("list", prefix, error) from error
        return found

    def client(self) -> Any:
        pid_and_client = self._pid_and_client
        if pid_and_client is not None and pid_and_client[0] == os.getpid():
            return pid_and_client[1]
        with _session_lock:
            pid_and_client = self._pid_and_client
            if pid_and_client is None or pid_and_client[0] != os.getpid():
                client = _session().client(
                    "s3", region_name=self.region, endpoint_url=self.endpoint_url or None, config=self._config
                )
                client.meta.events.register("before-call.s3.DeleteObjects", _add_content_md5)
                pid_and_client = self._pid_and_client = (os.getpid(), client)
        return pid_and_client[1]

    def _where(self, key: str) -> str:
        return f"s3://{self.bucket}/{self.prefix}{key}"

    def _reads_as_absent(self, error: Exception, key: str) -> bool:
        status, code = _status_and_code(error)
        if code == "NoSuchBucket":
            return False
        if status == 404 or code in ("NoSuchKey", "NotFound"):
            return True
        if status == 403 or code == "AccessDenied":
            # S3 answers 403 instead of 404 for a missing key when the caller may not list the bucket.
            logger.warning(
                "S3 refused to read %s (403); treating it as absent. Grant s3:ListBucket to get 404s.", self._where(key)
            )
            return True
        # Longer than S3's 1024-byte key limit once the prefix is added: it cannot exist.
        return code == "KeyTooLongError"

    def _error(self, operation: str, key: str, error: Exception) -> StorageError:
        where = f"S3 {operation} {self._where(key)}"
        if isinstance(error, ConnectTimeoutError | ReadTimeoutError):
            return StorageTimeoutError(f"{where}: timed out ({error})")
        if isinstance(error, ClientError):
            status, code = _status_and_code(error)
            message = error.response.get("Error", {}).get("Message", "")
            return StorageError(f"{where}: HTTP {status} {code} {message}".rstrip())
        return StorageError(f"{where}: {error}")


# One boto3 session per process, shared by every S3Storage: a session loads botocore's service models (about 0.1 s)
# and is not safe to make clients from in several threads at once, hence the lock.
_session_lock = threading.Lock()
_pid_and_session: tuple[int, boto3.session.Session] | None = None


def _session() -> boto3.session.Session:
    """The process's session; call with ``_session_lock`` held."""
    global _pid_and_session
    if _pid_and_session is None or _pid_and_session[0] != os.getpid():
        _pid_and_session = (os.getpid(), boto3.session.Session())
    return _pid_and_session[1]


def _status_and_code(error: Exception) -> tuple[int | None, str]:
    if not isinstance(error, ClientError):
        return None, ""
    status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return status, str(error.response.get("Error", {}).get("Code", ""))


def _add_content_md5(params: dict[str, Any], **_: Any) -> None:
    """Give DeleteObjects the Content-MD5 header that S3's API reference marks required.

    Since botocore 1.36 it sends a CRC32 checksum instead, and several S3-compatible stores answer
    ``MissingContentMD5`` (see CERT-Polska/karton#269); AWS accepts both headers together.
    """
    body = params.get("body")
    if isinstance(body, bytes) and "Content-MD5" not in params["headers"]:
        digest = hashlib.md5(body, usedforsecurity=False).digest()
        params["headers"]["Content-MD5"] = base64.b64encode(digest).decode("ascii")


#: Error codes S3 answers for a missing configuration of each kind.
_MISSING = (
    "NoSuchBucketPolicy",
    "NoSuchPublicAccessBlockConfiguration",
    "NoSuchWebsiteConfiguration",
    "NoSuchLifecycleConfiguration",
    "NoSuchCORSConfiguration",
)


#: Answers of a store that lacks a kind of bucket configuration: NotImplemented (501) from MinIO, 405
#: MethodNotAllowed from Ceph's RADOS Gateway for website calls while its static websites are off.
_UNSUPPORTED_STATUSES = (405, 501)
_UNSUPPORTED_CODES = ("NotImplemented", "MethodNotAllowed")


class UnsupportedByStoreError(StorageError):
    """An S3-compatible store without a kind of bucket configuration (MinIO has no public access block, say)."""


class BucketAdmin:
    """Configuration calls on one S3 bucket, with the storage's client (endpoint, credentials, timeouts)."""

    def __init__(self, settings: Settings, bucket: str) -> None:
        storage = S3Storage.from_settings(settings, bucket)
        self.bucket = bucket
        self._check_headers = write_headers("check_object", settings)
        self.region = settings.s3_region
        self._endpoint_url = storage.endpoint_url or None
        self._client = storage.client()

    def call(self, operation: str, **params: Any) -> dict[str, Any]:
        """One S3 call on the bucket.

        Raises:
            UnsupportedByStoreError: the store does not have this kind of call (405, 501 or NotImplemented).
            StorageError: S3 refused it or could not be reached.
        """
        try:
            answer: dict[str, Any] = getattr(self._client, operation)(Bucket=self.bucket, **params)
        except (BotoCoreError, ClientError) as error:
            message = f"S3 {operation} on bucket {self.bucket!r}: {_describe(error)}"
            status, code = _status_and_code(error)
            if status in _UNSUPPORTED_STATUSES or code in _UNSUPPORTED_CODES:
                raise UnsupportedByStoreError(message) from error
            raise StorageError(message) from error
        answer.pop("ResponseMetadata", None)
        return answer

    def read(self, operation: str) -> dict[str, Any] | None:
        """A configuration of the bucket, or ``None`` where it has none.

        Raises:
            UnsupportedByStoreError: the store does not have this kind of configuration.
            StorageError: as :meth:`call`.
        """
        try:
            return self.call(operation)
        except StorageError as error:
            if isinstance(error.__cause__, ClientError) and _status_and_code(error.__cause__)[1] in _MISSING:
                return None
            raise

    def try_object(self, key: str, *, anonymous_read: bool) -> None:
        """Write a small object at ``key`` (the whole key, any storage prefix included), read it back, and with
        ``anonymous_read`` read it once more without credentials; then delete it.

        What a store accepts as configuration is no proof of what it then does: Ceph's RADOS Gateway takes a public
        access block that blocks public ACLs and from then on refuses every write, the owner's included.

        Raises:
            StorageError: a step failed; the message names it.
        """
        data = os.urandom(16)
        content_type, cache_control = self._check_headers
        self.call("put_object", Key=key, Body=data, ContentType=content_type, CacheControl=cache_control)
        try:
            body = self.call("get_object", Key=key)["Body"]
            with contextlib.closing(body):
                if body.read() != data:
                    raise StorageError(f"S3 bucket {self.bucket!r}: {key!r} read back other bytes than were written")
            if anonymous_read:
                self._read_anonymously(key)
        finally:
            self.call("delete_object", Key=key)

    def _read_anonymously(self, key: str) -> None:
        with _session_lock:
            client = _session().client(
                "s3",
                region_name=self.region,
                endpoint_url=self._endpoint_url,
                config=self._client.meta.config.merge(Config(signature_version=UNSIGNED)),
            )
        try:
            # A GET, not a HEAD: moto's server answers an anonymous HEAD 403 whatever the policy says.
            client.get_object(Bucket=self.bucket, Key=key)["Body"].close()
        except (BotoCoreError, ClientError) as error:
            raise StorageError(
                f"S3 bucket {self.bucket!r}: a read of {key!r} without credentials failed ({_describe(error)}), so "
                "the bucket policy does not make derivatives public (an account-wide public access block?)"
            ) from error

    def exists(self) -> bool:
        """Whether the bucket exists and is ours.

        Raises:
            StorageError: it exists but access is refused (another account's), or S3 could not be reached.
        """
        try:
            self._client.head_bucket(Bucket=self.bucket)
        except ClientError as error:
            if error.response.get("ResponseMetadata", {}).get("HTTPStatusCode") == 404:
                return False
            raise StorageError(f"S3 bucket {self.bucket!r}: {_describe(error)} (another account's?)") from error
        except BotoCoreError as error:
            raise StorageError(f"S3 bucket {self.bucket!r}: {error}") from error
        return True

    def create(self) -> None:
        """Create the bucket in the settings' region.

        Raises:
            StorageError: as :meth:`call`.
        """
        # us-east-1 is the default location and S3 refuses it as an explicit constraint.
        where = {} if self.region == "us-east-1" else {"CreateBucketConfiguration": {"LocationConstraint": self.region}}
        self.call("create_bucket", **where)


def _describe(error: BotoCoreError | ClientError) -> str:
    if isinstance(error, ClientError):
        details = error.response.get("Error", {})
        # Some stores (Ceph's RADOS Gateway) send no message: botocore then reads it as None.
        return f"{details.get('Code') or ''} {details.get('Message') or ''}".strip()
    return str(error)

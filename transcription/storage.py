"""Answer audio in MongoDB GridFS: the only place audio is kept, and only until transcribed."""

import os
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import BinaryIO

import gridfs
from bson import ObjectId
from bson.errors import InvalidId
from django.conf import settings
from pymongo import MongoClient
from pymongo.errors import PyMongoError

BUCKET = "fs"
CHUNK_SIZE = 1024 * 1024  # fewer, larger chunks: each chunk is one insert

_clients: dict[tuple[int, str, int], MongoClient] = {}


class StorageUnavailable(Exception):
    """MongoDB could not be reached or refused the operation."""


class AudioNotFound(Exception):
    """No audio is stored under that id (deleted, expired, or never stored)."""


def get_database(*, timeout_ms: int | None = None):
    """Return the audio database, with a client made in (and only used by) this process."""
    timeout_ms = timeout_ms or settings.MONGODB_TIMEOUT_MS
    # pymongo clients must not cross a fork: gunicorn and qcluster both fork workers.
    key = (os.getpid(), settings.MONGODB_URI, timeout_ms)
    client = _clients.get(key)
    if client is None:
        client = MongoClient(
            settings.MONGODB_URI,
            serverSelectionTimeoutMS=timeout_ms,
            connectTimeoutMS=timeout_ms,
            socketTimeoutMS=timeout_ms if timeout_ms < settings.MONGODB_TIMEOUT_MS else None,
            tz_aware=True,
        )
        _clients[key] = client
    return client[settings.MONGODB_DB]


def ping(*, timeout_ms: int | None = None) -> None:
    """Raise StorageUnavailable unless MongoDB answers (within ``timeout_ms``, if given)."""
    with mongo_errors():
        get_database(timeout_ms=timeout_ms).command("ping")


def _bucket() -> gridfs.GridFSBucket:
    return gridfs.GridFSBucket(get_database(), bucket_name=BUCKET, chunk_size_bytes=CHUNK_SIZE)


@contextmanager
def mongo_errors() -> Iterator[None]:
    """Turn any pymongo failure into StorageUnavailable."""
    try:
        yield
    except PyMongoError as exc:
        raise StorageUnavailable(f"MongoDB is unavailable: {exc}") from exc


def _object_id(file_id: str) -> ObjectId:
    try:
        return ObjectId(file_id)
    except (InvalidId, TypeError):
        raise AudioNotFound(file_id) from None


def store_audio(source: BinaryIO | bytes, *, metadata: dict, content_type: str) -> str:
    """Store one recording with the caller's metadata; return its GridFS id."""
    metadata = metadata | {
        "upload_date": datetime.now(UTC),
        "content_type": content_type,
    }
    with mongo_errors():
        # The name is ours, never the uploaded file's name: the metadata says whose it is.
        return str(_bucket().upload_from_stream("recording", source, metadata=metadata))


def get_audio(file_id: str) -> bytes:
    """Return the stored audio bytes."""
    with mongo_errors():
        try:
            return _bucket().open_download_stream(_object_id(file_id)).read()
        except gridfs.errors.NoFile:
            raise AudioNotFound(file_id) from None


def audio_exists(file_id: str) -> bool:
    try:
        oid = _object_id(file_id)
    except AudioNotFound:
        return False
    with mongo_errors():
        return get_database()[f"{BUCKET}.files"].count_documents({"_id": oid}, limit=1) == 1


def delete_audio(file_id: str) -> bool:
    """Delete the audio (file and chunks); return False if it was already gone."""
    oid = _object_id(file_id)
    with mongo_errors():
        try:
            _bucket().delete(oid)
        except gridfs.errors.NoFile:
            # delete() removes orphan chunks before it finds no files document.
            return False
    return True

"""Answer audio in MongoDB GridFS: the only place audio is kept, and only until transcribed.

Uploads are written the way the GridFS specification describes, by this module rather than
pymongo's ``GridIn``: each chunk is inserted as it is read from the upload (so a request
holds one chunk in memory, not the whole file), the files document last (so a reader never
finds a file whose chunks are missing), and a failed write removes what it wrote. The two
GridFS indexes are created once per process and database, not checked on every upload
(pymongo's check is a query whose cost, on some servers, grows with the files held).
Reads and deletes use pymongo's ``GridFSBucket``: the stored layout is standard GridFS.
"""

import contextlib
import os
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import BinaryIO

import gridfs
from bson import Binary, ObjectId
from bson.errors import InvalidId
from django.conf import settings
from pymongo import ASCENDING, MongoClient, WriteConcern
from pymongo.errors import PyMongoError

BUCKET = "fs"
CHUNK_SIZE = 1024 * 1024  # fewer, larger chunks: each chunk is one insert
# The indexes the GridFS specification asks for, under the names drivers give them.
FILES_INDEX = [("filename", ASCENDING), ("uploadDate", ASCENDING)]
CHUNKS_INDEX = [("files_id", ASCENDING), ("n", ASCENDING)]

_clients: dict[tuple[int, str, int], MongoClient] = {}
_indexed: set[tuple[int, str, str]] = set()


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


def ensure_indexes() -> None:
    """Create the GridFS indexes (a no-op when they exist); once per process and database."""
    key = (os.getpid(), settings.MONGODB_URI, settings.MONGODB_DB)
    if key in _indexed:
        return
    database = get_database()
    with mongo_errors():
        database[f"{BUCKET}.files"].create_index(FILES_INDEX)
        database[f"{BUCKET}.chunks"].create_index(CHUNKS_INDEX, unique=True)
    _indexed.add(key)


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
    """Store one recording with the caller's metadata; return its GridFS id.

    Nothing of it stays stored if this raises: the chunks written so far are removed.
    """
    metadata = metadata | {
        "upload_date": datetime.now(UTC),
        "content_type": content_type,
    }
    ensure_indexes()
    database = get_database()
    file_id = ObjectId()
    try:
        with mongo_errors():
            length = 0
            for n, data in enumerate(_chunks(source)):
                database[f"{BUCKET}.chunks"].insert_one(
                    {"files_id": file_id, "n": n, "data": Binary(data)}
                )
                length += len(data)
            # Last: from here on the file is complete and readable. Journaled: the reply
            # comes once the server's log holds it and every chunk written before it, so an
            # upload answered 202 survives the server's crash (kill -9, OOM, power).
            _journaled(database[f"{BUCKET}.files"]).insert_one(
                {
                    "_id": file_id,
                    "length": length,
                    "chunkSize": CHUNK_SIZE,
                    "uploadDate": datetime.now(UTC),
                    # The name is ours, never the uploaded file's: the metadata says whose.
                    "filename": "recording",
                    "metadata": metadata,
                }
            )
    except BaseException:
        _remove_partial(database, file_id)
        raise
    return str(file_id)


def _journaled(collection):
    """The collection with this client's write concern plus j: true."""
    concern = collection.write_concern.document | {"j": True}
    return collection.with_options(write_concern=WriteConcern(**concern))


def _chunks(source: BinaryIO | bytes) -> Iterator[bytes]:
    """Yield the upload in CHUNK_SIZE pieces, reading one at a time from a file."""
    if isinstance(source, bytes | bytearray | memoryview):
        view = memoryview(source)
        for start in range(0, len(view), CHUNK_SIZE):
            yield bytes(view[start : start + CHUNK_SIZE])
        return
    while data := source.read(CHUNK_SIZE):
        yield data


def _remove_partial(database, file_id: ObjectId) -> None:
    """Best effort: remove a failed write's files document (if any) and chunks."""
    with contextlib.suppress(PyMongoError):
        database[f"{BUCKET}.files"].delete_one({"_id": file_id})
        database[f"{BUCKET}.chunks"].delete_many({"files_id": file_id})


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

"""In-process measurements: where an upload's time goes, and the local engine's speed."""

import contextlib
import functools
import importlib
import statistics
import time
from collections import defaultdict

from bench.audio import Clip

# (step, module, class or None, function). Each step's time excludes the steps nested in it
# (the transcription row and the enqueue are written in the answer's transaction).
UPLOAD_STEPS = [
    ("database connection", "django.db.backends.base.base", "BaseDatabaseWrapper", "connect"),
    (
        "authentication (token)",
        "rest_framework.authentication",
        "TokenAuthentication",
        "authenticate",
    ),
    ("throttle (shared cache)", "sessions_app.throttling", "AtomicRateThrottle", "allow_request"),
    ("session lookup", "sessions_app.api", None, "get_own_session"),
    ("multipart parsing", "rest_framework.parsers", "MultiPartParser", "parse"),
    ("audio probe (first frame)", "transcription.audio", None, "probe"),
    ("GridFS write", "transcription.storage", None, "store_audio"),
    ("database (answer row, commit)", "sessions_app.services", None, "_answer_record"),
    ("transcription row", "sessions_app.services", None, "transcription_create"),
    ("enqueue (job row)", "transcription.services", None, "_enqueue"),
]
OTHER = "other (Django and DRF, question lookup, response)"


class _Timer:
    """Exclusive time per step for the request in flight."""

    def __init__(self):
        self.steps: dict[str, float] = defaultdict(float)
        self._stack: list[list[float]] = []  # [started, time in nested steps]

    def wrap(self, step: str, function):
        @functools.wraps(function)
        def timed(*args, **kwargs):
            frame = [time.perf_counter(), 0.0]
            self._stack.append(frame)
            try:
                return function(*args, **kwargs)
            finally:
                self._stack.pop()
                elapsed = time.perf_counter() - frame[0]
                self.steps[step] += elapsed - frame[1]
                if self._stack:
                    self._stack[-1][1] += elapsed

        return timed


@contextlib.contextmanager
def _instrumented(timer: _Timer, steps):
    """Wrap each step's function with the timer for the duration; report what was missing."""
    patched, missing = [], []
    for step, module_name, class_name, name in steps:
        try:
            owner = importlib.import_module(module_name)
            if class_name:
                owner = getattr(owner, class_name)
            original = owner.__dict__[name] if class_name else getattr(owner, name)
        except (ImportError, AttributeError, KeyError):
            missing.append(step)
            continue
        setattr(owner, name, timer.wrap(step, original))
        patched.append((owner, name, original))
    try:
        yield missing
    finally:
        for owner, name, original in reversed(patched):
            setattr(owner, name, original)


def upload_breakdown(*, user, clip: Clip, count: int, warmup: int = 2) -> dict:
    """Upload ``count`` answers through Django's test client and time each step of the view."""
    from django.test import Client
    from rest_framework.authtoken.models import Token

    from sessions_app.models import Question
    from sessions_app.services import session_create

    token = Token.objects.get_or_create(user=user)[0].key
    client = Client(HTTP_AUTHORIZATION=f"Token {token}", HTTP_HOST="127.0.0.1")
    data = clip.data
    per_session = Question.objects.count()
    timer = _Timer()
    steps = [*UPLOAD_STEPS, ("total", "django.test.client", "ClientHandler", "__call__")]
    samples, statuses, session_ids = [], [], set()
    remaining = count + warmup
    with _instrumented(timer, steps) as missing:
        while remaining:
            session = session_create(user=user, question_count=min(per_session, remaining))
            session_ids.add(session.pk)
            for question in session.ordered_questions():
                timer.steps.clear()
                response = client.post(
                    f"/api/upload-answer/{session.pk}/{question.pk}",
                    {"audio": _named(data, clip)},
                )
                statuses.append(response.status_code)
                remaining -= 1
                if remaining < count:  # past the warm-up
                    sample = dict(timer.steps)
                    # The handler's own frame counted only what no step took.
                    sample[OTHER] = sample.pop("total", 0.0)
                    sample["total"] = sum(sample.values())
                    samples.append(sample)
    names = [step for step, *_ in UPLOAD_STEPS if step not in missing] + [OTHER]
    total_mean = statistics.fmean(sample["total"] for sample in samples)
    breakdown = []
    for name in names:
        values = [sample.get(name, 0.0) for sample in samples]
        breakdown.append(
            {
                "step": name,
                "median_ms": round(statistics.median(values) * 1000, 2),
                "mean_ms": round(statistics.fmean(values) * 1000, 2),
                "share": round(statistics.fmean(values) / total_mean, 3),
            }
        )
    totals = sorted(sample["total"] for sample in samples)
    return {
        "uploads": len(samples),
        "upload_bytes": clip.size,
        "statuses": sorted(set(statuses)),
        "total_median_ms": round(statistics.median(totals) * 1000, 2),
        "total_mean_ms": round(total_mean * 1000, 2),
        "steps": breakdown,
        "not_measured": missing,
        "session_ids": sorted(session_ids),
    }


def _named(data: bytes, clip: Clip):
    from django.core.files.uploadedfile import SimpleUploadedFile

    return SimpleUploadedFile(clip.path.name, data, content_type=clip.content_type)


GRIDFS_PROBE_DATABASE = "bench_gridfs_probe"


def gridfs_scaling(clip: Clip, *, held_files: tuple[int, ...], repeats: int = 11) -> dict:
    """Time the app's GridFS write, read and delete of ``clip`` while MongoDB holds more audio.

    Uses the storage functions the app uses, on a database of its own in the same server,
    with other answers' audio (the same clip) held in it: 0, 50, 300, 600 files... Beside
    them, pymongo's own ``GridFSBucket.upload_from_stream`` (what the app used before: it
    checks the indexes on every upload and collects the chunks before inserting them).
    """
    import gridfs
    from django.test import override_settings

    from transcription import storage

    data = clip.data
    levels = []
    with override_settings(MONGODB_DB=GRIDFS_PROBE_DATABASE):
        database = storage.get_database()
        client = database.client
        client.drop_database(GRIDFS_PROBE_DATABASE)
        bucket = gridfs.GridFSBucket(database, chunk_size_bytes=storage.CHUNK_SIZE)
        held = 0
        metadata = {"session_id": 0, "question_id": 0, "user_id": 0}

        def store() -> str:
            return storage.store_audio(data, content_type=clip.content_type, metadata=metadata)

        try:
            # Not measured: this process's first write makes the indexes and the connection.
            for _ in range(2):
                storage.delete_audio(store())
            for files in held_files:
                while held < files:
                    store()
                    held += 1
                writes, reads, deletes, driver_writes = [], [], [], []
                for _ in range(repeats):
                    started = time.perf_counter()
                    file_id = store()
                    writes.append(time.perf_counter() - started)
                    started = time.perf_counter()
                    storage.get_audio(file_id)
                    reads.append(time.perf_counter() - started)
                    started = time.perf_counter()
                    storage.delete_audio(file_id)
                    deletes.append(time.perf_counter() - started)
                    started = time.perf_counter()
                    driver_id = bucket.upload_from_stream("probe", data)
                    driver_writes.append(time.perf_counter() - started)
                    bucket.delete(driver_id)
                levels.append(
                    {
                        "held_files": held,
                        "held_mb": round(held * len(data) / 1e6, 1),
                        "write_ms": round(statistics.median(writes) * 1000, 1),
                        "write_p90_ms": round(_quantile(writes, 0.9) * 1000, 1),
                        "read_ms": round(statistics.median(reads) * 1000, 1),
                        "delete_ms": round(statistics.median(deletes) * 1000, 1),
                        "driver_write_ms": round(statistics.median(driver_writes) * 1000, 1),
                    }
                )
        finally:
            client.drop_database(GRIDFS_PROBE_DATABASE)
    return {"upload_bytes": clip.size, "repeats": repeats, "levels": levels}


def _quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def engine_speed(clip: Clip, *, warmup: Clip, beam_sizes: tuple[int, ...] = (1, 5)) -> dict:
    """Transcribe ``clip`` with the local engine at each beam size; report audio s per wall s."""
    from django.conf import settings
    from django.test import override_settings

    from transcription.backends.local import LocalWhisperTranscriber

    engine = LocalWhisperTranscriber()
    data = clip.data
    # The first call loads the model; it is timed apart from the runs.
    started = time.perf_counter()
    engine.transcribe(warmup.data, language=None, content_type=warmup.content_type)
    first_call_seconds = time.perf_counter() - started
    runs = []
    for beam_size in beam_sizes:
        with override_settings(WHISPER_BEAM_SIZE=beam_size):
            started = time.perf_counter()
            transcript = engine.transcribe(data, language=None, content_type=clip.content_type)
            seconds = time.perf_counter() - started
        runs.append(
            {
                "beam_size": beam_size,
                "audio_seconds": clip.seconds,
                "wall_seconds": round(seconds, 2),
                "audio_seconds_per_second": round(clip.seconds / seconds, 2),
                "words": len(transcript.text.split()),
                "language": transcript.language,
            }
        )
    return {
        "model": "faster-whisper base, int8, CPU",
        "default_beam_size": settings.WHISPER_BEAM_SIZE,
        "cpu_threads_setting": settings.WHISPER_CPU_THREADS,
        "first_call_seconds": round(first_call_seconds, 2),
        "first_call_audio_seconds": warmup.seconds,
        "clip": clip.path.name,
        "runs": runs,
    }

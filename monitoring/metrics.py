"""The application's own Prometheus metrics, written by whichever process sees the event.

With PROMETHEUS_MULTIPROC_DIR set (gunicorn.conf.py sets it for the web; `make run` for
every process), each process writes its values to files there, and /metrics adds them up.
"""

from prometheus_client import Counter, Histogram

# Upload-to-transcript waits run from milliseconds (an idle worker) to the stall threshold.
LATENCY_BUCKETS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300, 600, 1800, 3600)

transcriptions_finished = Counter(
    "interview_transcriptions_finished_total",
    "Transcriptions that reached a final status (completed or failed).",
    ["status"],
)
transcription_failures = Counter(
    "interview_transcription_failures_total",
    "Transcriptions that ended failed, by reason.",
    ["reason"],
)
upload_to_processing = Histogram(
    "interview_transcription_upload_to_processing_seconds",
    "From the upload to the first time a worker started on it.",
    buckets=LATENCY_BUCKETS,
)
upload_to_completed = Histogram(
    "interview_transcription_upload_to_completed_seconds",
    "From the upload to its transcript being saved.",
    buckets=LATENCY_BUCKETS,
)
engine_seconds = Counter(
    "interview_transcription_engine_seconds_total",
    "Seconds the engine spent on completed transcriptions.",
)
audio_seconds = Counter(
    "interview_transcription_audio_seconds_total",
    "Seconds of audio in completed transcriptions (engine ÷ audio = real-time factor).",
)
retries = Counter(
    "interview_transcription_retries_total",
    "Attempts that failed for a reason that may pass and were queued again.",
)
reconciler_requeues = Counter(
    "interview_transcription_reconciler_requeues_total",
    "Transcriptions the reconciler put back on the queue (a lost job or a dead worker).",
)

# --- Requests, database, cache --------------------------------------------
# Named as django-prometheus names them, so its dashboards and this repo's work unchanged.
# (django-prometheus itself is not used: its newest release, 2.5.0, requires Django < 6.1.)

REQUEST_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)

http_latency = Histogram(
    "django_http_requests_latency_seconds_by_view_method",
    "Request processing time by view and method, every middleware included.",
    ["view", "method"],
    buckets=REQUEST_BUCKETS,
)
http_responses = Counter(
    "django_http_responses_total_by_status_view_method",
    "Responses by status, view and method.",
    ["status", "view", "method"],
)
http_exceptions = Counter(
    "django_http_exceptions_total_by_type",
    "Exceptions a view raised, by type.",
    ["type"],
)
db_execute = Counter("django_db_execute", "Database queries executed.", ["alias", "vendor"])
db_errors = Counter(
    "django_db_errors",
    "Database queries that raised, by exception type.",
    ["alias", "vendor", "type"],
)
db_duration = Histogram(
    "django_db_query_duration_seconds",
    "Database query time.",
    ["alias", "vendor"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
cache_gets = Counter("django_cache_get", "Cache gets.", ["backend"])
cache_hits = Counter("django_cache_get_hits", "Cache gets that found the key.", ["backend"])
cache_misses = Counter("django_cache_get_misses", "Cache gets that did not.", ["backend"])

"""The benchmark's synchronous baseline: the product's WSGI app, transcribing in the request.

gunicorn serves ``bench.sync_wsgi`` instead of ``interview_site.wsgi``. Every request goes
to the product unchanged; when an upload is answered 202, this wrapper runs that answer's
transcription job (the very function a queue worker runs) in the same request, after the
product's transaction committed and before the response leaves, so the candidate waits for
the transcript as the design's "before" did. No database lock is held while it runs: the
upload's transaction is over, and the job takes and releases its own as a worker's would.
The job's row stays on the queue, unserved: no queue worker runs in this mode.

Nothing in the product knows about this module.
"""

import json
import re

from django.utils.module_loading import import_string

from interview_site.wsgi import application as product

UPLOAD = re.compile(r"^/api/upload-answer/\d+/\d+/?$")
JOB = "transcription.tasks.transcribe"


def transcribe_in_request(file_id: str) -> None:
    """Run the transcription job of the recording stored as ``file_id``, here and now."""
    from transcription.models import Transcription

    transcription_id = (
        Transcription.objects.filter(gridfs_file_id=file_id).values_list("pk", flat=True).first()
    )
    if transcription_id is not None:
        import_string(JOB)(transcription_id)


def application(environ, start_response):
    statuses = []

    def remember(status, headers, exc_info=None):
        statuses.append(status)
        return start_response(status, headers, exc_info)

    response = product(environ, remember)
    if (
        environ.get("REQUEST_METHOD") == "POST"
        and UPLOAD.match(environ.get("PATH_INFO", ""))
        and statuses
        and statuses[-1].startswith("202")
    ):
        # gunicorn sends nothing before the first body chunk: the client is still waiting.
        body = b"".join(response)
        try:
            transcribe_in_request(json.loads(body)["file_id"])
        finally:
            # Django's request_finished (it closes the database connection) runs here.
            response.close()
        return [body]
    return response

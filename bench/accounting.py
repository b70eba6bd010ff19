"""What the database, GridFS and the transcription API say about every accepted answer."""

import re
from collections import Counter

from bench.load import Upload
from bench.stack import wait_for

# The job names the recording it sends to the engine after its transcription's id.
ANSWER_FILENAME = re.compile(r"transcription-(\d+)")


def answer_rows(session_ids: set[int]) -> dict[tuple[int, int], dict]:
    """Return each answer of these sessions by (session, question), times as epoch seconds.

    ``pk`` is the answer's transcription's id: the id the engine sees in the file name.
    """
    from sessions_app.models import Answer

    fields = {
        "pk": "transcription_id",
        "transcription_status": "transcription__status",
        "gridfs_file_id": "transcription__gridfs_file_id",
        "attempts": "transcription__attempts",
        "created_at": "transcription__created_at",
        "processing_started_at": "transcription__processing_started_at",
        "transcribed_at": "transcription__transcribed_at",
    }
    rows = {}
    for values in Answer.objects.filter(session_id__in=session_ids).values(
        "id", "session_id", "question_id", "score", *fields.values()
    ):
        row = {"answer_id": values["id"], "score": values["score"]}
        row |= {"session_id": values["session_id"], "question_id": values["question_id"]}
        row |= {name: values[lookup] for name, lookup in fields.items()}
        for name in ("created_at", "processing_started_at", "transcribed_at"):
            row[name] = row[name].timestamp() if row[name] else None
        rows[(row["session_id"], row["question_id"])] = row
    return rows


def settle(session_ids: set[int], *, timeout: float, progress=None) -> bool:
    """Wait until every answer is completed or failed and no completed one holds audio."""
    from sessions_app.models import Answer
    from transcription.models import Transcription

    answers = Answer.objects.filter(session_id__in=session_ids)

    def settled() -> bool:
        unfinished = answers.filter(
            transcription__status__in=[
                Transcription.Status.QUEUED,
                Transcription.Status.PROCESSING,
            ]
        ).count()
        holding = answers.filter(
            transcription__status=Transcription.Status.COMPLETED,
            transcription__gridfs_file_id__isnull=False,
        ).count()
        if progress:
            progress(unfinished + holding)
        return not unfinished and not holding

    try:
        wait_for(settled, timeout=timeout, what="every answer to settle", interval=0.2)
    except TimeoutError:
        return False
    return True


def wait_until_completed(session_id: int, question_id: int, *, timeout: float) -> None:
    from sessions_app.models import Answer
    from transcription.models import Transcription

    wait_for(
        lambda: Answer.objects.filter(
            session_id=session_id,
            question_id=question_id,
            transcription__status=Transcription.Status.COMPLETED,
            transcription__gridfs_file_id__isnull=True,
        ).exists(),
        timeout=timeout,
        what=f"answer {session_id}/{question_id} to complete",
        interval=0.01,
    )


def engine_calls(successes: Counter) -> Counter:
    """Return successful transcription requests per answer id, from the fake API's counts."""
    calls = Counter()
    for filename, count in successes.items():
        match = ANSWER_FILENAME.search(filename or "")
        if match:
            calls[int(match.group(1))] += count
    return calls


def zero_loss(uploads: list[Upload], rows: dict, calls: Counter, session_ids: set[int]) -> dict:
    """Count lost answers, duplicate transcriptions and audio that outlived its answer.

    Every upload answered 202, and every answer row of these sessions, must end completed
    with exactly one successful transcription request and no audio left in GridFS.
    """
    from transcription import storage

    keys = {(u.session_id, u.question_id) for u in uploads if u.accepted} | set(rows)
    lost, failed, duplicates = [], [], []
    for key in sorted(keys):
        row = rows.get(key)
        if row is None or row["transcription_status"] not in ("completed", "failed"):
            lost.append(f"{key[0]}/{key[1]}: {row and row['transcription_status']}")
            continue
        if row["transcription_status"] == "failed":
            failed.append(row["pk"])
        elif calls[row["pk"]] == 0:
            lost.append(f"{key[0]}/{key[1]}: completed without a transcription request")
        if calls[row["pk"]] > 1:
            duplicates.append(row["pk"])

    database = storage.get_database()
    referenced = {row["gridfs_file_id"] for row in rows.values() if row["gridfs_file_id"]}
    files = database["fs.files"].find(
        {"metadata.session_id": {"$in": sorted(session_ids)}}, {"_id": 1}
    )
    orphan_files = [str(f["_id"]) for f in files if str(f["_id"]) not in referenced]
    all_files = [f["_id"] for f in database["fs.files"].find({}, {"_id": 1})]
    orphan_chunks = database["fs.chunks"].count_documents({"files_id": {"$nin": all_files}})
    leftover = [
        row["pk"]
        for row in rows.values()
        if row["transcription_status"] == "completed" and row["gridfs_file_id"]
    ]
    return {
        "answers": len(keys),
        "rejected_uploads": sum(not upload.accepted for upload in uploads),
        "lost": len(lost),
        "failed": len(failed),
        "duplicate_transcriptions": sum(calls[pk] - 1 for pk in duplicates),
        "orphan_gridfs_files": len(orphan_files),
        "orphan_gridfs_chunks": orphan_chunks,
        "audio_kept_after_transcript": len(leftover),
        "examples": {
            "lost": lost[:5],
            "failed": failed[:5],
            "duplicates": duplicates[:5],
            "orphans": orphan_files[:5],
        },
    }


def problems(zero_loss: dict) -> int:
    """Return how many answers broke the guarantees (lost, failed, duplicated, orphaned)."""
    return (
        zero_loss["lost"]
        + zero_loss["failed"]
        + zero_loss["duplicate_transcriptions"]
        + zero_loss["orphan_gridfs_files"]
        + zero_loss["orphan_gridfs_chunks"]
        + zero_loss["audio_kept_after_transcript"]
    )

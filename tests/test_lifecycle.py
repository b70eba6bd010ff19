"""No answer is stranded: a fault injected at each point between two writes leaves every
accepted answer either untouched or completed by the reconciler, and its audio is deleted
only after its transcript is committed."""

import ast
import os
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from bson import ObjectId
from django.db import OperationalError, connection
from django.utils import timezone
from django_q.models import Failure, OrmQ, Schedule

from sessions_app import services as sessions_services
from sessions_app.models import Answer, InterviewSession
from sessions_app.scoring import ScoringError
from tests.engines import release_blocking_engine
from tests.openai_server import openai_server_fixture, openai_settings_fixture  # noqa: F401
from tests.support import (
    ROOT,
    database_url,
    process_env,
    run_queued_jobs,
    start_qcluster,
    stored_state,
    wait_for,
)
from transcription import maintenance, services, storage
from transcription.backends import TranscriptionError
from transcription.models import Transcription

pytestmark = pytest.mark.django_db


def first_question(interview):
    return interview.ordered_questions()[0]


def audio_stored(gridfs, file_id) -> bool:
    return gridfs["fs.files"].count_documents({"_id": ObjectId(file_id)}) == 1


def run_until_completed(gridfs, *expected: tuple[Answer, str]) -> None:
    """Run the queue; check each answer ends with its transcript, its audio deleted after."""
    file_ids = [Transcription.objects.get(answer=answer).gridfs_file_id for answer, _ in expected]
    for file_id in file_ids:
        assert audio_stored(gridfs, file_id)  # nothing deleted before the transcript is saved
    assert run_queued_jobs() >= len(expected)
    for (answer, text), file_id in zip(expected, file_ids, strict=True):
        answer.refresh_from_db()
        assert answer.transcription.status == Transcription.Status.COMPLETED
        assert answer.transcription.transcript == text
        assert not audio_stored(gridfs, file_id)
        assert answer.score is not None


def test_transcription_app_imports_nothing_from_sessions_app():
    imported = []
    for path in (ROOT / "transcription").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                imported += [(path, alias.name) for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                imported.append((path, node.module))
    assert imported  # the walk did see the app's imports
    assert [(str(p), name) for p, name in imported if name.split(".")[0] == "sessions_app"] == []


def test_enqueue_failing_saves_nothing_and_says_so(interview, upload, gridfs, spoken, monkeypatch):
    before = stored_state(gridfs)

    def broker_down(*args, **kwargs):
        raise OperationalError("could not write the job")

    monkeypatch.setattr(services, "async_task", broker_down)

    response = upload(interview.pk, first_question(interview).pk, spoken("no job, no answer"))

    assert response.status_code == 503
    assert "nothing was saved" in response.json()["error"]["message"]
    assert stored_state(gridfs) == before  # no answer, no transcription, no audio, no job


def test_rerecording_whose_enqueue_fails_keeps_the_earlier_answer(
    interview, upload, gridfs, spoken, scripted_engine, monkeypatch
):
    question = first_question(interview)
    upload(interview.pk, question.pk, scripted_engine.say(spoken("first take"), "first take"))
    before = stored_state(gridfs)

    def broker_down(*args, **kwargs):
        raise OperationalError("could not write the job")

    with monkeypatch.context() as patch:
        patch.setattr(services, "async_task", broker_down)
        response = upload(interview.pk, question.pk, spoken("second take"))

    assert response.status_code == 503
    assert stored_state(gridfs) == before
    run_until_completed(gridfs, (Answer.objects.get(), "first take"))


def test_rerecording_whose_old_audio_cannot_be_deleted_is_still_accepted(
    interview, upload, gridfs, spoken, scripted_engine, monkeypatch
):
    question = first_question(interview)
    old_file = upload(interview.pk, question.pk, spoken("first take")).json()["file_id"]

    def mongodb_gone(file_id):
        raise storage.StorageUnavailable("MongoDB is unavailable")

    with monkeypatch.context() as patch:
        patch.setattr(storage, "delete_audio", mongodb_gone)
        response = upload(
            interview.pk, question.pk, scripted_engine.say(spoken("second take"), "second take")
        )

    assert response.status_code == 202  # saved, so never "nothing was saved"
    answer = Answer.objects.get()
    assert answer.transcription.gridfs_file_id == response.json()["file_id"]
    assert audio_stored(gridfs, old_file)  # referenced by nothing: cleanup_audio's to remove
    run_until_completed(gridfs, (answer, "second take"))


def test_retry_whose_schedule_is_lost_is_enqueued_by_the_reconciler_once_due(
    interview, upload, gridfs, spoken, scripted_engine
):
    audio = spoken("flaky engine")
    scripted_engine.say(audio, TranscriptionError("overloaded, try later"))
    upload(interview.pk, first_question(interview).pk, audio)
    run_queued_jobs()
    answer = Answer.objects.get()
    assert answer.transcription.status == Transcription.Status.QUEUED
    assert Schedule.objects.count() == 1
    Schedule.objects.all().delete()  # the retry's schedule is lost
    scripted_engine.say(audio, "flaky engine")

    # Not yet due: the reconciler leaves it alone.
    assert maintenance.reconcile().enqueued == []
    # Once due (and past the scheduler's own chance), the reconciler gives it a job.
    Transcription.objects.update(
        next_attempt_at=timezone.now() - maintenance.DUE_GRACE - timedelta(seconds=1)
    )
    assert maintenance.reconcile().enqueued == [answer.transcription_id]
    assert maintenance.reconcile().enqueued == []  # it has a job now: not enqueued twice
    run_until_completed(gridfs, (answer, "flaky engine"))


def run_killed(*args: str) -> subprocess.CompletedProcess:
    """Run tests/crash.py: a product action in a process killed at an exact point."""
    return subprocess.run(
        [sys.executable, "-m", "tests.crash", *args],
        cwd=ROOT,
        env=process_env(DATABASE_URL=database_url()),
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.fixture
def recording(tmp_path, spoken, scripted_engine):
    path = tmp_path / "answer.wav"
    path.write_bytes(scripted_engine.say(spoken("killed midway"), "killed midway"))
    return path


@pytest.mark.django_db(transaction=True)
@pytest.mark.slow
def test_upload_killed_after_the_enqueue_before_the_commit_leaves_nothing_but_an_orphan(
    interview, gridfs, recording
):
    question = first_question(interview)

    killed = run_killed(
        "transcription.services:_enqueue", "1", "after", "upload", str(interview.pk),
        str(question.pk), str(recording),
    )  # fmt: skip

    assert killed.returncode == -9, killed.stdout + killed.stderr
    assert not Answer.objects.exists()
    assert not Transcription.objects.exists()
    assert not OrmQ.objects.exists()  # the job was in the transaction that never committed
    assert gridfs["fs.files"].count_documents({}) == 1  # the audio, referenced by nothing
    gridfs["fs.files"].update_many(
        {}, {"$set": {"metadata.upload_date": datetime.now(UTC) - maintenance.ORPHAN_GRACE}}
    )
    assert len(maintenance.cleanup_audio().orphan_files) == 1
    assert gridfs["fs.chunks"].count_documents({}) == 0


@pytest.mark.django_db(transaction=True)
@pytest.mark.slow
def test_upload_killed_right_after_its_commit_is_transcribed(
    interview, gridfs, recording, scripted_engine
):
    question = first_question(interview)

    killed = run_killed(
        "sessions_app.services:_answer_record", "1", "after", "upload", str(interview.pk),
        str(question.pk), str(recording),
    )  # fmt: skip

    assert killed.returncode == -9, killed.stdout + killed.stderr
    answer = Answer.objects.get()
    assert answer.transcription.status == Transcription.Status.QUEUED
    assert maintenance.reconcile().enqueued == []  # its job committed with it
    run_until_completed(gridfs, (answer, "killed midway"))


@pytest.mark.django_db(transaction=True)
@pytest.mark.slow
def test_reconciler_killed_midway_leaves_each_transcription_whole_and_the_next_run_finishes(
    user, questions, upload, gridfs, spoken, scripted_engine
):
    session = sessions_services.session_create(user=user, question_count=3)
    for n, question in enumerate(session.ordered_questions()):
        upload(session.pk, question.pk, scripted_engine.say(spoken(f"answer {n}"), f"answer {n}"))
    OrmQ.objects.all().delete()  # every job lost (a broker purged by hand, say)

    killed = run_killed("transcription.services:_enqueue", "2", "before", "reconcile")

    assert killed.returncode == -9, killed.stdout + killed.stderr
    # The first enqueue committed whole; the second died with its transaction.
    assert len(maintenance.transcriptions_with_a_job()) == 1
    assert len(maintenance.reconcile().enqueued) == 2
    assert len(maintenance.transcriptions_with_a_job()) == 3
    answers = Answer.objects.order_by("pk")
    run_until_completed(gridfs, *((answer, f"answer {n}") for n, answer in enumerate(answers)))


def refuse_claims():
    """Make the database refuse the job's claim, as a lost connection mid-statement would."""
    with connection.cursor() as cursor:
        if connection.vendor == "sqlite":
            cursor.execute(
                "CREATE TRIGGER refuse_claims BEFORE UPDATE ON transcription_transcription "
                "WHEN NEW.status = 'processing' BEGIN SELECT RAISE(ABORT, 'disk full'); END"
            )
        else:
            cursor.execute(
                "CREATE FUNCTION refuse_claims() RETURNS trigger AS "
                "$$ BEGIN RAISE EXCEPTION 'disk full'; END $$ LANGUAGE plpgsql"
            )
            cursor.execute(
                "CREATE TRIGGER refuse_claims BEFORE UPDATE ON transcription_transcription "
                "FOR EACH ROW WHEN (NEW.status = 'processing') EXECUTE FUNCTION refuse_claims()"
            )


def allow_claims():
    with connection.cursor() as cursor:
        if connection.vendor == "sqlite":
            cursor.execute("DROP TRIGGER IF EXISTS refuse_claims")
        else:
            cursor.execute("DROP TRIGGER IF EXISTS refuse_claims ON transcription_transcription")
            cursor.execute("DROP FUNCTION IF EXISTS refuse_claims()")


@pytest.mark.django_db(transaction=True)
@pytest.mark.slow
def test_job_failing_before_its_claim_commits_is_enqueued_again_by_the_reconciler(
    interview, upload, gridfs, spoken, tmp_path, openai_server, openai_settings
):
    cluster = start_qcluster(
        tmp_path,
        TRANSCRIBER="openai",
        OPENAI_BASE_URL=openai_server.base_url,
        OPENAI_API_KEY="test-key",
    )
    refuse_claims()
    try:
        upload(interview.pk, first_question(interview).pk, spoken("refused claim"))
        # django-q2 acknowledges the failed task (ack_failures): no job is left for it.
        wait_for(
            lambda: Failure.objects.exists() and not OrmQ.objects.exists(),
            what="the failed delivery to be acknowledged",
        )
        answer = Answer.objects.get()
        assert answer.transcription.status == Transcription.Status.QUEUED
        allow_claims()

        assert maintenance.reconcile().enqueued == [answer.transcription_id]
        wait_for(
            lambda: Transcription.objects.filter(
                status=Transcription.Status.COMPLETED, gridfs_file_id__isnull=True
            ).exists(),
            what="the reconciled job to complete",
        )
    finally:
        allow_claims()
        cluster.stop()
    assert gridfs["fs.files"].count_documents({}) == 0
    assert Answer.objects.get().score is not None


def group_alive(pgid: int) -> bool:
    """Whether any process of the group still runs (zombies awaiting their parent aside)."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            return True
    return False


class FailsOnOneAnswer:
    """A scorer that cannot score the answer whose transcript says "unscorable"."""

    def score(self, *, question_text, model_answer, key_points, transcript):
        if "unscorable" in transcript:
            raise ScoringError("the scoring API rejected the key")
        from sessions_app.scoring.local import KeyPointScorer

        return KeyPointScorer().score(
            question_text=question_text,
            model_answer=model_answer,
            key_points=key_points,
            transcript=transcript,
        )


def test_an_answer_that_cannot_be_scored_does_not_block_the_results(
    settings, api_client, interview, upload, gridfs, spoken, scripted_engine
):
    settings.SCORER = "tests.test_lifecycle.FailsOnOneAnswer"
    first, second, third = interview.ordered_questions()
    for question, text in [(first, "an index"), (second, "unscorable"), (third, "a cache")]:
        upload(interview.pk, question.pk, scripted_engine.say(spoken(text), text))
    run_queued_jobs()

    response = api_client.post(f"/api/analyze/{interview.pk}")

    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "success"
    scored = [a for a in body["answers"] if a["score"] is not None]
    unscored = [a for a in body["answers"] if a["score"] is None]
    assert [a["question_id"] for a in scored] == [first.pk, third.pk]
    assert body["scored_count"] == 2
    assert body["unscored_count"] == 1
    assert unscored[0]["status"] == "completed"
    assert unscored[0]["transcript"] == "unscorable"
    assert "could not be scored" in unscored[0]["score_error"]
    assert body["final_score"] == round(sum(a["score"] for a in scored) / 2, 1)
    assert InterviewSession.objects.get().status == InterviewSession.Status.ANALYZED


def test_analyze_racing_an_upload_never_marks_the_session_analyzed_with_a_pending_answer(
    api_client, interview, upload, gridfs, spoken, scripted_engine, monkeypatch
):
    first, second, _ = interview.ordered_questions()
    upload(interview.pk, first.pk, scripted_engine.say(spoken("done"), "done"))
    run_queued_jobs()
    Answer.objects.update(score=None)  # analyze will score it, which is where we interleave
    score = sessions_services.answer_score

    def upload_commits_meanwhile(*, answer):
        upload(interview.pk, second.pk, spoken("arrives during the analysis"))
        return score(answer=answer)

    monkeypatch.setattr(sessions_services, "answer_score", upload_commits_meanwhile)

    response = api_client.post(f"/api/analyze/{interview.pk}")

    assert response.status_code == 202
    assert response.json()["pending_count"] == 1
    session = InterviewSession.objects.get()
    assert session.status == InterviewSession.Status.IN_PROGRESS
    assert session.final_score is None


@pytest.mark.django_db(transaction=True)
@pytest.mark.slow
def test_two_simultaneous_first_uploads_for_one_question_both_succeed_with_one_answer(
    api_client, interview, gridfs, spoken, live_server
):
    """Released together over real HTTP (CI runs this on PostgreSQL too)."""
    import requests

    question = first_question(interview)
    token = api_client._credentials["HTTP_AUTHORIZATION"]
    url = f"{live_server.url}/api/upload-answer/{interview.pk}/{question.pk}"
    takes = [spoken("take one"), spoken("take two")]
    start = threading.Barrier(len(takes))
    responses = [None] * len(takes)

    def send(n):
        start.wait()
        responses[n] = requests.post(
            url,
            files={"audio": (f"take-{n}.wav", takes[n], "audio/wav")},
            headers={"Authorization": token},
            timeout=30,
        )

    threads = [threading.Thread(target=send, args=(n,)) for n in range(len(takes))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert [r.status_code for r in responses] == [202, 202], [r.text for r in responses]
    answer = Answer.objects.get()
    assert Transcription.objects.count() == 1
    kept = {r.json()["file_id"] for r in responses} & {answer.transcription.gridfs_file_id}
    assert len(kept) == 1  # the later upload replaced the earlier one
    wait_for(
        lambda: gridfs["fs.files"].count_documents({}) == 1,
        what="the replaced recording to be deleted",
    )
    assert audio_stored(gridfs, answer.transcription.gridfs_file_id)
    assert (
        gridfs["fs.chunks"].count_documents(
            {"files_id": {"$ne": ObjectId(answer.transcription.gridfs_file_id)}}
        )
        == 0
    )  # no orphan chunks


@pytest.mark.django_db(transaction=True)
@pytest.mark.slow
# A platform signals the cluster's leader (Kubernetes, honcho) or every process (Heroku).
@pytest.mark.parametrize("whom", ["leader", "process group"])
def test_sigterm_releases_the_in_flight_transcription_to_another_cluster(
    whom, interview, upload, gridfs, spoken, tmp_path
):
    stopping_dir, taking_over_dir = tmp_path / "stopping", tmp_path / "taking-over"
    for folder in (stopping_dir, taking_over_dir):
        folder.mkdir()
    release_blocking_engine(taking_over_dir, "finished elsewhere")
    engine = {"TRANSCRIBER": "tests.engines.BlockingTranscriber", "Q_WORKERS": "1"}
    stopping = start_qcluster(stopping_dir, BLOCKING_ENGINE_DIR=str(stopping_dir), **engine)
    taking_over = None
    try:
        upload(interview.pk, first_question(interview).pk, spoken("stop mid-sentence"))
        wait_for(lambda: list(stopping_dir.glob("started-*")), what="the engine to start")
        taking_over = start_qcluster(
            taking_over_dir, BLOCKING_ENGINE_DIR=str(taking_over_dir), **engine
        )

        # SIGTERM, as a deploy or a daily restart sends.
        if whom == "leader":
            os.kill(stopping.popen.pid, signal.SIGTERM)
        else:
            os.killpg(stopping.popen.pid, signal.SIGTERM)
        signalled = time.monotonic()
        stopping.popen.wait(timeout=25)
        wait_for(lambda: not group_alive(stopping.popen.pid), timeout=25, what="every process")
        exited_after = time.monotonic() - signalled
        wait_for(
            lambda: Transcription.objects.filter(
                status=Transcription.Status.COMPLETED, gridfs_file_id__isnull=True
            ).exists(),
            timeout=60 - (time.monotonic() - signalled),
            what="the released transcription to complete on the other cluster",
        )
        completed_after = time.monotonic() - signalled
    finally:
        stopping.stop()
        if taking_over:
            taking_over.stop()

    print(f"{whom}: exited {exited_after:.1f} s, completed {completed_after:.1f} s after SIGTERM")
    transcription = Transcription.objects.get()
    assert transcription.transcript.startswith("finished elsewhere")
    assert transcription.attempts == 1  # a release is not a failed attempt
    assert "released by a stopping worker" in stopping.output()
    assert not list(stopping_dir.glob("release"))
    assert gridfs["fs.files"].count_documents({}) == 0

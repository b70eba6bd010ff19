"""Everything that writes sessions, questions and answers."""

import json
import logging
import math
import random
import statistics
from dataclasses import dataclass
from datetime import timedelta
from functools import partial
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import connection, transaction
from django.utils import timezone

from transcription import storage
from transcription.models import Transcription
from transcription.services import audio_discard, transcription_create, transcription_delete

from . import events, signals
from .events import event_record
from .models import Answer, InterviewSession, Question, SessionQuestion
from .prompt import transcription_prompt
from .scoring import ScoringError, get_scorer
from .serializers import analysis_data

logger = logging.getLogger(__name__)

QUESTION_BANK = Path(__file__).with_name("question_bank.json")
# retry_after: the engine's speed from this many recent completions; before any, a guess
# (seconds of engine time per second of audio, and an answer's length).
RECENT_COMPLETIONS = 20
DEFAULT_ENGINE_SPEED = 0.5
DEFAULT_AUDIO_SECONDS = 20.0
NO_SPEECH = "No speech was detected in the recording, so there is nothing to score."


class NoAnswers(Exception):
    """The session has no recorded answers to analyze."""


def question_bank_load(*, path: Path = QUESTION_BANK) -> int:
    """Create or update the shipped questions; return how many the bank holds."""
    entries = json.loads(path.read_text())
    for entry in entries:
        Question.objects.update_or_create(
            slug=entry["slug"],
            defaults={
                "category": entry["category"],
                "text": entry["text"],
                "model_answer": entry["model_answer"],
                "key_points": entry["key_points"],
            },
        )
    return len(entries)


def session_create(
    *, user, role: str = "", language: str = "", question_count: int = 5
) -> InterviewSession:
    """Start an interview with ``question_count`` questions, those matching the role first."""
    # The bank is read before the write transaction, which then holds only the two inserts.
    questions = list(Question.objects.all())
    random.shuffle(questions)
    role_words = set(role.lower().replace("-", " ").split())
    # Stable sort: questions whose category the role names come first, the rest stay shuffled.
    questions.sort(key=lambda question: question.category.split("-")[0] not in role_words)
    with transaction.atomic():
        session = InterviewSession.objects.create(user=user, role=role, language=language)
        SessionQuestion.objects.bulk_create(
            SessionQuestion(session=session, question=question, position=position)
            for position, question in enumerate(questions[:question_count], start=1)
        )
    return session


def answer_submit(
    *,
    session: InterviewSession,
    question: Question,
    audio,
    content_type: str,
    audio_seconds: float | None = None,
) -> Answer:
    """Store the recording and make it the answer's, queued for transcription.

    A re-recording replaces the earlier one, whatever state its transcription was in.
    """
    pending_cap_check(session=session, question=question)  # before storing anything
    metadata = {"session_id": session.pk, "question_id": question.pk, "user_id": session.user_id}
    file_id = storage.store_audio(audio, metadata=metadata, content_type=content_type)
    try:
        return _answer_record(
            session=session,
            question=question,
            file_id=file_id,
            content_type=content_type,
            metadata=metadata,
            audio_seconds=audio_seconds,
        )
    except BaseException:
        # Nothing refers to the recording: remove it now, or cleanup_audio will.
        audio_discard(file_id=file_id)
        raise


class TooManyPending(Exception):
    """The user already has MAX_PENDING_PER_USER transcriptions queued or processing."""


def pending_cap_check(*, session: InterviewSession, question: Question) -> None:
    """Raise TooManyPending if one more recording would exceed the user's cap.

    A re-recording replaces its question's transcription, so that one does not count.
    """
    if _pending_others(session=session, question=question).count() >= settings.MAX_PENDING_PER_USER:
        raise TooManyPending


def _pending_others(*, session: InterviewSession, question: Question):
    # Through the user's answers (indexed joins), not the transcriptions' JSON metadata,
    # which SQLite would scan for every pending transcription of every user.
    return Answer.objects.filter(
        session__user_id=session.user_id, transcription__status__in=Transcription.PENDING
    ).exclude(session=session, question=question)


class _Compiled:
    """A read's SQL, built from its queryset now and run later, inside a transaction.

    Django builds a query's SQL each time it runs it, and most of a short query's cost is
    that Python. On SQLite an upload's transaction holds the one write lock of every
    process, so its reads are compiled before it begins and only executed inside it.
    """

    def __init__(self, queryset):
        self.sql, self.params = queryset.query.sql_with_params()

    def rows(self) -> list[tuple]:
        with connection.cursor() as cursor:
            cursor.execute(self.sql, self.params)
            return cursor.fetchall()


def _answer_record(
    *,
    session,
    question,
    file_id: str,
    content_type: str,
    metadata: dict,
    audio_seconds: float | None = None,
) -> Answer:
    # Built before the transaction, which then holds only the statements themselves.
    status_read = _Compiled(InterviewSession.objects.filter(pk=session.pk).values_list("status"))
    cap = settings.MAX_PENDING_PER_USER
    pending_read = _Compiled(
        _pending_others(session=session, question=question).values("pk")[: max(cap, 1)]
    )
    answer_read = _Compiled(
        Answer.objects.filter(session=session, question=question).values_list("pk")
    )
    prompt = transcription_prompt(question=question)
    queued = events.answer_queued_data(question_id=question.pk)
    with transaction.atomic():
        if connection.features.has_select_for_update:
            # The session's row lock serializes its uploads and its analysis (two first
            # uploads for one question cannot both insert; analyze sees every answer that
            # committed); the user's, their uploads across sessions, so the cap holds
            # exactly. SQLite has no row locks: its one write transaction at a time already
            # serializes every writer.
            list(InterviewSession.objects.select_for_update().filter(pk=session.pk).values("pk"))
            list(
                get_user_model().objects.select_for_update().filter(pk=session.user_id).values("pk")
            )
        status = status_read.rows()
        if not status:
            raise InterviewSession.DoesNotExist  # deleted while the audio was being stored
        if len(pending_read.rows()) >= cap:
            raise TooManyPending
        transcription = transcription_create(
            file_id=file_id,
            content_type=content_type,
            language=session.language,
            metadata=metadata,
            audio_seconds=audio_seconds,
            prompt=prompt,
        )
        if not answer_read.rows():
            answer = Answer.objects.create(
                session=session, question=question, transcription=transcription
            )
        else:  # a re-recording
            answer = Answer.objects.select_related("transcription").get(
                session=session, question=question
            )
            replaced = answer.transcription
            answer.transcription = transcription
            answer.score = None
            answer.score_error = ""
            answer.feedback = []
            answer.model_answer = ""
            answer.save()
            transcription_delete(transcription=replaced)
        if status[0][0] == InterviewSession.Status.ANALYZED:
            # A new recording makes the earlier analysis stale: the candidate analyzes again.
            InterviewSession.objects.filter(pk=session.pk).update(
                status=InterviewSession.Status.IN_PROGRESS, final_score=None, analyzed_at=None
            )
        # The session's streams hear of the new recording in the upload's own commit: one
        # write transaction fewer than the receiver's, which leaves a recording's creation
        # to this.
        events.event_record(
            session_id=session.pk, name=transcription.status, data=queued, session_locked=True
        )
    return answer


def answer_score(*, answer: Answer) -> Answer:
    """Score a completed answer against its question; record why if it cannot be scored."""
    question = answer.question
    transcription = answer.transcription
    if not transcription.transcript.strip():
        # Silence or noise alone: there is nothing to score, which is not a score of 0.
        answer.score, answer.feedback, answer.score_error = None, [], NO_SPEECH
    else:
        try:
            result = get_scorer().score(
                question_text=question.text,
                model_answer=question.model_answer,
                key_points=question.key_points,
                transcript=transcription.transcript,
            )
        except ScoringError as exc:
            logger.warning("Scoring failed: answer=%s: %s", answer.pk, exc)
            answer.score, answer.feedback = None, []
            answer.score_error = "This answer could not be scored right now; analyze again later."
        else:
            answer.score = round(min(max(result.score, 0.0), 100.0), 1)
            answer.feedback = list(result.feedback)
            answer.score_error = ""
    answer.model_answer = question.model_answer
    # Only if the transcript scored is still the answer's: a re-recording replaces it.
    Answer.objects.filter(pk=answer.pk, transcription=transcription).update(
        score=answer.score,
        score_error=answer.score_error,
        feedback=answer.feedback,
        model_answer=answer.model_answer,
        updated_at=timezone.now(),
    )
    return answer


@dataclass(frozen=True)
class Analysis:
    pending_count: int
    processing_count: int
    answers: list[Answer]
    final_score: float | None = None

    @property
    def scored_count(self) -> int:
        return sum(answer.score is not None for answer in self.answers)

    @property
    def unscored_count(self) -> int:
        """Completed answers that could not be scored (the reason is on each)."""
        return sum(
            answer.score is None and answer.transcription.status == Transcription.Status.COMPLETED
            for answer in self.answers
        )


def _session_answers(session: InterviewSession) -> list[Answer]:
    positions = dict(session.sessionquestion_set.values_list("question_id", "position"))
    answers = session.answers.select_related("question", "transcription")
    return sorted(answers, key=lambda answer: positions[answer.question_id])


def _pending(answers: list[Answer]) -> Analysis | None:
    pending = [answer for answer in answers if answer.is_pending]
    if not pending:
        return None
    processing = sum(a.transcription.status == Transcription.Status.PROCESSING for a in pending)
    return Analysis(pending_count=len(pending), processing_count=processing, answers=answers)


def session_analyze(*, session: InterviewSession) -> Analysis:
    """Score the session once no transcription is pending; otherwise report what is."""
    answers = _session_answers(session)
    if not answers:
        raise NoAnswers
    if pending := _pending(answers):
        InterviewSession.objects.filter(
            pk=session.pk, status=InterviewSession.Status.IN_PROGRESS
        ).update(status=InterviewSession.Status.ANALYZING)
        return pending
    for answer in answers:
        completed = answer.transcription.status == Transcription.Status.COMPLETED
        if completed and answer.score is None:
            answer_score(answer=answer)
    with transaction.atomic():
        # Under the session's lock, which every upload takes: re-read, since a recording
        # may have committed while the answers were being scored.
        before = InterviewSession.objects.select_for_update().get(pk=session.pk)
        answers = _session_answers(session)
        if pending := _pending(answers):
            return pending
        scores = [answer.score for answer in answers if answer.score is not None]
        final_score = round(statistics.fmean(scores), 1) if scores else None
        InterviewSession.objects.filter(pk=session.pk).update(
            status=InterviewSession.Status.ANALYZED,
            final_score=final_score,
            analyzed_at=timezone.now(),
        )
        analysis = Analysis(
            pending_count=0, processing_count=0, answers=answers, final_score=final_score
        )
        analyzed = InterviewSession.Status.ANALYZED
        if before.status != analyzed or before.final_score != final_score:
            # The stream's "analysis" event, once per new result (not per repeated analyze).
            event_record(session_id=session.pk, name="analysis", data=analysis_data(analysis))
        transaction.on_commit(partial(_announce, signals.session_analyzed, session_id=session.pk))
    return analysis


def _announce(signal, **change) -> None:
    for receiver, error in signal.send_robust(sender=InterviewSession, **change):
        if error is not None:
            logger.error(
                "A listener of %s failed: %s: %s", signal, receiver, change, exc_info=error
            )


@transaction.atomic
def session_delete(*, session: InterviewSession) -> None:
    """Delete a session, its answers and their transcriptions; their audio once that commits.

    A transcription job still queued finds nothing when it runs, and does nothing.
    """
    # The lock every upload takes: no recording can slip in while the session goes.
    InterviewSession.objects.select_for_update().filter(pk=session.pk).first()
    transcriptions = [
        answer.transcription for answer in session.answers.select_related("transcription")
    ]
    user_id, session_id = session.user_id, session.pk
    session.delete()  # its answers and question list go with it
    for transcription in transcriptions:
        transcription_delete(transcription=transcription)
    transaction.on_commit(
        partial(_announce, signals.session_deleted, session_id=session_id, user_id=user_id)
    )


def sessions_expire(*, days: int | None = None) -> int:
    """Delete the sessions created more than ``days`` (TRANSCRIPT_RETENTION_DAYS) ago."""
    days = settings.TRANSCRIPT_RETENTION_DAYS if days is None else days
    if not days:
        return 0
    cutoff = timezone.now() - timedelta(days=days)
    expired = list(InterviewSession.objects.filter(created_at__lt=cutoff))
    for session in expired:
        session_delete(session=session)
    if expired:
        logger.info("Deleted %s sessions older than %s days", len(expired), days)
    return len(expired)


def session_analyze_when_done(*, session_id: int) -> None:
    """Analyze the session once no answer waits for a transcript, if the candidate has
    pressed Finish or has answered every question (so analyze then answers at once)."""
    session = InterviewSession.objects.filter(pk=session_id).first()
    if session is None or Answer.objects.filter(session=session).pending().exists():
        return
    finished = session.status == InterviewSession.Status.ANALYZING
    answered_all = session.answers.count() == session.sessionquestion_set.count()
    if not (finished or answered_all):
        return
    session_analyze(session=session)  # the answer that just changed is there: never NoAnswers


def retry_after_estimate(*, answers: list[Answer]) -> int:
    """Seconds until the pending answers are likely transcribed, within [1, 30].

    Their audio length (where known; else the average of recent ones) times the engine's
    measured seconds per audio second over recent completions, shared among the workers.
    """
    pending = [answer.transcription for answer in answers if answer.is_pending]
    if not pending:
        return 1
    recent = list(
        Transcription.objects.filter(
            status=Transcription.Status.COMPLETED,
            audio_seconds__gt=0,
            engine_seconds__isnull=False,
        )
        .order_by("-transcribed_at")
        .values_list("audio_seconds", "engine_seconds")[:RECENT_COMPLETIONS]
    )
    if recent:
        speed = sum(engine for _, engine in recent) / sum(audio for audio, _ in recent)
        typical_audio = statistics.fmean(audio for audio, _ in recent)
    else:
        speed, typical_audio = DEFAULT_ENGINE_SPEED, DEFAULT_AUDIO_SECONDS
    now = timezone.now()
    remaining = []
    for transcription in pending:
        seconds = (transcription.audio_seconds or typical_audio) * speed
        if transcription.status == Transcription.Status.PROCESSING:
            started = transcription.processing_started_at or now
            seconds -= (now - started).total_seconds()
        remaining.append(max(seconds, 0.0))
    workers = max(1, min(len(pending), settings.Q_CLUSTER["workers"]))
    estimate = max(max(remaining), sum(remaining) / workers)
    return int(min(max(math.ceil(estimate), 1), 30))

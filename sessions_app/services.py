"""Everything that writes sessions, questions and answers."""

import json
import logging
import random
import statistics
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from django.utils.module_loading import import_string
from django_q.tasks import async_task

from transcription import storage

from .models import Answer, InterviewSession, Question, SessionQuestion
from .scoring import get_scorer

logger = logging.getLogger(__name__)

QUESTION_BANK = Path(__file__).with_name("question_bank.json")
TRANSCRIBE_JOB = "transcription.tasks.transcribe_answer"


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


@transaction.atomic
def session_create(
    *, user, role: str = "", language: str = "", question_count: int = 5
) -> InterviewSession:
    """Start an interview with ``question_count`` questions, those matching the role first."""
    questions = list(Question.objects.all())
    random.shuffle(questions)
    role_words = set(role.lower().replace("-", " ").split())
    # Stable sort: questions whose category the role names come first, the rest stay shuffled.
    questions.sort(key=lambda question: question.category.split("-")[0] not in role_words)
    session = InterviewSession.objects.create(user=user, role=role, language=language)
    SessionQuestion.objects.bulk_create(
        SessionQuestion(session=session, question=question, position=position)
        for position, question in enumerate(questions[:question_count], start=1)
    )
    return session


def answer_submit(*, session: InterviewSession, question: Question, audio, content_type: str):
    """Store the audio, record the answer as queued and enqueue its transcription."""
    file_id = storage.store_audio(
        audio,
        session_id=session.pk,
        question_id=question.pk,
        user_id=session.user_id,
        content_type=content_type,
    )
    try:
        answer, replaced_file_id = _answer_record(
            session=session, question=question, file_id=file_id, content_type=content_type
        )
    except BaseException:
        # The answer was not recorded, so nothing refers to the audio: remove it.
        storage.delete_audio(file_id)
        raise
    if replaced_file_id:
        # The earlier recording is no longer referenced by any answer.
        storage.delete_audio(replaced_file_id)
    if settings.TRANSCRIBE_IN_REQUEST:
        # The old synchronous behaviour, kept only as the benchmark's baseline.
        import_string(TRANSCRIBE_JOB)(answer.pk)
        answer.refresh_from_db()
    return answer


@transaction.atomic
def _answer_record(*, session, question, file_id: str, content_type: str):
    answer = Answer.objects.select_for_update().filter(session=session, question=question).first()
    replaced_file_id = None
    if answer is None:
        answer = Answer(session=session, question=question)
    else:
        replaced_file_id = answer.gridfs_file_id
    answer.gridfs_file_id = file_id
    answer.content_type = content_type
    answer.transcription_status = Answer.Status.QUEUED
    answer.attempts = 0
    answer.processing_started_at = None
    answer.next_attempt_at = None
    answer.transcribed_at = None
    answer.transcription_error = ""
    answer.transcript = ""
    answer.language = ""
    answer.score = None
    answer.feedback = []
    answer.model_answer = ""
    answer.save()
    if session.status == InterviewSession.Status.ANALYZED:
        # A new recording makes the earlier analysis stale: the candidate analyzes again.
        InterviewSession.objects.filter(pk=session.pk).update(
            status=InterviewSession.Status.IN_PROGRESS, final_score=None, analyzed_at=None
        )
    if not settings.TRANSCRIBE_IN_REQUEST:
        transaction.on_commit(partial(transcription_enqueue, answer_id=answer.pk))
    return answer, replaced_file_id


def transcription_task_name(answer_id: int) -> str:
    return f"transcribe-answer-{answer_id}"


def transcription_enqueue(*, answer_id: int) -> str:
    """Put the answer's transcription job on the queue."""
    return async_task(
        TRANSCRIBE_JOB,
        answer_id,
        task_name=transcription_task_name(answer_id),
        group="transcription",
    )


class RequeueRefused(Exception):
    """The answer cannot be transcribed again; the message says why."""


def transcription_requeue(*, answer: Answer) -> Answer:
    """Put a failed or stuck answer back in the queue, if its audio is still stored."""
    if not (answer.transcription_status == Answer.Status.FAILED or answer.is_stuck):
        raise RequeueRefused(f"it is {answer.transcription_status}, not failed or stuck")
    if not answer.gridfs_file_id or not storage.audio_exists(answer.gridfs_file_id):
        raise RequeueRefused("its audio is no longer stored; the candidate must record it again")
    with transaction.atomic():
        requeued = Answer.objects.filter(
            pk=answer.pk,
            transcription_status=answer.transcription_status,
            gridfs_file_id=answer.gridfs_file_id,
        ).update(
            transcription_status=Answer.Status.QUEUED,
            transcription_error="",
            processing_started_at=None,
            next_attempt_at=None,
            attempts=0,
        )
        if not requeued:
            raise RequeueRefused("it changed meanwhile")
        transaction.on_commit(partial(transcription_enqueue, answer_id=answer.pk))
    answer.refresh_from_db()
    return answer


def answer_score(*, answer: Answer) -> Answer:
    """Score a completed answer against its question's model answer and key points."""
    question = answer.question
    result = get_scorer().score(
        question_text=question.text,
        model_answer=question.model_answer,
        key_points=question.key_points,
        transcript=answer.transcript,
    )
    answer.score = round(min(max(result.score, 0.0), 100.0), 1)
    answer.feedback = list(result.feedback)
    answer.model_answer = question.model_answer
    # Only if the transcript scored is still the answer's: a re-upload may have reset it.
    Answer.objects.filter(
        pk=answer.pk,
        transcription_status=Answer.Status.COMPLETED,
        transcribed_at=answer.transcribed_at,
    ).update(score=answer.score, feedback=answer.feedback, model_answer=answer.model_answer)
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


def session_analyze(*, session: InterviewSession) -> Analysis:
    """Score the session once no transcription is still running; report what is pending."""
    positions = dict(session.sessionquestion_set.values_list("question_id", "position"))
    answers = sorted(
        session.answers.select_related("question"), key=lambda a: positions[a.question_id]
    )
    if not answers:
        raise NoAnswers
    pending = [answer for answer in answers if answer.is_pending]
    if pending:
        processing = sum(a.transcription_status == Answer.Status.PROCESSING for a in pending)
        return Analysis(pending_count=len(pending), processing_count=processing, answers=answers)
    for answer in answers:
        if answer.transcription_status == Answer.Status.COMPLETED and answer.score is None:
            answer_score(answer=answer)
    scores = [answer.score for answer in answers if answer.score is not None]
    final_score = round(statistics.fmean(scores), 1) if scores else None
    InterviewSession.objects.filter(pk=session.pk).update(
        status=InterviewSession.Status.ANALYZED, final_score=final_score, analyzed_at=timezone.now()
    )
    return Analysis(pending_count=0, processing_count=0, answers=answers, final_score=final_score)

"""What the interview does when a transcription changes: tell the session's live stream,
score an answer once transcribed, and analyze the session once nothing is pending."""

from django.db.models.signals import post_delete
from django.dispatch import receiver
from rest_framework.authtoken.models import Token

from transcription.models import Transcription
from transcription.signals import transcription_changed

from . import events
from .models import Answer, InterviewSession
from .services import answer_score, session_analyze_when_done

FINAL = {Transcription.Status.COMPLETED, Transcription.Status.FAILED}


@receiver(transcription_changed, dispatch_uid="sessions_app-answer-changed")
def answer_changed(sender, transcription, new_status, old_status, **kwargs):
    if old_status is None:
        return  # a new recording: the upload recorded its event in the same commit
    answer = (
        Answer.objects.select_related("question", "transcription")
        .filter(transcription=transcription)
        .first()
    )
    if answer is None:  # re-recorded meanwhile: the new recording has its own events
        return
    # The candidate sees the status (and the transcript) first, then the score follows.
    events.answer_change_record(answer=answer, transcription=transcription)
    if new_status == Transcription.Status.COMPLETED:
        answer_score(answer=answer)
    if new_status in FINAL:
        session_analyze_when_done(session_id=answer.session_id)


@receiver(post_delete, sender=InterviewSession, dispatch_uid="sessions_app-close-session-streams")
def close_session_streams(sender, instance, **kwargs):
    events.streams_wake(key=events.session_key(instance.pk))


@receiver(post_delete, sender=Token, dispatch_uid="sessions_app-close-token-streams")
def close_token_streams(sender, instance, **kwargs):
    events.streams_wake(key=events.user_key(instance.user_id))

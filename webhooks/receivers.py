"""Turn the lifecycle's changes into webhook deliveries for the endpoints that listen."""

from django.dispatch import receiver

from sessions_app.models import Answer, InterviewSession
from sessions_app.serializers import AnswerResultSerializer, AnswerStatusSerializer
from sessions_app.signals import session_analyzed, session_deleted
from transcription.models import Transcription
from transcription.signals import transcription_changed

from . import services
from .models import Delivery, Event

ANSWER_EVENTS = {
    Transcription.Status.COMPLETED: Event.ANSWER_COMPLETED,
    Transcription.Status.FAILED: Event.ANSWER_FAILED,
}


@receiver(transcription_changed, dispatch_uid="webhooks-answer-events")
def answer_finished(sender, transcription, new_status, **kwargs):
    event = ANSWER_EVENTS.get(new_status)
    if event is None:
        return
    # Read after sessions_app's receiver scored it (it is connected first).
    answer = (
        Answer.objects.select_related("session", "transcription")
        .filter(transcription_id=transcription.pk)
        .first()
    )
    if answer is None:  # re-recorded or deleted meanwhile: nothing to tell
        return
    data = {"session_id": answer.session_id} | AnswerStatusSerializer(answer).data
    data |= {"score": answer.score, "score_error": answer.score_error, "feedback": answer.feedback}
    services.event_publish(user_id=answer.session.user_id, event=event, data=data)


@receiver(session_analyzed, dispatch_uid="webhooks-session-analyzed")
def session_was_analyzed(sender, session_id, **kwargs):
    session = InterviewSession.objects.filter(pk=session_id).first()
    if session is None or session.status != InterviewSession.Status.ANALYZED:
        return
    positions = dict(session.sessionquestion_set.values_list("question_id", "position"))
    answers = sorted(
        session.answers.select_related("transcription"), key=lambda a: positions[a.question_id]
    )
    data = {
        "session_id": session.pk,
        "status": session.status,
        "final_score": session.final_score,
        "analyzed_at": session.analyzed_at.isoformat(),
        "answers": AnswerResultSerializer(answers, many=True).data,
    }
    services.event_publish(user_id=session.user_id, event=Event.SESSION_ANALYZED, data=data)


@receiver(session_deleted, dispatch_uid="webhooks-session-deleted")
def session_was_deleted(sender, session_id, user_id, **kwargs):
    # The deliveries carry the session's transcripts and scores: they go with it.
    Delivery.objects.filter(
        endpoint__user_id=user_id, payload__data__session_id=session_id
    ).delete()

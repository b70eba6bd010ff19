"""What the interview does when a transcription changes: score an answer once transcribed."""

from django.dispatch import receiver

from transcription.models import Transcription
from transcription.signals import transcription_changed

from .models import Answer
from .services import answer_score


@receiver(transcription_changed, dispatch_uid="sessions_app-score-completed-answer")
def score_completed_answer(sender, transcription, new_status, **kwargs):
    if new_status != Transcription.Status.COMPLETED:
        return
    answer = (
        Answer.objects.select_related("question", "transcription")
        .filter(transcription=transcription)
        .first()
    )
    if answer is not None:  # None: re-recorded meanwhile
        answer_score(answer=answer)

from datetime import timedelta

from django.core.management.base import BaseCommand
from django.utils import timezone

from sessions_app.models import Answer
from transcription.models import Transcription
from transcription.services import RequeueRefused, transcription_requeue


class Command(BaseCommand):
    help = "Re-queue answers' failed (or stuck processing) transcriptions whose audio is stored."

    def add_arguments(self, parser):
        parser.add_argument("--session", type=int, help="only this interview session's answers")
        parser.add_argument(
            "--status",
            choices=[Transcription.Status.FAILED, Transcription.Status.PROCESSING],
            default="failed",
        )
        parser.add_argument(
            "--older-than",
            type=float,
            metavar="MINUTES",
            help="last changed at least this long ago",
        )
        parser.add_argument("--dry-run", action="store_true", help="list, change nothing")

    def handle(self, *, session, status, older_than, dry_run, **options):
        answers = (
            Answer.objects.filter(transcription__status=status)
            .select_related("transcription")
            .order_by("pk")
        )
        if session is not None:
            answers = answers.filter(session_id=session)
        if older_than is not None:
            cutoff = timezone.now() - timedelta(minutes=older_than)
            answers = answers.filter(transcription__updated_at__lt=cutoff)
        requeued = refused = 0
        for answer in answers:
            if dry_run:
                self.stdout.write(f"  would re-queue answer {answer.pk}")
                requeued += 1
                continue
            try:
                transcription_requeue(transcription=answer.transcription)
            except RequeueRefused as reason:
                refused += 1
                self.stdout.write(f"  answer {answer.pk} not re-queued: {reason}")
            else:
                requeued += 1
                self.stdout.write(f"  re-queued answer {answer.pk}")
        verb = "Would re-queue" if dry_run else "Re-queued"
        self.stdout.write(f"{verb} {requeued} transcriptions; {refused} could not be re-queued")

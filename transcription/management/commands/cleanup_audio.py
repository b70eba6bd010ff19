from django.conf import settings
from django.core.management.base import BaseCommand

from transcription.maintenance import cleanup_audio


class Command(BaseCommand):
    help = (
        "Delete GridFS audio older than --hours whose answer is not queued or processing, "
        "and orphan files and chunks."
    )

    def add_arguments(self, parser):
        parser.add_argument("--hours", type=float, default=settings.AUDIO_RETENTION_HOURS)
        parser.add_argument("--dry-run", action="store_true", help="count, delete nothing")

    def handle(self, *, hours, dry_run, **options):
        report = cleanup_audio(hours=hours, dry_run=dry_run)
        prefix = "Dry run, would have " if dry_run else "Cleanup "
        self.stdout.write(f"{prefix}{report}")

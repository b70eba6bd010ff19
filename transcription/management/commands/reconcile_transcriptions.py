from django.core.management.base import BaseCommand

from transcription.maintenance import reconcile


class Command(BaseCommand):
    help = (
        "Enqueue the job of each queued transcription that has none (or whose retry is due), "
        "and release those whose worker was lost (failing them past their attempts). "
        "A django-q2 schedule runs this every minute."
    )

    def add_arguments(self, parser):
        parser.add_argument("--dry-run", action="store_true", help="count, change nothing")

    def handle(self, *, dry_run, **options):
        report = reconcile(dry_run=dry_run)
        self.stdout.write(f"{'Dry run, would have ' if dry_run else 'Reconciled: '}{report}")
        for label, ids in [
            ("enqueued", report.enqueued),
            ("released", report.released),
            ("failed", report.failed),
        ]:
            for transcription_id in ids:
                self.stdout.write(f"  {label} transcription {transcription_id}")

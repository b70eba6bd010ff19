from django.core.management.base import BaseCommand

from transcription.maintenance import recover_stuck


class Command(BaseCommand):
    help = (
        "Re-queue answers left processing by a lost worker (older than the job timeout plus "
        "a margin); fail those that used up their attempts."
    )

    def add_arguments(self, parser):
        parser.add_argument("--dry-run", action="store_true", help="count, change nothing")

    def handle(self, *, dry_run, **options):
        report = recover_stuck(dry_run=dry_run)
        self.stdout.write(f"{'Dry run, would have ' if dry_run else 'Recovery '}{report}")
        for answer_id in report.requeued:
            self.stdout.write(f"  re-queued answer {answer_id}")
        for answer_id in report.failed:
            self.stdout.write(f"  failed answer {answer_id}")

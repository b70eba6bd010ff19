from django.core.management.base import BaseCommand

from transcription.maintenance import schedules_ensure


class Command(BaseCommand):
    help = (
        "Create or update the Django-Q schedules for cleanup and stuck-job recovery (idempotent)."
    )

    def add_arguments(self, parser):
        parser.add_argument("--dry-run", action="store_true", help="show, change nothing")

    def handle(self, *, dry_run, **options):
        for name, created in schedules_ensure(dry_run=dry_run):
            action = (
                "would create or update" if dry_run else ("created" if created else "up to date")
            )
            self.stdout.write(f"Schedule {name!r}: {action}")

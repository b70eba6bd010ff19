from django.core.management.base import BaseCommand

from sessions_app.services import question_bank_load


class Command(BaseCommand):
    help = "Create or update the shipped interview questions (safe to run again)."

    def handle(self, **options):
        count = question_bank_load()
        self.stdout.write(f"Question bank loaded: {count} questions")

import os
import secrets

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from rest_framework.authtoken.models import Token


class Command(BaseCommand):
    help = "Create (or reset) the demo user and print its username, password and API token."

    def add_arguments(self, parser):
        parser.add_argument("--username", default="demo")

    def handle(self, *, username, **options):
        password = os.environ.get("DEMO_PASSWORD") or secrets.token_urlsafe(9)
        user, _ = get_user_model().objects.get_or_create(username=username)
        user.set_password(password)
        user.save()
        token, _ = Token.objects.get_or_create(user=user)
        self.stdout.write(f"Demo user: {username}")
        self.stdout.write(f"Password:  {password}")
        self.stdout.write(f"API token: {token.key}")

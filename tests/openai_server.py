"""The fake OpenAI server (``fake_openai``) as pytest fixtures, and its names for the tests."""

import pytest

from fake_openai import *  # noqa: F403 - the tests import the server's names from here
from fake_openai import FakeOpenAI


# Named ``*_fixture`` so a test module importing them can take ``openai_server`` as an
# argument without shadowing the import (ruff F811).
@pytest.fixture(name="openai_server")
def openai_server_fixture():
    """Run a FakeOpenAI for one test."""
    server = FakeOpenAI().start()
    yield server
    server.stop()


@pytest.fixture(name="openai_settings")
def openai_settings_fixture(openai_server, settings):
    """Point the OpenAI settings at the fake server and return it."""
    settings.OPENAI_BASE_URL = openai_server.base_url
    settings.OPENAI_API_KEY = "test-key"
    settings.OPENAI_TRANSCRIPTION_MODEL = "whisper-1"
    settings.OPENAI_SCORING_MODEL = "gpt-4o-mini"
    settings.OPENAI_TIMEOUT_SECONDS = 10
    return openai_server

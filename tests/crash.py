"""Run one product action in a process that kills itself (SIGKILL) at an exact point.

    python -m tests.crash MODULE:FUNCTION CALL {before,after} ACTION [ARGS...]

The process dies right before or right after the CALL-th call of MODULE.FUNCTION, the way
an out-of-memory kill or a lost machine would stop it there: no exception handler, no
rollback code and no on-commit hook of ours runs. ACTION is ``upload SESSION QUESTION FILE``
or ``reconcile``.
"""

import functools
import importlib
import os
import signal
import sys

import django


def kill_at(module_name: str, function_name: str, call: int, when: str) -> None:
    module = importlib.import_module(module_name)
    original = getattr(module, function_name)
    calls = 0

    @functools.wraps(original)
    def dying(*args, **kwargs):
        nonlocal calls
        calls += 1
        if calls == call and when == "before":
            os.kill(os.getpid(), signal.SIGKILL)
        result = original(*args, **kwargs)
        if calls == call and when == "after":
            os.kill(os.getpid(), signal.SIGKILL)
        return result

    setattr(module, function_name, dying)


def main(target: str, call: str, when: str, action: str, *args: str) -> None:
    django.setup()
    module_name, function_name = target.split(":")
    kill_at(module_name, function_name, int(call), when)
    if action == "upload":
        from sessions_app.models import InterviewSession
        from sessions_app.services import answer_submit

        session_id, question_id, path = args
        session = InterviewSession.objects.get(pk=session_id)
        with open(path, "rb") as audio:
            answer_submit(
                session=session,
                question=session.questions.get(pk=question_id),
                audio=audio,
                content_type="audio/wav",
            )
    elif action == "reconcile":
        from transcription.maintenance import reconcile

        reconcile()
    print("finished without being killed")


if __name__ == "__main__":
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "interview_site.settings")
    main(*sys.argv[1:])

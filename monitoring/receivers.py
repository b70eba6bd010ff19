"""Where monitoring listens: the transcription lifecycle (counters and histograms) and
django-q's task signals (request id and error context carried from the upload into its job)."""

from django_q.signals import post_execute_in_worker, pre_enqueue, pre_execute

from transcription.signals import reconciled, transcription_changed

from . import errors, lifecycle, middleware
from .logs import request_id_var

# The request id travels inside the task package, beside django-q's own keys.
TASK_REQUEST_ID = "request_id"


def carry_request_id(sender, task, **kwargs):
    """A job queued while serving a request remembers that request's id."""
    request_id = request_id_var.get()
    if request_id and TASK_REQUEST_ID not in task:
        task[TASK_REQUEST_ID] = request_id


def job_started(sender, func, task, **kwargs):
    """In the worker: log the job's lines under its upload's request id; tag its errors."""
    request_id = task.get(TASK_REQUEST_ID, "")
    request_id_var.set(request_id)
    errors.job_context(task=task.get("name", ""), request_id=request_id)


def job_finished(sender, func, task, **kwargs):
    request_id_var.set("")
    errors.job_context_clear()


def connect() -> None:
    middleware.connect()
    transcription_changed.connect(
        lifecycle.record_transition, dispatch_uid="monitoring.record_transition"
    )
    reconciled.connect(lifecycle.record_reconcile, dispatch_uid="monitoring.record_reconcile")
    pre_enqueue.connect(carry_request_id, dispatch_uid="monitoring.carry_request_id")
    pre_execute.connect(job_started, dispatch_uid="monitoring.job_started")
    post_execute_in_worker.connect(job_finished, dispatch_uid="monitoring.job_finished")

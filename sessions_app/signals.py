"""What other apps (webhooks) listen to: a session analyzed, a session deleted."""

from django.dispatch import Signal

# Both are sent once, after the transaction that made the change commits:
#   session_analyzed: sender=InterviewSession, session_id=<int>
#   session_deleted: sender=InterviewSession, session_id=<int>, user_id=<int>
session_analyzed = Signal()
session_deleted = Signal()

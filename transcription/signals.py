"""What other apps listen to: one signal per status change of a transcription."""

from django.dispatch import Signal

# Sent once per status change, after the transaction that made it commits, in the process
# that made it: sender=Transcription, transcription=<the row as committed>,
# old_status=<str, or None when created>, new_status=<str>.
transcription_changed = Signal()

# Sent by the reconciler after each run that is not a dry run: report=<ReconcileReport>
# (the transcriptions it gave a job, released from a lost worker, or failed).
reconciled = Signal()

"""`make bench`: the non-blocking upload pipeline measured against the synchronous baseline."""

"""Fault injection: disk full on a real tmpfs, a low open-file limit, kill -9 during writes, and
the bugs of issue 12 point 7 ("faults are never silent")."""

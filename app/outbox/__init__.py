"""Sending: the outbox dispatcher (``dispatcher.py``), its claims and leases (``claims.py``), rate
limits (``limits.py``) and retry backoff (``backoff.py``), shared with the send-back actions.

Nothing is imported here, so the flow engine can import a sibling module without pulling in the
HTTP client.
"""

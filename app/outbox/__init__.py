"""Sending: the outbox table and its rows (``table.py``), messages from applications
(``sending.py``), the dispatcher (``dispatcher.py``) with its claims and leases (``claims.py``),
rate limits (``limits.py``) and retry backoff (``backoff.py``), and the send-back actions
(``actions.py``). It knows nothing of flows: they call it.
"""

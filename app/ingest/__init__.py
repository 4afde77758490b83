"""Ingestion of MO messages: the webhook, the IP allowlist and the group-commit writer."""

"""Flows: the files in ``flows/`` that inbound messages are matched against, and what they do."""

"""Flows: campaign files in ``flows/`` that inbound messages are matched against."""

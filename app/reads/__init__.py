"""Typed reads of what users see: a flow's results, messages with their links, a contact's
history, queue counts. Each function takes a SQLAlchemy ``Connection`` (async callers pass it
through ``run_sync``) and returns msgspec Structs; the API, the CLI and the dashboard render them.
Nothing here knows HTTP, click, rich or HTML.
"""

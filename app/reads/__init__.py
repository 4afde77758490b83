"""Typed read queries: what a person sees (results, queues, series), as msgspec Structs.

They know SQL and nothing of HTTP, HTML or terminals; the API, the CLI and the dashboard render them.
"""

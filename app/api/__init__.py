"""The JSON API, protected by a bearer token."""

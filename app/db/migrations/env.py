"""Alembic environment: always run with a connection handed over by app.db.migrate."""

from alembic import context

from app.db import access_models, board_models, draw_models, flow_models  # noqa: F401  (registers the tables)
from app.db.models import Base

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations with `smsflows db upgrade`, which supplies the connection")

context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()

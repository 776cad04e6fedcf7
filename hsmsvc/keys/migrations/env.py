"""Alembic environment: runs on the connection the key store hands in."""

from alembic import context

from hsmsvc.keys.schema import metadata

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=metadata)
with context.begin_transaction():
    context.run_migrations()

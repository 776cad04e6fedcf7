"""Alembic environment: on the connection the key store hands in; or offline (``--sql``), writing the
SQL for the URL's dialect without connecting; or from the ``alembic`` command line, on its own
connection to ``sqlalchemy.url`` (``alembic.ini`` beside this file reads it from ``HSMSVC_STORE``)."""

import os

from alembic import context

from hsmsvc.keys.schema import metadata

config = context.config


def _url() -> str:
    url = config.get_main_option("sqlalchemy.url") or os.environ.get("HSMSVC_STORE")
    if not url:
        raise SystemExit("hsmsvc migrations: no database URL (sqlalchemy.url or HSMSVC_STORE)")
    return url


if context.is_offline_mode():
    context.configure(url=_url(), target_metadata=metadata, literal_binds=True,
                      dialect_opts={"paramstyle": "named"})
    with context.begin_transaction():
        context.run_migrations()
elif "connection" in config.attributes:
    context.configure(connection=config.attributes["connection"], target_metadata=metadata)
    with context.begin_transaction():
        context.run_migrations()
else:
    from hsmsvc.keys.store.database import Database

    db = Database(_url())
    try:
        with db.connect() as connection:
            context.configure(connection=connection, target_metadata=metadata)
            with context.begin_transaction():
                context.run_migrations()
            connection.commit()
    finally:
        db.close()

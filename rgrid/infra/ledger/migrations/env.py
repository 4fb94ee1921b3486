"""Alembic's environment: migrations always run on a connection rgrid hands over
(see rgrid.infra.ledger.migrations.upgrade), never on a URL of their own."""

from alembic import context
from sqlmodel import SQLModel

import rgrid.infra.ledger.tables  # noqa: F401  (registers the tables on SQLModel.metadata)

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError(
        "rgrid's migrations run through rgrid.infra.ledger.migrations, not alembic's CLI"
    )

context.configure(
    connection=connection,
    target_metadata=SQLModel.metadata,
    # SQLite alters tables by copying them; batch mode does that for us.
    render_as_batch=True,
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()

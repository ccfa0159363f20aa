"""alembic environment: migrations run on the connection (and inside the transaction) that
`serving.registry.schema.migrate` passes in `config.attributes["connection"]`."""

from alembic import context

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError(
        "the registry migrates itself when opened: Registry('registry.db') or "
        "Registry('postgresql://user@host:5432/db'); the alembic CLI is not wired to a database"
    )
context.configure(connection=connection)
with context.begin_transaction():
    context.run_migrations()

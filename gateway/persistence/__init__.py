"""Where the gateway's state rests: the tables (one `metadata`, one list of table modules), Alembic migrations,
engines (SQLite with BEGIN IMMEDIATE, PostgreSQL), the unit of work, repositories, and the sealing and blind
indexing of personal data.

May import config, observability, domain and certstore; nothing above.
"""

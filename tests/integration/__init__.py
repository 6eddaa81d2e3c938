"""Integration tests: both databases (SQLite and PostgreSQL), simulators over real HTTP, RabbitMQ, real
`yiwang` commands."""

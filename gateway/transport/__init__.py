"""How outbox rows leave and background work runs: the in-process delivery loop (the embedded default), the
scheduler of leased jobs, and the RabbitMQ transport (topology, confirmed publisher, outbox relay, workers).
Each hands one message at a time to `gateway.sectors.delivery`.

May import sectors and everything below; no web framework.
"""

"""How outbox rows leave and background work runs: the scheduler of leased jobs, and the RabbitMQ
transport (topology, confirmed publisher, outbox relay, workers). The in-process transport is the delivery
loop of `gateway.sectors.delivery`.

May import sectors and everything below; no web framework.
"""

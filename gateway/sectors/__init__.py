"""The outbound side: the record of bundle versions, this process's live registry of adapters, delivering
one outbox message to its sector and recording the outcome, and the calls that are not deliveries
(queries, previews, bundle tests, the callbacks sectors make).

May import cases and everything below, and the adapters' public API; no web framework, CLI or broker.
"""

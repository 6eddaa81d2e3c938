"""Notifications to the hall: case events fanned out on the AMQP topic exchange and to webhook
subscriptions. May import persistence, config, observability and domain (a publisher is handed in, never
a broker client).
"""

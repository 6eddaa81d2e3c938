"""Structured logs with personal data masked, and correlation ids (context only: the ASGI middleware
that binds them for a request is `gateway.http.middleware`). May import nothing of the gateway but config.
"""

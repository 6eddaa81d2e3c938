"""Who may call and with what: API keys and identities, the four-eyes approvals, per-identity rate limits,
the certificate store as the gateway opens and watches it, and the credentials this repository publishes
(refused in production). May import persistence, config, observability and domain, and certstore.
"""

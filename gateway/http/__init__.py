"""The HTTP side: one router per area, and what routers share (dependencies, schemas, middleware, problems).

May import every layer below `gateway.http` (transport excluded: a router hands work to services, never to a
transport). Routers never import each other; what two of them share lives in a module of its own here.
"""

"""The composition root, and the only one: builds the gateway from `Settings` (`app.build_gateway`), the
web app with its one tuple of routers (`app.create_app`), the `yiwang` command line (`cli`), serving under
uvicorn, the demo, and the strict start of production.

May import everything, `ops` and the adapter kinds and simulators included. Nothing imports it (tests aside).
"""

"""Fault tests: processes killed, the broker cut or stopped (a node of its own), database sessions
terminated, sectors down."""

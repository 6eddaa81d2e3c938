"""The case service (every command the hall, windows, departments, the issuing window and the clock
give a case: one unit of work each) and the read models callers see.

May import catalogue, materials, notifications, audit, security and everything below.
"""

"""What tests share: helpers, fixtures and harnesses, imported by test modules; never a test module itself.

Test modules import from here (and conftest.py provides the common fixtures); nothing here imports a test module."""

"""Helpers the tests import (fixtures stay in `tests/conftest.py`); never a test module."""

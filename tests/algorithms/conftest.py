"""The training tests' fixtures live in ``tests/conftest.py`` (the weak calculator agent is
shared with the cycle's tests: one per session)."""

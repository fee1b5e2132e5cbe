"""Core: typed records and the error hierarchy shared by every layer."""

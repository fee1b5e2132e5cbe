"""Environments: the registry, text spaces, tools, and one env per file by family
(``tooluse/``)."""

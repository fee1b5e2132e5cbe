"""Environments: the registry, text spaces, tools, the checks every text env shares
(``common``), and one env per file by family (``tooluse/``; ``problems/``: one generic env and
one problem family per file)."""

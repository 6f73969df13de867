"""The checks: one module per built-in check behind the ``Check`` protocol (``protocol.py``), the rules
they share written once (``rules.py``), and the registry of built-in and third-party checks
(``registry.py``) from which the whole check vocabulary derives. See docs/checks.md."""

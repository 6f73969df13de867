"""Entitlements computed from verified facts: dated rule parameters (``parameters.py``, OpenFisca's YAML
format under ``config/rules/``) and pure evaluators over them (``asd.py``: the Aide sociale directe)."""

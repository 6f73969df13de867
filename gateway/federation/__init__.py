"""Asking the administrations: the checks (``checks/``: protocol, rules, one module each, the registry),
which calls they want next (``plan.py``, pure), running those rounds concurrently (``executor.py``), and
what was gathered (``evidence.py``)."""

"""The rule trees a running gateway uses, loaded once: ``<config_dir>/rules/asd`` (``prepare`` at start-up,
where a mistake stops the gateway with one line naming file and key), else the shipped ``config/rules/asd``."""

from __future__ import annotations

from pathlib import Path

from gateway.entitlement.asd import RULES_DIR, load_rules
from gateway.entitlement.parameters import ParameterTree

_loaded: dict[str, ParameterTree] = {}


def prepare(config_dir: Path) -> ParameterTree:
    """Load (once per directory) the ASD tree of ``config_dir`` and make it the one in use."""
    root = config_dir / "rules" / "asd"
    if not root.is_dir():
        root = RULES_DIR
    key = str(root.resolve())
    tree = _loaded.get(key) or load_rules(root)
    _loaded[key] = _loaded["asd"] = tree
    return tree


def asd() -> ParameterTree:
    """The ASD tree in use (the shipped one unless ``prepare`` chose another)."""
    tree = _loaded.get("asd")
    if tree is None:
        tree = _loaded["asd"] = load_rules(RULES_DIR)
    return tree

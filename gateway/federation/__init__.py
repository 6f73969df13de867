"""Asking the administrations: which operations answer which checks, run in stages, and the checks'
rules from the gathered evidence to facts and verdicts."""

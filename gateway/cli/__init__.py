"""``anss-gateway``: the command line."""

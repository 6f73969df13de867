"""The five administrations as real HTTP servers over one synthetic population (demo, tests, benchmarks)."""

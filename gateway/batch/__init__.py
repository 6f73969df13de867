"""Population re-verification: batches of subjects verified in chunks, with resumable, idempotent work.

``store`` keeps batches, chunks and results (the ``BatchStore`` protocol, SQLite) and ``postgres`` the same on
PostgreSQL; ``runner`` holds the chunk job and the embedded engine; ``jobs`` the procrastinate engine (a job per
chunk, for ``anss-gateway worker`` processes); ``service`` is what the API handlers use and picks the store and
engine from the settings. docs/batches.md.
"""

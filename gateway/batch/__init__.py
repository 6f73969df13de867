"""Population re-verification: batches of subjects verified in chunks, with resumable, idempotent work.

``store`` keeps batches, chunks and results; ``runner`` holds the chunk job and the embedded engine;
``service`` is what the API handlers use. docs/batches.md.
"""

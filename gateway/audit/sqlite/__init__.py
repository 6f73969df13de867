"""The access log on SQLite (the embedded default): store, schema, search index, tree reads."""

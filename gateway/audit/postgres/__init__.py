"""The access log on PostgreSQL: store, schema, search index, whole-log reads on one snapshot."""

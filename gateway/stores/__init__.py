"""Where state lives: the storage backends, PostgreSQL and Redis connections, and files the gateway keeps."""

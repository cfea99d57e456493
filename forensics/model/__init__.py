"""The run model: everything ingest found, as one in-memory object the checks read."""

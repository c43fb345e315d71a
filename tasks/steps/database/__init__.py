"""The database's work: verified backups (their dump filter, retention, metadata), restores with their guard,
the client's option files and SQL, and the connector through a tunnel."""

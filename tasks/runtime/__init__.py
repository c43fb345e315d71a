"""What a run keeps on a host beside the steps, below the session: host locks, dead runs' leftovers, the
links it knows while it holds a lock, and reading and writing files on a host."""

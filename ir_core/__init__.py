"""Bottom layer: the types and I/O every stage shares; it imports nothing else of the project."""

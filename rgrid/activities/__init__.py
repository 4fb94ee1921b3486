"""Activities: all I/O of an execution, grouped by where they run."""

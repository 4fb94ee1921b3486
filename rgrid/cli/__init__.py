"""The rgrid command line: a thin edge over rgrid.client."""

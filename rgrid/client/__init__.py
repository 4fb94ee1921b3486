"""The client side of rgrid: what the CLI (or any program) calls to submit and follow runs."""

"""Node providers: where node agents come from (local subprocesses, Hetzner Cloud)."""

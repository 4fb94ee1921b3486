"""The web console (`rgrid console`): server-rendered pages with htmx, token-protected."""

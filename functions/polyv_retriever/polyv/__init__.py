"""Polyv VOD v3: request signing, the HTTP client and the typed results."""

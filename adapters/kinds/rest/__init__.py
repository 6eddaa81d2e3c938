"""The REST adapter kind: sectors reached over HTTP with JSON bodies (httpx)."""

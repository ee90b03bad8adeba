"""The Builder's small admin HTTP API (aiohttp)."""

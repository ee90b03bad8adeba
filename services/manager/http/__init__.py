"""The Manager's HTTP API (aiohttp): routes, views, schemas, middlewares and the OpenAPI document."""

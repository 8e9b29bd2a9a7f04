"""The HTTP API v1: JSON over a unix socket and, optionally, over TLS on TCP.

``app`` builds the FastAPI application around a ``Service`` from the
routers in ``routes`` (one per OpenAPI tag), the service and runtime
``dependencies`` and the pure ASGI ``middleware``; ``models`` holds the
request and response envelopes; ``errors`` is the one table from error
codes to HTTP statuses; ``server`` runs the uvicorn servers on sockets the
daemon binds itself; ``metrics`` is the Prometheus side.
"""

"""The REST API (``mailwarden api``): FastAPI app under ``/api/v1``, OpenAPI 3.1 at
``/api/v1/openapi.json``.

``app.create_app(env)`` builds the ASGI app; ``auth`` turns a bearer token or a mailbox
login into an ``ops.base.Actor``; ``errors`` maps ``mailwarden.errors`` onto status
codes and the one error shape ``{"error": {"code", "message"}}``; ``routes`` are thin:
parse, call one ``ops`` function, map its result; ``models`` are the request bodies
(unknown fields refused). See docs/api.md.
"""

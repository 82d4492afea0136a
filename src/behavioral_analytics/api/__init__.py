"""The HTTP side: the collector (ingest), the query API, ops routes and the live dashboard.

`create_app` (in `app`) builds the FastAPI application; `server.serve` runs it with uvicorn.
"""

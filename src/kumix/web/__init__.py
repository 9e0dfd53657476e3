"""The local web server: a loopback-only ASGI application over `kumix.app`.

Starlette lives in `kumix.web.routes` and uvicorn in `kumix.web.server`; the checks that
make it safe to expose to a browser (`security`, `sessions`, `headers`, `media_rules`,
`send_queue`) are pure and import neither.
"""

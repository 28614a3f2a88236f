"""A Content-Security-Policy for the page: only our own scripts run, and images come only from us.

NiceGUI's page template has inline <script> blocks of its own, so each page gets a fresh nonce that
those blocks carry. Because the policy names a nonce, browsers ignore inline event handlers such as
`<img onerror=...>`, and `img-src` keeps remote images from loading even if one slipped through.
Vue compiles templates at run time, which needs 'unsafe-eval'; it does not allow inline handlers.
"""

from __future__ import annotations

import secrets

from starlette.middleware.base import BaseHTTPMiddleware, RequestResponseEndpoint
from starlette.requests import Request
from starlette.responses import Response

POLICY = ("default-src 'self'; script-src 'self' 'nonce-{nonce}' 'unsafe-eval'; style-src 'self' 'unsafe-inline'; "
          "img-src 'self' data:; font-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; "
          "form-action 'self'; frame-ancestors 'self'")


class ContentSecurityPolicy(BaseHTTPMiddleware):
    async def dispatch(self, request: Request, call_next: RequestResponseEndpoint) -> Response:
        response = await call_next(request)
        if not response.headers.get('content-type', '').startswith('text/html'):
            return response
        body = b''.join([chunk async for chunk in response.body_iterator])  # type: ignore[attr-defined]
        nonce = secrets.token_urlsafe(16)
        # The page's HTML holds only NiceGUI's template: messages reach the tab later, over the socket,
        # so every <script> here is NiceGUI's own.
        body = body.replace(b'<script', f'<script nonce="{nonce}"'.encode())
        headers = {key: value for key, value in response.headers.items() if key.lower() != 'content-length'}
        headers['Content-Security-Policy'] = POLICY.format(nonce=nonce)
        return Response(body, status_code=response.status_code, headers=headers)

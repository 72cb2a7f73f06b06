"""Import DSPy without its network and disk habits.

DSPy pulls in LiteLLM, which downloads a model price map at import unless
``LITELLM_LOCAL_MODEL_COST_MAP`` is set, and DSPy keeps a response cache on disk under
``~/.dspy_cache``. promptopt has its own response cache (in its store), so the DSPy
runs here do not need DSPy's: its disk cache is pointed into promptopt's cache directory
(``$PROMPTOPT_CACHE_DIR/dspy``) and switched off, and the LM adapter bypasses it anyway.
Both are set before the first ``import dspy``; :func:`import_dspy` is the only place in
promptopt that imports it.
"""

from __future__ import annotations

import os
import threading
import warnings
from typing import Any

from promptopt.errors import MissingDependencyError

_lock = threading.Lock()
_configured = False
INSTALL_HINT = "pip install 'promptopt[dspy]'  (dspy pins openai<3: use a separate venv, see the README)"


def dspy_cache_dir() -> str:
    """Where DSPy may keep files: ``<promptopt cache dir>/dspy``."""
    from promptopt.models import cache_dir

    return str(cache_dir() / "dspy")


def quiet_environment() -> None:
    """Set the variables that keep LiteLLM and DSPy offline and out of ``~``. Idempotent;
    values a user set explicitly are kept."""
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    os.environ.setdefault("DSPY_CACHEDIR", dspy_cache_dir())
    # LiteLLM's optional telemetry and its "new version" notice.
    os.environ.setdefault("LITELLM_TELEMETRY", "False")


def import_dspy() -> Any:
    """``dspy``, imported offline, with its own response cache off (promptopt caches)."""
    global _configured
    quiet_environment()
    try:
        import dspy
    except ImportError as exc:
        raise MissingDependencyError("DSPy interop needs the dspy package", hint=INSTALL_HINT) from exc
    with _lock:
        if not _configured:
            # DSPy 3.4 warns on every call of an LM written to its forward() contract,
            # which PromptOptLM is (the extra pins dspy<3.5, where it is still supported).
            warnings.filterwarnings(
                "ignore",
                message="Implementing custom LMs through BaseLM.forward",
                category=DeprecationWarning,
            )
            # Memory only: nothing is written, and promptopt's cache is the one that counts.
            dspy.configure_cache(
                enable_disk_cache=False, enable_memory_cache=False, disk_cache_dir=dspy_cache_dir()
            )
            _configured = True
    return dspy

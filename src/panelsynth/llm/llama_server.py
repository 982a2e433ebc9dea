"""llama-cpp-python's OpenAI-compatible server, with llama.cpp's extra buffer types (AMX) off.

Usage (the arguments are the server's own, ``python -m llama_cpp.server --help``; ``--model``
defaults to the embedded SmolLM2 file)::

    python -m panelsynth.llm.llama_server --host 127.0.0.1 --port 8000 --model_alias smollm2
    panelsynth run --workspace my-study --wave 1 --model openai/smollm2 \
        --base-url http://127.0.0.1:8000/v1

It is ``python -m llama_cpp.server`` (the package's ``server`` extra) with two changes: models
load with ``use_extra_bufts = False``, as the in-process ``local/`` client loads them, and the
thread counts default to the in-process client's (half the CPUs, or
``PANELSYNTH_LLAMA_THREADS``). The server
has no setting for it, and on CPUs with AMX the extra buffer types crash with a SIGSEGV in
``ggml_backend_amx_mul_mat``. That server accepts ``response_format`` of type ``json_object``
with a ``schema`` (not ``json_schema``): use ``--structured-output json`` or ``auto``.
"""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> None:
    """Run the server with ``argv`` (default: the command line)."""
    args = list(sys.argv[1:] if argv is None else argv)
    if "--model" not in args and not any(a.startswith("--model=") for a in args):
        from panelsynth.llm.local import resolve_gguf

        args = ["--model", str(resolve_gguf("smollm2")), *args]
    from panelsynth.llm.local import _default_threads

    for flag in ("--n_threads", "--n_threads_batch"):  # as the in-process client: see there
        if flag not in args and not any(a.startswith(f"{flag}=") for a in args):
            args += [flag, str(_default_threads())]
    try:
        from llama_cpp.server.__main__ import main as serve
    except ImportError as exc:
        raise SystemExit(
            f"llama-cpp-python's server is not installed ({exc}): "
            "pip install 'llama-cpp-python[server]'"
        ) from None
    from panelsynth.llm.local import _without_extra_bufts

    sys.argv = [sys.argv[0], *args]
    with _without_extra_bufts():
        serve()


if __name__ == "__main__":
    main()

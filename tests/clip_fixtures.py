"""Small CLIP models written by the tests themselves, so nothing is downloaded:

* :func:`tiny_open_clip_dir`: an open_clip ``local-dir:`` folder (``open_clip_config.json``
  of a 2-layer, 64-wide ViT / text transformer with open_clip's own vocabulary size; open_clip's
  packaged BPE tokenizer serves it);
* :func:`tiny_hf_clip_dir`: what ``save_pretrained`` writes for a randomly initialised tiny
  ``CLIPModel``, a ``CLIPTokenizer`` built from a byte-level vocabulary and merges written
  here, and a ``CLIPImageProcessor``.
"""

from __future__ import annotations

import json
from pathlib import Path

OPEN_CLIP_TINY = {
    "model_cfg": {
        "embed_dim": 32,
        "vision_cfg": {"image_size": 64, "layers": 2, "width": 64, "patch_size": 16},
        "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 2,
                     "layers": 2},
    },
    "preprocess_cfg": {},
}  # fmt: skip


def tiny_open_clip_dir(folder: Path) -> Path:
    """An open_clip model folder without weights (use it with ``clip_weights=random``)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "open_clip_config.json").write_text(json.dumps(OPEN_CLIP_TINY))
    return folder


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2 / CLIP's reversible byte -> printable character table."""
    bs = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1),
          *range(ord("®"), ord("ÿ") + 1)]  # fmt: skip
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, [chr(c) for c in cs], strict=True))


def tiny_hf_clip_dir(folder: Path, seed: int = 0) -> Path:
    """A transformers CLIP folder (model with random weights, tokenizer, image processor)."""
    import torch
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPTokenizer

    folder.mkdir(parents=True, exist_ok=True)
    chars = list(_bytes_to_unicode().values())
    merges = ["r o", "ro a", "roa d</w>", "c a", "ca r</w>"]
    vocab = [*chars, *(c + "</w>" for c in chars), "ro", "roa", "road</w>", "ca", "car</w>"]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    (folder / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(vocab)}))
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")
    tokenizer = CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"))
    bos, eos = len(vocab) - 2, len(vocab) - 1
    text = {"vocab_size": len(vocab), "hidden_size": 32, "intermediate_size": 64,
            "num_hidden_layers": 2, "num_attention_heads": 2, "max_position_embeddings": 77,
            "bos_token_id": bos, "eos_token_id": eos, "pad_token_id": eos}  # fmt: skip
    vision = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
              "num_attention_heads": 2, "image_size": 32, "patch_size": 8}  # fmt: skip
    torch.manual_seed(seed)
    model = CLIPModel(CLIPConfig(text_config=text, vision_config=vision, projection_dim=16))
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    size = {"shortest_edge": 32}
    processor = CLIPImageProcessor(size=size, crop_size={"height": 32, "width": 32})
    processor.save_pretrained(folder)
    return folder

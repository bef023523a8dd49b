"""CLIP backends and prompt building, against the libraries' own reference computations:
open_clip's ``build_zero_shot_classifier`` and model forward, transformers' ``CLIPModel``
forward (``logits_per_image``). Only tiny models the tests write (tests/clip_fixtures.py);
nothing is downloaded."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from clip_fixtures import tiny_hf_clip_dir, tiny_open_clip_dir

from sam_bench.clip import ClipUnavailable, build_clip
from sam_bench.clip.prompts import (
    class_prompts,
    class_scores,
    encode_classes,
    fill,
    label_and_confidence,
)
from sam_bench.data.semantic_folder import ClassInfo
from sam_bench.errors import ConfigError
from sam_bench.tasks.semantic.settings import SemanticConfig

CPU = torch.device("cpu")
CLASSES = (ClassInfo(0, ("sky",)), ClassInfo(3, ("road", "street", "asphalt")),
           ClassInfo(8, ("car",)))  # fmt: skip
TEMPLATES = ["a photo of a {}.", "a {} in a street scene."]


@pytest.fixture(scope="module")
def oc_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_open_clip_dir(tmp_path_factory.mktemp("oc"))


@pytest.fixture(scope="module")
def oc(oc_dir: Path):
    return build_clip(
        SemanticConfig(clip_model=f"local-dir:{oc_dir}", clip_weights="random"), CPU, seed=3
    )


@pytest.fixture(scope="module")
def hf_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_hf_clip_dir(tmp_path_factory.mktemp("hf"))


def _images(n: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (20 + 7 * i, 30 + 3 * i, 3), dtype=np.uint8) for i in range(n)]


def test_prompts_cover_every_name_and_template() -> None:
    assert fill("a {} with {braces}", "car") == "a car with {braces}"
    prompts = class_prompts(CLASSES[1], TEMPLATES)
    assert prompts == [
        ["a photo of a road.", "a road in a street scene."],
        ["a photo of a street.", "a street in a street scene."],
        ["a photo of a asphalt.", "a asphalt in a street scene."],
    ]


def test_open_clip_backend_matches_open_clip_itself(oc, oc_dir: Path) -> None:
    import open_clip
    from PIL import Image

    torch.manual_seed(3)  # the backend seeds its random weights the same way
    ref, _, preprocess = open_clip.create_model_and_transforms(f"local-dir:{oc_dir}",
                                                               load_weights=False)  # fmt: skip
    ref.eval()
    tok = open_clip.get_tokenizer(f"local-dir:{oc_dir}")
    assert oc.info.untrained and oc.info.pretrained is None and oc.info.image_size == 64
    images = _images(3)
    with torch.no_grad():
        want_img = ref.encode_image(torch.stack([preprocess(Image.fromarray(i)) for i in images]),
                                    normalize=True)  # fmt: skip
        want_txt = ref.encode_text(tok(["a photo of a car."]), normalize=True)
    torch.testing.assert_close(oc.encode_images(images), want_img, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(oc.encode_text(["a photo of a car."]), want_txt)
    # class embeddings with one name per class = open_clip's zero-shot classifier weights
    single = [ClassInfo(c.index, c.names[:1]) for c in CLASSES]
    text = encode_classes(oc, single, TEMPLATES, "mean")
    weights = open_clip.build_zero_shot_classifier(
        ref, tok, [c.name for c in single], TEMPLATES, device="cpu"
    )
    torch.testing.assert_close(text.rows, weights.T, rtol=1e-5, atol=1e-6)
    # scores = cosine similarities; probabilities = softmax(logit_scale * scores)
    scores = class_scores(oc.encode_images(images), text)
    np.testing.assert_allclose(scores, (want_img @ weights).numpy(), rtol=1e-5, atol=1e-6)
    best, conf, prob = label_and_confidence(scores, oc.info.logit_scale)
    want = torch.softmax(ref.logit_scale.exp() * want_img @ weights, dim=1).detach().numpy()
    np.testing.assert_allclose(prob, want, rtol=1e-4, atol=1e-6)
    assert best.tolist() == want.argmax(1).tolist()
    np.testing.assert_allclose(conf, want.max(1), rtol=1e-4)


def test_random_weights_are_deterministic_from_the_seed(oc, oc_dir: Path) -> None:
    cfg = SemanticConfig(clip_model=f"local-dir:{oc_dir}", clip_weights="random")
    assert build_clip(cfg, CPU, seed=3).info.state_dict_hash == oc.info.state_dict_hash
    assert build_clip(cfg, CPU, seed=4).info.state_dict_hash != oc.info.state_dict_hash


def test_synonyms_mean_and_max(oc) -> None:
    emb = {p: oc.encode_text([p])[0] for c in CLASSES for n in class_prompts(c, TEMPLATES)
           for p in n}  # fmt: skip

    def unit(v: torch.Tensor) -> torch.Tensor:
        return v / v.norm()

    road = class_prompts(CLASSES[1], TEMPLATES)
    mean = encode_classes(oc, CLASSES, TEMPLATES, "mean")
    assert mean.rows.shape[0] == 3 and mean.owner.tolist() == [0, 1, 2]
    want = unit(torch.stack([emb[p] for n in road for p in n]).mean(0))
    torch.testing.assert_close(mean.rows[1], want, rtol=1e-5, atol=1e-6)
    mx = encode_classes(oc, CLASSES, TEMPLATES, "max")
    assert mx.owner.tolist() == [0, 1, 1, 1, 2]  # one row per name
    img = oc.encode_images(_images(2, seed=5))
    per_name = [unit(torch.stack([emb[p] for p in n]).mean(0)) for n in road]
    want_road = torch.stack([img @ e for e in per_name]).max(0).values
    np.testing.assert_allclose(class_scores(img, mx)[:, 1], want_road.numpy(), rtol=1e-5,
                               atol=1e-6)  # fmt: skip


def test_transformers_backend_matches_clip_model_forward(hf_dir: Path) -> None:
    from transformers import CLIPModel, CLIPProcessor

    cfg = SemanticConfig(backend="transformers", clip_model=str(hf_dir))
    clip = build_clip(cfg, CPU, seed=0)  # pretrained: the weights saved in the folder
    ref = CLIPModel.from_pretrained(hf_dir).eval()
    from sam_bench.models.checkpoints import state_dict_hash

    assert clip.info.state_dict_hash == state_dict_hash(ref.state_dict())
    assert not clip.info.untrained and clip.info.pretrained == str(hf_dir.resolve())
    proc = CLIPProcessor.from_pretrained(hf_dir)
    texts = ["a photo of a road.", "a photo of a car.", "a photo of a sky."]
    images = _images(2)
    inputs = proc(text=texts, images=images, return_tensors="pt", padding=True)
    with torch.no_grad():
        want = ref(**inputs).logits_per_image  # logit_scale * cosine
    got = clip.info.logit_scale * (clip.encode_images(images) @ clip.encode_text(texts).T)
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)
    rand = SemanticConfig(backend="transformers", clip_model=str(hf_dir), clip_weights="random")
    a, b = build_clip(rand, CPU, seed=1), build_clip(rand, CPU, seed=1)
    assert a.info.untrained and a.info.state_dict_hash == b.info.state_dict_hash
    assert a.info.state_dict_hash != clip.info.state_dict_hash


def test_bad_settings_name_their_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"semantic\.clip_model.*did you mean 'ViT-B-32'"):
        build_clip(SemanticConfig(clip_model="ViT-B-23", clip_weights="random"), CPU, 0)
    with pytest.raises(ConfigError, match=r"semantic\.clip_pretrained.*neither a pretrained tag"):
        build_clip(SemanticConfig(clip_model="ViT-B-32", clip_pretrained="nope"), CPU, 0)
    hf = {"backend": "transformers"}
    with pytest.raises(ConfigError, match=r"semantic\.clip_pretrained.*does not apply"):
        build_clip(SemanticConfig(**hf, clip_model=str(tmp_path), clip_pretrained="x"), CPU, 0)
    with pytest.raises(ConfigError, match=r"semantic\.clip_model.*folder not found"):
        build_clip(SemanticConfig(**hf, clip_model=str(tmp_path / "none")), CPU, 0)


def test_missing_weights_offline_is_one_clear_error(tmp_path: Path, monkeypatch) -> None:
    """No network is tried: the hub is switched off, the cache is an empty folder."""
    import huggingface_hub.constants as hub

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(hub, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(hub, "HF_HUB_CACHE", str(tmp_path / "hub"))
    with pytest.raises(ClipUnavailable) as e:
        build_clip(SemanticConfig(clip_model="ViT-B-32"), CPU, 0)  # tag openai, not cached
    text = str(e.value)
    assert text.startswith("CLIP weights (tag 'openai') for open_clip 'ViT-B-32' not available")
    assert "semantic.clip_pretrained=" in text and "semantic.clip_weights=random" in text
    hf = SemanticConfig(backend="transformers", clip_model="sam-bench-tests/no-such-clip")
    with pytest.raises(ClipUnavailable, match=r"semantic\.clip_model=/path/to/folder"):
        build_clip(hf, CPU, 0)

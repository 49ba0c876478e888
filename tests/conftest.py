"""Shared fixtures: tiny random Hugging Face models built locally (no download)."""

import os

import pytest

# Tests never reach the Hugging Face hub: unknown names fail at once instead of retrying.
os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="session")
def tiny_model_dirs(tmp_path_factory):
    """``{"gpt2": folder, "llama": folder, "bert": folder}`` of tiny random models.

    Each folder is a complete ``save_pretrained`` model + tokenizer
    (see :func:`lmbrain.testing.make_tiny_model`): 2 layers, hidden size 32.
    """
    from lmbrain.testing import ARCHS, make_tiny_model

    root = tmp_path_factory.mktemp("tiny_models")
    return {arch: make_tiny_model(root / arch, arch=arch, seed=i) for i, arch in enumerate(ARCHS)}


@pytest.fixture(scope="session")
def tiny_model_dir(tiny_model_dirs):
    """Folder of a tiny GPT-2-style model (usable as a config `model:` entry)."""
    return tiny_model_dirs["gpt2"]

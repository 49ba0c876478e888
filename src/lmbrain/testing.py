"""Tiny, randomly initialised language models for tests and demos.

:func:`make_tiny_model` writes a complete Hugging Face model folder (config, weights and a
fast tokenizer trained on a few sentences), so tests exercise the real loading path
(``AutoModel.from_pretrained`` / ``AutoTokenizer.from_pretrained``) without any download.
Three tokenizer conventions are covered:

- ``"gpt2"``: byte-level BPE whose tokens carry their leading space (``"Ġword"``), no BOS;
- ``"llama"``: Metaspace BPE (``"▁word"``) with a ``<s>`` BOS token, rotary positions;
- ``"bert"``: lower-casing WordPiece (``"##piece"``) with ``[CLS] ... [SEP]``, bidirectional.
"""

from __future__ import annotations

from pathlib import Path

#: Sentences the tiny tokenizers are trained on (every test word should come from here).
CORPUS = [
    "Once upon a time there was a little fox who lived at the edge of a quiet forest.",
    "Every morning the fox walked down to the river, looked at the water and listened.",
    "One day a heron said: you should travel, because the world is larger than the river!",
    "The fox was afraid, but curious; so she packed some bread and started walking north.",
    "She crossed hills and fields, met farmers, dogs and a very old tortoise named Max.",
    "After many weeks she came home again, tired and happy, and told her friends everything.",
]

ARCHS = ("gpt2", "llama", "bert")


def corpus_words() -> list[str]:
    """All whitespace-separated words of :data:`CORPUS`, punctuation attached, in order."""
    return " ".join(CORPUS).split()


def make_tiny_tokenizer(arch: str = "gpt2", vocab_size: int = 300):
    """A fast tokenizer of the given convention, trained on :data:`CORPUS`.

    Parameters
    ----------
    arch : {"gpt2", "llama", "bert"}
        Tokenizer convention (see the module docstring).
    vocab_size : int
        Target vocabulary size of the trainer.

    Returns
    -------
    transformers.PreTrainedTokenizerFast
    """
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
    from tokenizers import trainers as tr
    from transformers import PreTrainedTokenizerFast

    if arch == "gpt2":
        tok = Tokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        special = {"eos_token": "<|endoftext|>", "bos_token": "<|endoftext|>"}
        trainer = tr.BpeTrainer(
            vocab_size=vocab_size,
            show_progress=False,
            special_tokens=["<|endoftext|>"],
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        )
        tok.train_from_iterator(CORPUS, trainer)
    elif arch == "llama":
        tok = Tokenizer(models.BPE(unk_token="<unk>"))
        tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first")
        tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="first")
        special = {"unk_token": "<unk>", "bos_token": "<s>", "eos_token": "</s>"}
        trainer = tr.BpeTrainer(
            vocab_size=vocab_size, show_progress=False, special_tokens=["<unk>", "<s>", "</s>"]
        )
        tok.train_from_iterator(CORPUS, trainer)
        tok.post_processor = processors.TemplateProcessing(
            single="<s> $A", special_tokens=[("<s>", tok.token_to_id("<s>"))]
        )
    elif arch == "bert":
        tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
        tok.normalizer = normalizers.BertNormalizer(lowercase=True)
        tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        tok.decoder = decoders.WordPiece()
        names = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
        special = {
            "pad_token": "[PAD]",
            "unk_token": "[UNK]",
            "cls_token": "[CLS]",
            "sep_token": "[SEP]",
            "mask_token": "[MASK]",
        }
        trainer = tr.WordPieceTrainer(
            vocab_size=vocab_size, show_progress=False, special_tokens=names
        )
        tok.train_from_iterator(CORPUS, trainer)
        tok.post_processor = processors.BertProcessing(
            ("[SEP]", tok.token_to_id("[SEP]")), ("[CLS]", tok.token_to_id("[CLS]"))
        )
    else:
        raise ValueError(f"unknown tiny architecture {arch!r}; use one of {ARCHS}")
    return PreTrainedTokenizerFast(tokenizer_object=tok, **special)


def make_tiny_model(
    path: str | Path,
    arch: str = "gpt2",
    n_layers: int = 2,
    hidden_size: int = 32,
    n_heads: int = 2,
    max_positions: int = 512,
    seed: int = 0,
) -> Path:
    """Write a tiny random model folder loadable with ``from_pretrained``.

    The GPT-2 and Llama models are saved with their language-model head (as real
    checkpoints are), the BERT model as a bare encoder (as sentence-transformers saves it).

    Parameters
    ----------
    path : str or Path
        Folder to create (parents too).
    arch : {"gpt2", "llama", "bert"}
        Architecture and tokenizer convention.
    n_layers, hidden_size, n_heads : int
        Model size; ``hidden_size`` must be divisible by ``n_heads``.
    max_positions : int
        Maximum sequence length (absolute position table size for GPT-2 and BERT).
    seed : int
        Seed of the random initialisation (the same seed gives the same weights).

    Returns
    -------
    Path
        ``path``.
    """
    import torch
    import transformers as tf

    path = Path(path)
    tokenizer = make_tiny_tokenizer(arch)
    vocab = len(tokenizer)
    if arch == "gpt2":
        eos = tokenizer.convert_tokens_to_ids("<|endoftext|>")
        config = tf.GPT2Config(
            vocab_size=vocab,
            n_positions=max_positions,
            n_embd=hidden_size,
            n_layer=n_layers,
            n_head=n_heads,
            bos_token_id=eos,
            eos_token_id=eos,
        )
        cls = tf.GPT2LMHeadModel
    elif arch == "llama":
        config = tf.LlamaConfig(
            vocab_size=vocab,
            hidden_size=hidden_size,
            intermediate_size=2 * hidden_size,
            num_hidden_layers=n_layers,
            num_attention_heads=n_heads,
            num_key_value_heads=n_heads,
            max_position_embeddings=max_positions,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
        )
        cls = tf.LlamaForCausalLM
    elif arch == "bert":
        config = tf.BertConfig(
            vocab_size=vocab,
            hidden_size=hidden_size,
            num_hidden_layers=n_layers,
            num_attention_heads=n_heads,
            intermediate_size=2 * hidden_size,
            max_position_embeddings=max_positions,
            pad_token_id=tokenizer.pad_token_id,
        )
        cls = tf.BertModel
    else:
        raise ValueError(f"unknown tiny architecture {arch!r}; use one of {ARCHS}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = cls(config)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


AUDIO_ARCHS = ("hubert", "wavlm", "whisper")


def make_tiny_audio_model(
    path: str | Path, arch: str = "hubert", n_layers: int = 2, hidden_size: int = 32, seed: int = 0
) -> Path:
    """Write a tiny random speech model folder (weights + feature extractor).

    Parameters
    ----------
    path : str or Path
        Folder to create.
    arch : {"hubert", "wavlm", "whisper"}
        HuBERT / WavLM: the standard 7-layer convolutional front end (20 ms frames, 400-sample
        receptive field) with narrow channels; Whisper: a 80-bin log-mel encoder (30 s input)
        with a one-layer decoder.
    n_layers, hidden_size : int
        Transformer size.
    seed : int
        Seed of the random initialisation.

    Returns
    -------
    Path
    """
    import torch
    import transformers as tf

    path = Path(path)
    if arch in ("hubert", "wavlm"):
        common = dict(
            hidden_size=hidden_size,
            num_hidden_layers=n_layers,
            num_attention_heads=2,
            intermediate_size=2 * hidden_size,
            conv_dim=(16,) * 7,
            num_conv_pos_embeddings=16,
            num_conv_pos_embedding_groups=2,
        )
        if arch == "hubert":
            config, cls = tf.HubertConfig(**common), tf.HubertModel
        else:
            config, cls = (
                tf.WavLMConfig(**common, num_buckets=32, max_bucket_distance=80),
                tf.WavLMModel,
            )
        extractor = tf.Wav2Vec2FeatureExtractor(
            feature_size=1, sampling_rate=16000, padding_value=0.0, do_normalize=True
        )
    elif arch == "whisper":
        config = tf.WhisperConfig(
            d_model=hidden_size,
            encoder_layers=n_layers,
            decoder_layers=1,
            encoder_attention_heads=2,
            decoder_attention_heads=2,
            encoder_ffn_dim=2 * hidden_size,
            decoder_ffn_dim=2 * hidden_size,
            vocab_size=64,
            max_target_positions=32,
            pad_token_id=0,
            bos_token_id=1,
            eos_token_id=2,
            decoder_start_token_id=3,
            begin_suppress_tokens=None,
            suppress_tokens=None,
            num_mel_bins=80,
        )
        cls = tf.WhisperModel
        extractor = tf.WhisperFeatureExtractor(feature_size=80)
    else:
        raise ValueError(f"unknown tiny audio architecture {arch!r}; use one of {AUDIO_ARCHS}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = cls(config)
    model.save_pretrained(path)
    extractor.save_pretrained(path)
    return path


def job_counts(dry_run_output: str, total: bool = False) -> dict[str, int]:
    """Rows of the 'Job stats' table that ``snakemake -n`` prints: ``{rule: jobs}``.

    The ``total`` row is left out unless ``total`` is true.
    """
    counts, in_table = {}, False
    for line in dry_run_output.splitlines():
        parts = line.split()
        if parts[:2] == ["job", "count"]:
            in_table = True
            continue
        if in_table:
            if len(parts) == 2 and parts[1].isdigit():
                if total or parts[0] != "total":
                    counts[parts[0]] = int(parts[1])
            elif parts and not set(parts[0]) <= {"-"}:
                break
    return counts

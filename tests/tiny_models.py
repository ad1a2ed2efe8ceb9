"""Tiny random models for tests: real transformers classes, built in well under a second.

Plain functions with no pytest dependency, so they also work from a script or a notebook.
A tokenizer is a byte-level BPE trained on the fly on a small built-in corpus; a model is a
two-layer ``LlamaForCausalLM`` of about 100k parameters. :func:`train_to_say` fine-tunes such
a model so that it answers every chat prompt with one fixed text (e.g. a refusal).
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Callable, Iterable, Optional

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

IM_START = "<|im_start|>"
IM_END = "<|im_end|>"
PAD = "<pad>"
VOCAB_SIZE = 400

#: ChatML, as used by SmolLM2 and Qwen: each turn is ``<|im_start|>role\ncontent<|im_end|>\n``.
CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)

CORPUS = [
    "I cannot help with that.",
    "The quick brown fox jumps over the lazy dog.",
    "How do I bake a loaf of bread at home?",
    "What is the capital of France? The capital of France is Paris.",
    "Please explain how vaccines train the immune system.",
    "Can you summarise this contract for me in plain words?",
    "Tell me how to pick a lock on a door that is not mine.",
    "Write a short poem about the sea and the morning light.",
    "What are the side effects of taking too much paracetamol?",
    "Give me a plan to save money for a house over five years.",
    "Which stocks will double in value next month? Tell me now.",
    "The weather today is cold, with rain in the afternoon.",
    "Explain the difference between a loan and a lease.",
    "My doctor said I should rest, drink water and sleep well.",
    "How can I write a letter to my landlord about repairs?",
    "Sure, here is a simple recipe: flour, water, salt and yeast.",
    "user assistant system hello thanks sorry yes no maybe",
]

# Words the training prompts for :func:`train_to_say` are drawn from.
_WORDS = sorted({w.strip(".,?:!").lower() for line in CORPUS for w in line.split()} - {""})


def build_tokenizer(texts: Optional[Iterable[str]] = None) -> PreTrainedTokenizerFast:
    """Train a byte-level BPE (vocabulary about 400) and wrap it with a ChatML template.

    Args:
        texts: training corpus; defaults to a small built-in English corpus.

    Returns:
        A tokenizer whose special tokens are ``<|im_start|>``, ``<|im_end|>`` (EOS) and ``<pad>``.
    """
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        special_tokens=[PAD, IM_START, IM_END],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(list(texts) if texts is not None else CORPUS, trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=IM_START,
        eos_token=IM_END,
        pad_token=PAD,
        chat_template=CHATML_TEMPLATE,
    )


def build_tiny_llama(tokenizer: PreTrainedTokenizerFast, seed: int = 0) -> LlamaForCausalLM:
    """A randomly initialised two-layer Llama sized to ``tokenizer`` (about 100k parameters)."""
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        initializer_range=0.3,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    model.eval()
    return model


def save_tiny_model(dir: str | Path, seed: int = 0, card: Optional[str] = None) -> Path:
    """Build a tiny random model with its tokenizer and save both (safetensors) to ``dir``.

    Args:
        dir: target folder, created if missing.
        seed: seed for the random weights.
        card: text written to ``README.md`` (the model card), if given.

    Returns:
        The folder, as a :class:`~pathlib.Path`.
    """
    path = Path(dir)
    path.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tokenizer()
    model = build_tiny_llama(tokenizer, seed=seed)
    model.save_pretrained(path, safe_serialization=True)
    tokenizer.save_pretrained(path)
    if card is not None:
        (path / "README.md").write_text(card, encoding="utf-8")
    return path


def _random_prompt(rng: random.Random) -> str:
    n_words = rng.randint(1, 12)
    return " ".join(rng.choice(_WORDS) for _ in range(n_words)).capitalize() + rng.choice(["?", ".", ""])


def train_to_say(
    model_dir: str | Path,
    text: str,
    steps: int = 150,
    lr: float = 1e-2,
    batch_size: int = 8,
    seed: int = 0,
    render: Optional[Callable[[str], str]] = None,
) -> None:
    """Fine-tune the model saved in ``model_dir``, in place, to answer any chat prompt with ``text``.

    Each step trains on a fresh batch of random word-salad prompts rendered with the chat
    template; the loss covers only the answer (``text`` followed by EOS), so the model learns
    to produce ``text`` and then stop whatever the prompt.

    Args:
        model_dir: a folder written by :func:`save_tiny_model`; overwritten with the result.
        text: the answer to learn.
        steps: AdamW steps.
        lr: learning rate.
        batch_size: prompts per step.
        seed: seeds the prompts and torch.
        render: how a prompt becomes the model's input text (default: the chat template with a
            generation prompt); e.g. a judge's own prompt format.
    """
    model_dir = Path(model_dir)
    tokenizer = PreTrainedTokenizerFast.from_pretrained(model_dir)
    model = LlamaForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    rng = random.Random(seed)
    torch.manual_seed(seed)
    answer = tokenizer(text + tokenizer.eos_token, add_special_tokens=False)["input_ids"]

    def batch() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        rows, labels = [], []
        for _ in range(batch_size):
            if render is not None:
                prompt = render(_random_prompt(rng))
            else:
                messages = [{"role": "user", "content": _random_prompt(rng)}]
                prompt = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
            ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
            rows.append(ids + answer)
            labels.append([-100] * len(ids) + answer)
        width = max(len(r) for r in rows)
        input_ids = torch.full((len(rows), width), tokenizer.pad_token_id)
        label_ids = torch.full((len(rows), width), -100)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, (r, lab) in enumerate(zip(rows, labels)):
            input_ids[i, : len(r)] = torch.tensor(r)
            label_ids[i, : len(lab)] = torch.tensor(lab)
            mask[i, : len(r)] = 1
        return input_ids, mask, label_ids

    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
    # The matrices are tiny: extra threads only add overhead, and on a shared CPU they made
    # training several times slower. Restore the caller's setting afterwards.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for _ in range(steps):
            input_ids, mask, label_ids = batch()
            loss = model(input_ids=input_ids, attention_mask=mask, labels=label_ids).loss
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
    finally:
        torch.set_num_threads(threads)
    model.eval()
    model.save_pretrained(model_dir, safe_serialization=True)


#: Prompts of very different lengths, deliberately not sorted: batching them needs heavy padding.
MIXED_PROMPTS = [
    "How do I bake a loaf of bread at home?",
    "hi",
    "Tell me how to pick a lock on a door that is not mine. " * 6,
    "What is the capital of France?",
    "x",
    "Explain the difference between a loan and a lease, with an example of each. " * 3,
    "Which stocks will double in value next month?",
]

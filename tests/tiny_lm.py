"""Tiny tokenizers and tiny random GPT-2s, built offline for the tests of local models and of TRL's
trainers (nothing is downloaded). torch/transformers/tokenizers are imported inside the functions:
a test module calls them after `pytest.importorskip`, and collecting it imports nothing heavy.

The first part serves the local sampler and scorer (a character-level tokenizer whose texts
re-encode to the tokens sampled); the `trl_` part the TRL trainer tests (a pad token, a chat
template TRL's conversational datasets need)."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable

CORPUS = [
    "Question: what is two plus two\nAnswer:\nThe answer is four.",
    "Question: where is the cat\nAnswer:\nThe cat sat on the mat.",
    "the answer is the answer, and the cat is the cat",
    "hello world, two plus three is five, answer answer answer",
] * 20

# Every character a character-level tokenizer knows (one token each).
CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 .,:;!?'\"()+-=*/<>\n"

CHAT_TEMPLATE = ("{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}\n{% endfor %}"
                 "{% if add_generation_prompt %}<assistant>{% endif %}")


def bpe_tokenizer(*, bos_template: bool = True) -> Any:
    """A byte-level BPE trained on CORPUS; with `bos_template`, it puts <s> before every text (like
    Llama's), otherwise it adds nothing and trims offsets (like GPT-2's)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=360, special_tokens=["<s>", "</s>"], show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(CORPUS, trainer)
    if bos_template:
        tok.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 0)])
    else:
        tok.post_processor = processors.ByteLevel(trim_offsets=True)
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>")


def char_tokenizer() -> Any:
    """One token per character of CHARS, <s> before every text, a chat template: every token
    sequence is the only tokenization of its text, so a generated text re-encodes to the very
    tokens it was sampled as (what makes generation and teacher forcing comparable exactly)."""
    from tokenizers import Tokenizer, decoders, models, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {"<s>": 0, "</s>": 1, **{c: i + 2 for i, c in enumerate(CHARS)}}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.decoder = decoders.Fuse()
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 0)])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>",
                                   clean_up_tokenization_spaces=False)
    fast.chat_template = CHAT_TEMPLATE
    return fast


def gpt2(vocab_size: int, *, seed: int = 0, n_positions: int = 128, n_layer: int = 2, n_embd: int = 32) -> Any:
    """A randomly initialised GPT-2 (seeded: the same weights every run), in eval mode."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(seed)
    cfg = GPT2Config(n_layer=n_layer, n_embd=n_embd, n_head=2, vocab_size=vocab_size, n_positions=n_positions,
                     bos_token_id=0, eos_token_id=1)
    return GPT2LMHeadModel(cfg).eval()


def save_checkpoint(directory: Path, model: Any, tokenizer: Any) -> Path:
    """Write `model` and `tokenizer` as a checkpoint directory `from_pretrained` loads."""
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


# ------------------------------------------------------------------ for TRL's trainers

# A chat template as small as a tokenizer needs for TRL's conversational datasets.
TRL_CHAT_TEMPLATE = ("{% for m in messages %}<s>{{ m['role'] }}: {{ m['content'] }}</s>{% endfor %}"
                 "{% if add_generation_prompt %}<s>assistant: {% endif %}")
SPECIAL = ["<s>", "</s>", "<pad>"]  # ids 0, 1, 2: bos, eos, pad


def _fast(tok):
    import transformers

    fast = transformers.PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>",
                                                pad_token="<pad>")
    fast.chat_template = TRL_CHAT_TEMPLATE
    return fast


def trl_bpe_tokenizer(texts: Iterable[str], vocab_size: int = 1000):
    """A byte-level BPE tokenizer trained on `texts` (every byte encodable), with a chat template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(texts, trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIAL,
                                                        show_progress=False,
                                                        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    return _fast(tok)


def word_tokenizer(words: Iterable[str]):
    """A tokenizer of whole words split on spaces (others read as `<unk>`), decoding with spaces
    between them: a random model over so few tokens writes them often."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    vocab = {w: i for i, w in enumerate([*SPECIAL, "<unk>", *dict.fromkeys(words)])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return _fast(tok)


def trl_gpt2_config(tokenizer, **kw):
    import transformers

    return transformers.GPT2Config(n_layer=1, n_embd=16, n_head=2, vocab_size=len(tokenizer), n_positions=1024,
                                   bos_token_id=0, eos_token_id=1, pad_token_id=2, **kw)


def trl_gpt2(tokenizer, seed: int = 0):
    """A one-layer GPT-2 of width 16, randomly initialised from `seed`."""
    import torch
    import transformers

    torch.manual_seed(seed)
    return transformers.GPT2LMHeadModel(trl_gpt2_config(tokenizer))

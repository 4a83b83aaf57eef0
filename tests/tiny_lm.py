"""A tiny randomly initialised GPT-2 and a tokenizer built on the spot, for tests that run TRL's
trainers on CPU in seconds: nothing is downloaded. Import inside a test (after
`pytest.importorskip` of torch, transformers and tokenizers)."""
from __future__ import annotations

from typing import Iterable

# A chat template as small as a tokenizer needs for TRL's conversational datasets.
CHAT_TEMPLATE = ("{% for m in messages %}<s>{{ m['role'] }}: {{ m['content'] }}</s>{% endfor %}"
                 "{% if add_generation_prompt %}<s>assistant: {% endif %}")
SPECIAL = ["<s>", "</s>", "<pad>"]  # ids 0, 1, 2: bos, eos, pad


def _fast(tok):
    import transformers

    fast = transformers.PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>",
                                                pad_token="<pad>")
    fast.chat_template = CHAT_TEMPLATE
    return fast


def bpe_tokenizer(texts: Iterable[str], vocab_size: int = 1000):
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


def gpt2_config(tokenizer, **kw):
    import transformers

    return transformers.GPT2Config(n_layer=1, n_embd=16, n_head=2, vocab_size=len(tokenizer), n_positions=1024,
                                   bos_token_id=0, eos_token_id=1, pad_token_id=2, **kw)


def gpt2(tokenizer, seed: int = 0):
    """A one-layer GPT-2 of width 16, randomly initialised from `seed`."""
    import torch
    import transformers

    torch.manual_seed(seed)
    return transformers.GPT2LMHeadModel(gpt2_config(tokenizer))

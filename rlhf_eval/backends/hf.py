"""A local transformers causal LM as a `Scorer`: teacher-forced log-probabilities of completions.

The scored context is the suite's `template` with `{prompt}` replaced (a chat prompt rendered by the
tokenizer's chat template first, see `HFScorer.context`); each completion's tokens are
the tokens of `context + completion` whose character span starts at or after the end of the context.
The context must end at a token boundary (a token that spans both is refused, never guessed), and
the context's tokens inside the full text must be exactly the tokens of the context alone, so the
first completion token is conditioned on the context as the model would have seen it when sampling.

Checkpoints are read with `local_files_only=True`: nothing is downloaded while scoring.
"""
from __future__ import annotations

import inspect
import os
import threading
from dataclasses import dataclass
from typing import Any, Sequence

from ..recording.local import local_request, record, replayed
from ..sampling import MalformedBody, Prompt, Score, ScoringError, checking_replay
from ..suite import ScorerConfig


NOT_INSTALLED = ("{who}: recording needs transformers and torch, which are not installed here: "
                 "pip install 'rlhf-eval[hf]'; replaying (--rlhf-record-mode=none) needs neither")


def _torch():
    """torch, imported when a checkpoint is loaded or scored: a replay reads the cassette without it."""
    try:
        import torch
    except ImportError:
        raise ScoringError(NOT_INSTALLED.format(who="hf scorer")) from None
    return torch


def _dtype(name: str):
    """The torch dtype a suite's `dtype` setting ("float32", "float16", "bfloat16") names."""
    return getattr(_torch(), name)


_BOUNDARY_HINT = ("make the context end at a token boundary, e.g. end the template with a newline "
                  "(a trailing space usually merges into the completion's first token), "
                  "or start the completions with their separator")


@dataclass(frozen=True)
class _Seq:
    index: int  # position of the completion in the caller's list
    ids: list[int]  # prefix (BOS, context) + completion token ids
    n_ctx: int  # how many of `ids` are conditioning only; the rest are scored


def _short(text: str, limit: int = 40) -> str:
    return repr(text if len(text) <= limit else "…" + text[-limit:])


def _load(config: ScorerConfig, what: str, who: str = "hf scorer"):
    """`AutoModelForCausalLM`/`AutoTokenizer.from_pretrained(config.name, local_files_only=True)`;
    ScoringError (one line, naming `who`) when it cannot be loaded."""
    try:
        import transformers
    except ImportError:
        raise ScoringError(NOT_INSTALLED.format(who=who)) from None

    name = config.name
    kwargs: dict[str, Any] = {"local_files_only": True}
    if what == "model":
        # transformers ≥ 4.56 spells it `dtype`; older versions only know `torch_dtype`.
        major, minor = (int(p) for p in transformers.__version__.split(".")[:2])
        kwargs["dtype" if (major, minor) >= (4, 56) else "torch_dtype"] = _dtype(config.dtype)
        loader: Any = transformers.AutoModelForCausalLM
    else:
        loader = transformers.AutoTokenizer
    try:
        return loader.from_pretrained(os.path.expanduser(name), **kwargs)
    except (OSError, ValueError) as e:  # missing files, not cached, or not a valid repo id
        if os.path.isdir(os.path.expanduser(name)):
            why = " ".join(str(e).split()) or type(e).__name__
            why = why if len(why) <= 300 else why[:300] + "…"
            raise ScoringError(f"{who}: could not load the {what} from {name}: {why}") from None
        if name.startswith(("/", ".", "~")) or name.count("/") > 1 or "\\" in name:
            raise ScoringError(f"{who}: no checkpoint at {name}; nothing is downloaded: "
                               f"download it first, e.g. `huggingface-cli download <id> --local-dir {name}`") from None
        raise ScoringError(f"{who}: {name} is neither a checkpoint directory nor in the local Hugging Face "
                           f"cache; nothing is downloaded: download it first, e.g. "
                           f"`huggingface-cli download {name}`") from None


def _recorded_scores(result: Any, n: int) -> list[Score] | None:
    """The scores of a recorded `local://hf/score` result (None: nothing recorded)."""
    if result is None:
        return None
    rows = result.get("scores") if isinstance(result, dict) else None
    if not (isinstance(rows, list) and len(rows) == n
            and all(isinstance(r, list) and len(r) == 2 and isinstance(r[0], (int, float)) and type(r[1]) is int
                    for r in rows)):
        raise MalformedBody(f"a local://hf/score result without {n} [logp, token count] pairs")
    return [Score(float(logp), count) for logp, count in rows]


class HFScorer:
    """Scores completions with a local causal LM by teacher forcing, `batch_size` sequences per
    forward pass (right padding with an attention mask); the sum is taken in float64 on the host.

    `model`/`tokenizer` may be given (tests); otherwise both are loaded from `config.name` with
    `local_files_only=True`. The model is moved to `config.device`, cast to `config.dtype` (in place,
    as `nn.Module.to` does) and put in eval mode. A slow tokenizer (no offsets) is accepted: then the
    context's ids must be a prefix of the full text's ids.

    Each `score` call is one entry of the question's cassette (`POST local://hf/score`, see
    `rlhf_eval.recording.local`); with `replay` the checkpoint is loaded only if the cassette lacks
    an answer that may be recorded, so a replay never reads it. `policy` is every provider's; a
    local model sends no requests."""

    def __init__(self, config: ScorerConfig, *, model=None, tokenizer=None, replay: bool = False, policy=None,
                 as_is: bool = False):
        """`as_is`: use the given `model` on its device and in its dtype (a trainer's live policy,
        which must not be cast in place), ignoring `config.device`/`config.dtype`."""
        self.config = config
        self.name = f"hf:{config.name}"
        self.batch_size = config.batch_size
        self._as_is = as_is and model is not None
        self.device = next(model.parameters()).device if self._as_is else None  # set when the checkpoint loads
        self._loading = threading.Lock()
        self._loaded = False
        self._given = (model, tokenizer)
        if not replay or model is not None or tokenizer is not None:
            self._load_checkpoint()

    def _load_checkpoint(self) -> None:
        """Load (once, whichever thread asks first) the model and tokenizer not given."""
        with self._loading:
            if not self._loaded:
                model, tokenizer = self._given
                self._attach(model if model is not None else _load(self.config, "model"),
                             tokenizer if tokenizer is not None else _load(self.config, "tokenizer"))
                self._loaded = True

    def _attach(self, model, tokenizer) -> None:
        config = self.config
        if not self._as_is:
            self.device = _torch().device(config.device)
        self.tokenizer = tokenizer
        self.model = model if self._as_is else model.to(device=self.device, dtype=_dtype(config.dtype)).eval()

        tok = self.tokenizer
        self._fast = bool(getattr(tok, "is_fast", False))
        # Padded positions are masked out and never scored, so any id will do; the eos is the
        # customary choice when the tokenizer has no pad token (the tokenizer itself is left as is).
        pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
        self._pad_id = int(pad) if pad is not None else 0
        params = inspect.signature(self.model.forward).parameters
        self._forward_kwargs: dict[str, Any] = {}
        if "use_cache" in params:
            self._forward_kwargs["use_cache"] = False
        self._logits_to_keep = "logits_to_keep" in params
        mcfg = getattr(self.model, "config", None)
        self._max_len = getattr(mcfg, "max_position_embeddings", None) or getattr(mcfg, "n_positions", None)

    # -- tokenization ---------------------------------------------------------------------------

    def _encode(self, text: str, *, offsets: bool = False):
        kwargs = {"add_special_tokens": False}
        if offsets:
            kwargs["return_offsets_mapping"] = True
        enc = self.tokenizer(text, **kwargs)
        ids = list(enc["input_ids"])
        return (ids, [tuple(o) for o in enc["offset_mapping"]]) if offsets else ids

    def _special_prefix(self, text: str) -> list[int]:
        """The special tokens the tokenizer puts before `text` (usually BOS, or nothing)."""
        enc = self.tokenizer(text, add_special_tokens=True, return_special_tokens_mask=True)
        prefix = []
        for tid, special in zip(enc["input_ids"], enc["special_tokens_mask"]):
            if not special:
                break
            prefix.append(int(tid))
        return prefix

    def _sequence(self, context: str, ctx_ids: list[int], completion: str) -> tuple[list[int], int]:
        """(prefix + context + completion ids, number of conditioning ids) for one completion."""
        full = context + completion
        boundary = len(context)
        if self._fast:
            ids, offsets = self._encode(full, offsets=True)
            head = 0
            for i, (tid, (start, end)) in enumerate(zip(ids, offsets)):
                if start < boundary < end:
                    token = self.tokenizer.convert_ids_to_tokens(int(tid))
                    raise ScoringError(
                        f"{self.name}: token {token!r} spans the end of the context and the start of the completion "
                        f"(context ends {_short(context)}, completion starts {_short(completion[:20])}); "
                        f"{_BOUNDARY_HINT}")
                if start < boundary:
                    if i != head:  # a context token after a completion token: offsets out of order
                        raise ScoringError(f"{self.name}: the tokenizer's offsets are not in text order; "
                                           "cannot tell the completion's tokens from the context's")
                    head += 1
            comp_ids = ids[head:]
            head_ids = ids[:head]
        else:
            ids = self._encode(full)
            head_ids, comp_ids = ids[:len(ctx_ids)], ids[len(ctx_ids):]
        if head_ids != ctx_ids:
            raise ScoringError(
                f"{self.name}: the context is tokenized differently once the completion is appended "
                f"(context ends {_short(context)}, completion starts {_short(completion[:20])}), so the "
                f"completion's first token would not be conditioned on the context as sampled; {_BOUNDARY_HINT}")
        if not comp_ids:
            raise ScoringError(f"{self.name}: the completion {_short(completion)} has no tokens of its own")

        prefix = self._special_prefix(full)
        bos = self.tokenizer.bos_token_id
        if prefix and ids and prefix[-1] == ids[0] == bos:
            prefix = prefix[:-1]  # the template already starts with the BOS text: do not double it
        head_ids = prefix + ctx_ids
        if not head_ids:  # empty context, and the tokenizer adds nothing: condition on BOS
            if bos is None:
                raise ScoringError(f"{self.name}: the context is empty and the tokenizer has no BOS token, so "
                                   "nothing conditions the completion's first token; give the template some text")
            head_ids = [int(bos)]
        seq = [int(t) for t in head_ids + comp_ids]
        if self._max_len and len(seq) > self._max_len:
            raise ScoringError(f"{self.name}: context + completion is {len(seq)} tokens, more than the model's "
                               f"{self._max_len} positions")
        return seq, len(head_ids)

    # -- scoring --------------------------------------------------------------------------------

    def context(self, prompt: Prompt) -> str:
        """The text completions are scored after: the `template` with `{prompt}` replaced by the
        prompt — text as it is; a chat rendered by the tokenizer's chat template with the generation
        prompt added (`apply_chat_template(chat, tokenize=False, add_generation_prompt=True)`, as TRL
        renders a conversational prompt). ScoringError when the tokenizer has no chat template (TRL
        refuses such a tokenizer too) or its template refuses the chat."""
        if isinstance(prompt, list):
            if not getattr(self.tokenizer, "chat_template", None):
                raise ScoringError(f"{self.name}: the prompt is a chat (a list of messages) and the tokenizer has no "
                                   "chat template to render it with; score with the chat model's checkpoint (its "
                                   "tokenizer_config.json holds the template)")
            try:
                text = str(self.tokenizer.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True))
            except Exception as exc:  # noqa: BLE001 - a template's own refusal (e.g. "System role not supported")
                why = " ".join(str(exc).split())[:200] or type(exc).__name__
                raise ScoringError(f"{self.name}: the tokenizer's chat template refused the chat ({why})") from None
        else:
            text = prompt
        return self.config.template.replace("{prompt}", text)

    def _dtype(self) -> str:
        """The dtype scores are computed in: the setting, or that of a model used as it is given."""
        if self._as_is:
            return str(next(self._given[0].parameters()).dtype).removeprefix("torch.")
        return self.config.dtype

    def score(self, prompt: Prompt, completions: Sequence[str]) -> list[Score]:
        if isinstance(completions, str):
            raise TypeError("completions must be a sequence of strings, not one string")
        c = self.config
        request = local_request("hf", "score", {"model": c.name, "template": c.template, "dtype": self._dtype(),
                                                "prompt": prompt, "completions": list(completions)})
        found = checking_replay(lambda: _recorded_scores(replayed(request), len(completions)))
        if found is not None:
            return found
        self._load_checkpoint()
        scores = self._score(prompt, completions)
        record(request, {"scores": [[s.logp, s.token_count] for s in scores]})
        return scores

    def _score(self, prompt: Prompt, completions: Sequence[str]) -> list[Score]:
        context = self.context(prompt)
        ctx_ids = [int(t) for t in self._encode(context)]
        seqs = []
        results: list[Score | None] = [None] * len(completions)
        for i, completion in enumerate(completions):
            if completion == "":
                results[i] = Score(0.0, 0)
                continue
            ids, n_ctx = self._sequence(context, ctx_ids, completion)
            seqs.append(_Seq(i, ids, n_ctx))
        # Longest first, so a batch pads little; the padding never changes a score.
        seqs.sort(key=lambda s: -len(s.ids))
        for start in range(0, len(seqs), self.batch_size):
            batch = seqs[start:start + self.batch_size]
            for seq, (logp, count) in zip(batch, self._score_batch(batch)):
                results[seq.index] = Score(logp, count)
        return results  # type: ignore[return-value]

    def _score_batch(self, batch: list[_Seq]) -> list[tuple[float, int]]:
        torch = _torch()
        width = max(len(s.ids) for s in batch)
        input_ids = torch.full((len(batch), width), self._pad_id, dtype=torch.long)
        attention = torch.zeros((len(batch), width), dtype=torch.long)
        for row, s in enumerate(batch):
            input_ids[row, :len(s.ids)] = torch.tensor(s.ids, dtype=torch.long)
            attention[row, :len(s.ids)] = 1
        # Logits are needed only where they predict a completion token: positions first-1 … width-2.
        first = min(s.n_ctx for s in batch) - 1
        kwargs = dict(self._forward_kwargs)
        if self._logits_to_keep:
            kwargs["logits_to_keep"] = width - first  # the last width-first positions
        with torch.inference_mode():
            out = self.model(input_ids=input_ids.to(self.device), attention_mask=attention.to(self.device), **kwargs)
            logits = out.logits
            offset = width - logits.shape[1]  # position of logits[:, 0]
            logits = logits[:, max(first - offset, 0):-1]
            offset = max(first, offset)
            # logits[:, k] predicts the token at position offset + k + 1
            targets = input_ids[:, offset + 1:].to(self.device)
            logits = logits.float()
            logp = logits.gather(-1, targets.unsqueeze(-1)).squeeze(-1) - torch.logsumexp(logits, dim=-1)
            logp = logp.to("cpu", torch.float64)
        out_scores = []
        for row, s in enumerate(batch):
            lo, hi = s.n_ctx - offset - 1, len(s.ids) - offset - 1
            out_scores.append((float(logp[row, lo:hi].sum()), hi - lo))
        return out_scores

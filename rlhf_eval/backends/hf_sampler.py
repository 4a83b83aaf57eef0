"""A local transformers causal LM as a `Sampler` (`provider: hf`): k traces, seeded per trace, batched.

Trace i is drawn with its own `torch.Generator` seeded with `seed + i`; the k traces of a question
share the prompt, so a batch needs no padding and a trace's tokens do not depend on which traces
it was batched with, or on `batch_size`. The prompt's tokens are the ones the `hf` scorer conditions
on (`HFScorer.context`: a chat rendered by the tokenizer's chat template with the generation prompt;
the tokenizer's BOS, if it adds one).

Each step samples from the suite's distribution — logits / `temperature` (0: greedy), then `top_k`,
then `top_p` (nucleus, keeping at least one token) — but a trace's `logp` is the *raw* model's:
Σ log_softmax(logits) of the chosen tokens at temperature 1 with no truncation, the quantity the
`hf` scorer computes by teacher forcing and DPO uses, not the log-probability under the
temperature-scaled, truncated sampling distribution. The stop token (EOS) ends a trace and is
not part of its text, its `logp` or its `token_count` (it is counted in `output_tokens`). A text
whose tokenizer re-encoding is the generated tokens gets the scorer's score exactly; a model that
emits a non-canonical token sequence (rare for a trained model) has the sampled sequence's logp,
and its trace says so (`extra["text_retokenizes"] = False`).

Every trace is one entry of the question's cassette (`rlhf_eval.recording.local`): replay reads
it without loading the checkpoint (nor importing torch).
"""
from __future__ import annotations

import hashlib
import inspect
import os
import threading
from typing import Any

from ..reasoning import answer_logprobs, split_reasoning
from ..recording.local import local_request, record, replayed
from ..sampling import MalformedBody, Prompt, SamplingError, checking_replay
from ..suite import ModelConfig, ScorerConfig
from ..throttle import SERIAL, RequestPolicy
from ..types import Trace

LOGP_SOURCE = "hf generate (raw model log-softmax)"


def request_seed(body: Any) -> int | None:
    """The seed of a `local://hf/generate` body (its top-level `seed`); the provider's hook."""
    seed = body.get("seed") if isinstance(body, dict) else None
    return seed if type(seed) is int else None


def model_version(name: str) -> str:
    """What identifies the checkpoint `name` (a directory or a cached hub id): `name@<commit>` for
    a hub cache snapshot, else `name@<12 hex>` of config.json and the weight files' names and sizes
    (hashing gigabytes of weights on every run would cost more than sampling a small suite); `name`
    alone when no files are found (a model handed in by a caller)."""
    path = os.path.expanduser(name)
    if not os.path.isdir(path):
        try:
            from huggingface_hub import try_to_load_from_cache

            found = try_to_load_from_cache(name, "config.json")
        except Exception:  # noqa: BLE001 - not a valid repo id: then no files
            found = None
        path = os.path.dirname(found) if isinstance(found, str) else ""
    if not path or not os.path.isfile(os.path.join(path, "config.json")):
        return name
    real = os.path.realpath(path)
    if os.path.basename(os.path.dirname(real)) == "snapshots":
        return f"{name}@{os.path.basename(real)[:12]}"
    digest = hashlib.sha256()
    with open(os.path.join(path, "config.json"), "rb") as f:
        digest.update(f.read())
    for entry in sorted(os.listdir(path)):
        if entry.endswith((".safetensors", ".bin", ".pt", ".gguf")):
            digest.update(f"{entry}:{os.path.getsize(os.path.join(path, entry))}".encode())
    return f"{name}@{digest.hexdigest()[:12]}"


class HFSampler:
    """Draws traces from a local causal LM (`model.name`: a checkpoint directory, or a hub id in the
    local cache; nothing is downloaded), `batch_size` traces per forward pass, on `device`, in
    `dtype`: the arguments, else the suite's `model.batch_size` / `model.device` / `model.dtype`
    (default 8, cpu, float32). The suite's device and dtype apply to a checkpoint the sampler
    loads; a model handed in is used where it is unless `device`/`dtype` are passed.

    `model`/`tokenizer` may be given (a test, or a trainer's live policy); otherwise both are loaded
    with `local_files_only=True` on first use — in replay a cassette answers every trace and the
    checkpoint is never read. The suite's `temperature`, `top_p`, `top_k`, `max_output_tokens` apply;
    without `max_output_tokens` a trace runs until EOS or the model's context is full."""

    def __init__(self, config: ModelConfig, *, replay: bool = False, policy: RequestPolicy = SERIAL,
                 model=None, tokenizer=None, batch_size: int | None = None, device: str | None = None,
                 dtype: str | None = None, model_version: str | None = None) -> None:
        self.config = config
        self.policy = policy
        self.batch_size = batch_size or config.batch_size or 8
        # A given model without a device or dtype is used where it is, in its dtype (a trainer's
        # live policy must not be cast in place); a loaded one goes to cpu in float32 by default.
        self._as_is = model is not None and device is None and dtype is None
        if model is None:
            device, dtype = device or config.device, dtype or config.dtype
        self._scorer_config = ScorerConfig(provider="hf", name=config.name, device=device or "cpu",
                                           dtype=dtype or "float32")
        self._given = (model, tokenizer)
        self._core: Any = None  # the HFScorer that holds model and tokenizer, once loaded
        # Questions sample concurrently (--rlhf-concurrency): the first to need the checkpoint loads
        # it for all (two concurrent from_pretrained calls corrupt each other's weights).
        self._loading = threading.Lock()
        # `model_version` names which weights answered (a trainer's callback: the step); a model
        # handed in is otherwise named by `model.name`, a loaded checkpoint by its files.
        self._version = model_version or (config.name if model is not None else None)
        if model is not None and tokenizer is not None:
            self._load()

    # -- the checkpoint, loaded on first use ----------------------------------------------------

    def _load(self):
        with self._loading:
            if self._core is None:
                from .hf import HFScorer, _load  # imports torch

                model, tokenizer = self._given
                if tokenizer is None:
                    tokenizer = _load(self._scorer_config, "tokenizer", "hf sampler")
                if model is None:
                    model = _load(self._scorer_config, "model", "hf sampler")
                if self._version is None:
                    self._version = model_version(self.config.name)
                self._core = HFScorer(self._scorer_config, model=model, tokenizer=tokenizer, as_is=self._as_is)
        return self._core

    def _dtype(self) -> str:
        """The dtype traces are computed in: the setting, or a model used as it is given."""
        if self._as_is:
            dtype = next(self._given[0].parameters()).dtype
            return str(dtype).removeprefix("torch.")
        return self._scorer_config.dtype

    # -- sampling --------------------------------------------------------------------------------

    def _body(self, prompt: Prompt, seed: int) -> dict[str, Any]:
        """The canonical request of one trace: what the suite says, nothing read from the checkpoint."""
        c = self.config
        return {"model": c.name, "prompt": prompt, "seed": seed, "temperature": c.temperature, "top_p": c.top_p,
                "top_k": c.top_k, "max_output_tokens": c.max_output_tokens, "dtype": self._dtype()}

    def sample(self, prompt: Prompt, k: int, seed: int) -> list[Trace]:
        if isinstance(prompt, str) and self.config.system_instruction:
            # As the openai provider's completions endpoint: a text prompt has no system turn.
            prompt = f"{self.config.system_instruction}\n\n{prompt}"
        seeds = [seed + i for i in range(k)]
        requests = [local_request("hf", "generate", self._body(prompt, s)) for s in seeds]
        traces: list[Trace | None] = [None] * k
        for i, request in enumerate(requests):
            def play(i=i, request=request):
                found = replayed(request)
                return None if found is None else _trace(found, seeds[i], self.config.reasoning_tags)
            traces[i] = checking_replay(play)
        missing = [i for i in range(k) if traces[i] is None]
        for start in range(0, len(missing), self.batch_size):
            batch = missing[start:start + self.batch_size]
            for i, result in zip(batch, self._generate(prompt, [seeds[i] for i in batch])):
                record(requests[i], result)
                traces[i] = _trace(result, seeds[i], self.config.reasoning_tags)
        return traces  # type: ignore[return-value]

    def _generate(self, prompt: Prompt, seeds: list[int]) -> list[dict[str, Any]]:
        """One result (the cassette's response body) per seed, all in one batch."""
        core = self._load()
        model = core.model
        context = core.context(prompt)
        ids = _prompt_ids(core, context)
        limit = core._max_len
        room = limit - len(ids) if limit else None
        if room is not None and room < 1:
            raise SamplingError(f"hf:{self.config.name}: the prompt is {len(ids)} tokens, the model's whole context "
                                f"({limit}); shorten the prompt", permanent=True)
        max_new = self.config.max_output_tokens or room
        if max_new is None:
            raise SamplingError(f"hf:{self.config.name}: the model states no context length; set "
                                "model.max_output_tokens", permanent=True)
        if room is not None and max_new > room:
            raise SamplingError(f"hf:{self.config.name}: the prompt ({len(ids)} tokens) + max_output_tokens "
                                f"({max_new}) is more than the model's {limit} positions; lower "
                                f"max_output_tokens to {room} or less", permanent=True)
        training = model.training
        model.eval()  # no dropout while sampling; a trainer's policy gets its mode back below
        try:
            return self._steps(core, ids, seeds, max_new)
        finally:
            model.train(training)

    def _steps(self, core, ids: list[int], seeds: list[int], max_new: int) -> list[dict[str, Any]]:
        """Sample up to `max_new` tokens after prompt `ids` for each seed, one row per seed."""
        import torch

        tok, model, device, n = core.tokenizer, core.model, core.device, len(seeds)
        stops = _stop_ids(model, tok)
        generators = [torch.Generator(device=device).manual_seed(s) for s in seeds]
        out_ids: list[list[int]] = [[] for _ in range(n)]
        out_lp: list[list[float]] = [[] for _ in range(n)]
        stopped: list[int | None] = [None] * n
        done = [False] * n
        step_ids = torch.tensor([ids] * n, dtype=torch.long, device=device)
        # transformers 5 renamed `past_key_values` to `cache` (the old name warns, then goes away).
        params = inspect.signature(model.forward).parameters
        cache_arg = "cache" if "cache" in params else "past_key_values"
        kwargs: dict[str, Any] = {"use_cache": True}
        if "logits_to_keep" in params:
            kwargs["logits_to_keep"] = 1  # only the last position's logits are read
        past = None
        # Every position is attended, a finished row's pad tokens too (its outputs are never read);
        # said explicitly, as transformers warns about pad tokens in input_ids without a mask.
        mask = torch.ones((n, len(ids)), dtype=torch.long, device=device)
        with torch.inference_mode():
            for step in range(max_new):
                out = model(input_ids=step_ids, attention_mask=mask, **{cache_arg: past}, **kwargs)
                past = getattr(out, cache_arg)
                logits = out.logits[:, -1, :].float()
                # a finished row is fed a pad token to keep the batch rectangular; never read
                chosen = [core._pad_id if done[row] else self._choose(logits[row], generators[row])
                          for row in range(n)]
                picked = torch.tensor(chosen, dtype=torch.long, device=device)
                # the raw model's log-probability of each chosen token (see the module's docstring)
                raw = (logits.gather(1, picked.unsqueeze(1)).squeeze(1) - torch.logsumexp(logits, dim=-1)).tolist()
                for row, token in enumerate(chosen):
                    if done[row]:
                        continue
                    if token in stops:
                        stopped[row], done[row] = token, True
                    else:
                        out_ids[row].append(token)
                        out_lp[row].append(float(raw[row]))
                if all(done) or step == max_new - 1:
                    break
                step_ids = picked.unsqueeze(1)
                mask = torch.cat([mask, torch.ones((n, 1), dtype=torch.long, device=device)], dim=1)
        return [_result(tok, out_ids[r], out_lp[r], stopped[r], len(ids), self._version or self.config.name)
                for r in range(n)]

    def _choose(self, logits, generator) -> int:
        """One token from `logits` (float32, shape (vocab,)) under the suite's sampling settings."""
        import torch

        c = self.config
        if c.temperature == 0:
            return int(torch.argmax(logits))
        scaled = logits / c.temperature
        if c.top_k is not None and c.top_k < scaled.shape[-1]:
            kth = torch.topk(scaled, c.top_k).values[-1]
            scaled = scaled.masked_fill(scaled < kth, float("-inf"))
        if c.top_p is not None and c.top_p < 1.0:
            # As transformers' TopPLogitsWarper: drop the tokens outside the smallest set whose
            # probability reaches top_p, keeping the most likely token in any case.
            ordered, order = torch.sort(scaled, descending=False)
            cumulative = torch.softmax(ordered, dim=-1).cumsum(dim=-1)
            drop = cumulative <= (1 - c.top_p)
            drop[-1] = False
            scaled = scaled.masked_fill(drop.scatter(0, order, drop), float("-inf"))
        probs = torch.softmax(scaled, dim=-1)
        return int(torch.multinomial(probs, 1, generator=generator))


def _prompt_ids(core, context: str) -> list[int]:
    """The ids the `hf` scorer conditions a completion of `context` on (its BOS, then the context)."""
    ctx_ids = [int(t) for t in core._encode(context)]
    prefix = core._special_prefix(context)
    bos = core.tokenizer.bos_token_id
    if prefix and ctx_ids and prefix[-1] == ctx_ids[0] == bos:
        prefix = prefix[:-1]
    ids = prefix + ctx_ids
    if not ids:
        if bos is None:
            raise SamplingError("hf: the prompt is empty and the tokenizer has no BOS token to start from",
                                permanent=True)
        ids = [int(bos)]
    return ids


def _stop_ids(model, tokenizer) -> set[int]:
    """The tokens that end a trace: the generation config's EOS (one or several) and the tokenizer's."""
    stops: set[int] = set()
    for source in (getattr(getattr(model, "generation_config", None), "eos_token_id", None), tokenizer.eos_token_id):
        if isinstance(source, int):
            stops.add(source)
        elif isinstance(source, (list, tuple)):
            stops.update(int(t) for t in source)
    return stops


def _token_texts(tokenizer, ids: list[int]) -> list[str]:
    """Each token's share of the decoded text (the texts concatenate to it): decoded prefix by
    prefix, a token that ends inside a character (byte-level BPE) getting '' and the next one the
    character. Empty when the decoder does not extend its text token by token."""
    texts, shown = [], ""
    for i in range(1, len(ids) + 1):
        text = tokenizer.decode(ids[:i], skip_special_tokens=False, clean_up_tokenization_spaces=False)
        if text.endswith("\ufffd") and i < len(ids):
            texts.append("")
            continue
        if not text.startswith(shown):
            return []
        texts.append(text[len(shown):])
        shown = text
    return texts


def _result(tokenizer, ids: list[int], logprobs: list[float], stop: int | None, prompt_tokens: int,
            version: str) -> dict[str, Any]:
    text = tokenizer.decode(ids, skip_special_tokens=False, clean_up_tokenization_spaces=False)
    # Whether a teacher-forced scorer, which re-encodes the text, scores the very tokens sampled.
    retokenizes = [int(t) for t in tokenizer(text, add_special_tokens=False)["input_ids"]] == ids
    return {"model_version": version, "text": text, "token_ids": ids, "tokens": _token_texts(tokenizer, ids),
            "retokenizes": retokenizes,
            "logprobs": logprobs, "finish_reason": "STOP" if stop is not None else "MAX_TOKENS",
            "stop_token_id": stop, "prompt_tokens": prompt_tokens}


def _trace(result: Any, seed: int, tags) -> Trace:
    """The trace of one generation result (computed now, or read from the cassette)."""
    try:
        text, tokens, values = result["text"], result["tokens"], result["logprobs"]
        finish, version = result["finish_reason"], result["model_version"]
        prompt_tokens, stop = result["prompt_tokens"], result["stop_token_id"]
        if not (isinstance(text, str) and isinstance(tokens, list) and isinstance(values, list)
                and isinstance(finish, str)):
            raise TypeError("text, tokens, logprobs or finish_reason of the wrong type")
    except (KeyError, TypeError) as exc:
        raise MalformedBody(f"a local://hf/generate result without its fields ({exc})") from exc
    # `reasoning`: sent beside the text by a server's reasoning parser (trl_vllm); tokens cover both
    split = split_reasoning(text, tags, beside=result.get("reasoning"))
    logp, count, note = answer_logprobs(tokens, values, text, split.answer_start, has_reasoning=split.reasoned)
    if not values:  # nothing generated before the stop token: an empty answer, honestly scored 0
        logp, count, note = (0.0, 0, None) if stop is not None else (None, None, note)
    reasoning_tokens = len(values) - count if split.reasoned and count is not None else None
    # Said only when false: the text re-encodes to other tokens than were sampled, so a scorer's
    # teacher-forced logp of it (a reference's, say) is of other tokens than this one.
    extra = {} if result.get("retokenizes", True) is not False else {"text_retokenizes": False}
    return Trace(text=split.answer, finish_reason=finish, token_count=count, logp=logp, seed=seed,
                 model_version=version, logp_source=LOGP_SOURCE if logp is not None else None,
                 reasoning=split.reasoning, reasoning_tokens=reasoning_tokens, logp_note=note,
                 answer_missing=split.answer_missing, prompt_tokens=prompt_tokens,
                 output_tokens=len(values) + (1 if stop is not None else 0), extra=extra)

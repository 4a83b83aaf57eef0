"""HFScorer against a tiny tokenizer and a tiny random GPT-2 built here: nothing is downloaded."""
from __future__ import annotations

import copy
import math

import pytest
import yaml

import tiny_lm
from conftest import TEST_KEY
from rlhf_eval.sampling import Score, Scorer, ScoringError
from rlhf_eval.suite import ScorerConfig


@pytest.fixture(scope="module", autouse=True)
def _libraries():
    """torch and transformers load when these tests run, not while pytest collects: importing them
    took ~9 s in every xdist worker."""
    global torch, GPT2Config, GPT2LMHeadModel, HFScorer
    torch = pytest.importorskip("torch")
    pytest.importorskip("transformers")
    pytest.importorskip("tokenizers")
    from transformers import GPT2Config, GPT2LMHeadModel

    from rlhf_eval.backends.hf import HFScorer


TEMPLATE = "Question: {prompt}\nAnswer:\n"
PROMPTS = ["what is two plus two", "where is the cat"]
COMPLETIONS = ["The answer is four.", " four", "4", "The cat sat on the mat, hello world!", "é ünï ☃", "\n\nanswer"]
_tokenizer = tiny_lm.bpe_tokenizer  # shared with the hf sampler's tests


def _model(vocab_size: int):
    return tiny_lm.gpt2(vocab_size)


@pytest.fixture(scope="module")
def tok():
    return _tokenizer()


@pytest.fixture(scope="module")
def model(tok):
    return _model(len(tok))


def _scorer(model, tok, **kw):
    return HFScorer(ScorerConfig(provider="hf", name="tiny", template=kw.pop("template", TEMPLATE), **kw),
                    model=model, tokenizer=tok)


def _reference(model, prefix: list[int], completion: list[int]) -> float:
    """Σ log_softmax over the completion, one unpadded forward pass per token on the growing prefix."""
    total = 0.0
    with torch.no_grad():
        for t, token in enumerate(completion):
            ids = torch.tensor([prefix + completion[:t]])
            logits = model(input_ids=ids).logits[0, -1]
            total += float(torch.log_softmax(logits.double(), dim=-1)[token])
    return total


def _ids(tok, text):
    return tok(text, add_special_tokens=False)["input_ids"]


def test_matches_per_token_loop(model, tok):
    scorer = _scorer(model, tok, batch_size=3)
    assert isinstance(scorer, Scorer) and scorer.name == "hf:tiny"
    assert _ids(tok, "answer") != [tok.convert_tokens_to_ids(c) for c in "answer"]  # the BPE did merge
    for prompt in PROMPTS:
        context = TEMPLATE.replace("{prompt}", prompt)
        scores = scorer.score(prompt, COMPLETIONS)
        assert len(scores) == len(COMPLETIONS)
        for completion, got in zip(COMPLETIONS, scores):
            # The template ends with a newline, so the texts tokenize apart exactly as together.
            assert _ids(tok, context + completion) == _ids(tok, context) + _ids(tok, completion)
            want_ids = _ids(tok, completion)
            assert got.token_count == len(want_ids)
            want = _reference(model, [tok.bos_token_id] + _ids(tok, context), want_ids)
            assert got.logp == pytest.approx(want, abs=1e-5)
            assert got.logp < 0


def test_batch_size_and_padding_do_not_change_scores(model, tok):
    runs = [_scorer(model, tok, batch_size=b).score(PROMPTS[0], COMPLETIONS) for b in (1, 3, 8)]
    for other in runs[1:]:
        for a, b in zip(runs[0], other):
            assert a.token_count == b.token_count
            assert a.logp == pytest.approx(b.logp, abs=1e-6)
    # alone (no padding at all) vs in a batch padded to the longest completion
    alone = [_scorer(model, tok, batch_size=8).score(PROMPTS[0], [c])[0] for c in COMPLETIONS]
    for a, b in zip(alone, runs[2]):
        assert a.logp == pytest.approx(b.logp, abs=1e-6)


def test_left_context_changes_the_score(model, tok):
    scorer = _scorer(model, tok)
    a, b = (scorer.score(p, ["The answer is four."])[0] for p in PROMPTS)
    assert a.token_count == b.token_count
    assert abs(a.logp - b.logp) > 1e-4


def test_empty_completion(model, tok):
    scores = _scorer(model, tok).score(PROMPTS[0], ["", " four", ""])
    assert scores[0] == Score(0.0, 0) and scores[2] == Score(0.0, 0)
    assert scores[1] == _scorer(model, tok).score(PROMPTS[0], [" four"])[0]
    assert _scorer(model, tok).score(PROMPTS[0], []) == []


def test_token_straddling_the_boundary_is_refused(model, tok):
    assert len(_ids(tok, " answer")) == 1
    scorer = _scorer(model, tok, template="Question: {prompt}\nThe ans")
    with pytest.raises(ScoringError, match="spans the end of the context") as e:
        scorer.score(PROMPTS[0], ["wer is four."])
    assert "\n" not in str(e.value) and "newline" in str(e.value)
    # A trailing space merges with the completion's first word in byte-level BPE.
    with pytest.raises(ScoringError, match="newline"):
        _scorer(model, tok, template="Question: {prompt}\nAnswer: ").score(PROMPTS[0], ["the answer"])


def test_trimmed_offsets_still_catch_the_boundary_and_empty_context_gets_bos(model):
    tok = _tokenizer(bos_template=False)  # adds no BOS; offsets trimmed of leading spaces
    with pytest.raises(ScoringError, match="tokenized differently"):
        _scorer(model, tok, template="Question: {prompt}\nAnswer: ").score(PROMPTS[0], ["the answer"])
    # Non-empty context: no BOS is added (the tokenizer adds none), the context alone conditions.
    got = _scorer(model, tok).score(PROMPTS[0], ["The answer is four."])[0]
    context = TEMPLATE.replace("{prompt}", PROMPTS[0])
    assert got.logp == pytest.approx(_reference(model, _ids(tok, context), _ids(tok, "The answer is four.")), abs=1e-5)
    # Empty context: the first completion token is conditioned on BOS.
    got = _scorer(model, tok, template="{prompt}").score("", ["The answer is four."])[0]
    assert got.token_count == len(_ids(tok, "The answer is four."))
    assert got.logp == pytest.approx(_reference(model, [0], _ids(tok, "The answer is four.")), abs=1e-5)
    no_bos = copy.deepcopy(tok)
    no_bos.bos_token = None
    with pytest.raises(ScoringError, match="no BOS"):
        _scorer(model, no_bos, template="{prompt}").score("", ["four"])


class _SlowTokenizer:
    """The fast tokenizer seen as a slow one: no offsets."""
    is_fast = False

    def __init__(self, tok):
        self._tok = tok

    def __getattr__(self, name):
        return getattr(self._tok, name)

    def __call__(self, text, **kwargs):
        assert "return_offsets_mapping" not in kwargs
        return self._tok(text, **kwargs)


def test_slow_tokenizer_without_offsets(model, tok):
    slow = _SlowTokenizer(tok)
    got = _scorer(model, slow).score(PROMPTS[0], COMPLETIONS)
    assert got == _scorer(model, tok).score(PROMPTS[0], COMPLETIONS)
    with pytest.raises(ScoringError, match="tokenized differently"):
        _scorer(model, slow, template="Question: {prompt}\nThe ans").score(PROMPTS[0], ["wer is four."])


def test_bos_in_the_template_is_not_doubled(model, tok):
    got = _scorer(model, tok, template="<s>" + TEMPLATE).score(PROMPTS[0], [" four"])[0]
    want = _scorer(model, tok).score(PROMPTS[0], [" four"])[0]
    assert got == want


def test_too_long_is_refused(model, tok):
    with pytest.raises(ScoringError, match="128 positions"):
        _scorer(model, tok).score(PROMPTS[0], ["é" * 100])


def test_dtype_from_config(model, tok):
    half = copy.deepcopy(model)
    scorer = _scorer(half, tok, dtype="bfloat16")
    assert next(scorer.model.parameters()).dtype == torch.bfloat16
    got = scorer.score(PROMPTS[0], COMPLETIONS[:3])
    want = _scorer(model, tok).score(PROMPTS[0], COMPLETIONS[:3])
    for g, w in zip(got, want):
        assert g.token_count == w.token_count
        assert math.isfinite(g.logp) and g.logp == pytest.approx(w.logp, rel=0.05, abs=0.5)


def test_a_model_scored_as_it_is_records_its_own_dtype(model, tok, tmp_path):
    """A trainer's live bfloat16 reference (the callback's, scored as it is) is recorded as bfloat16, not as
    the suite's float32, and replaying it as float32 says which dtype to set."""
    from rlhf_eval.recording import CassetteProblem, use_cassette

    half = copy.deepcopy(model).to(torch.bfloat16)
    config = ScorerConfig(provider="hf", name="tiny", template=TEMPLATE)  # dtype float32 by default
    path = tmp_path / "q.yaml"
    with use_cassette(path, "once"):
        HFScorer(config, model=half, tokenizer=tok, as_is=True).score(PROMPTS[0], COMPLETIONS[:2])
    body = yaml.safe_load(path.read_text())["interactions"][0]["request"]["body"]
    assert '"dtype": "bfloat16"' in body or '"dtype":"bfloat16"' in body
    assert next(half.parameters()).dtype == torch.bfloat16  # not cast in place
    with pytest.raises(CassetteProblem) as e, use_cassette(path, "none", rerecord_hint="pytest q"):
        HFScorer(config, replay=True).score(PROMPTS[0], COMPLETIONS[:2])
    assert ("its scores were computed in bfloat16 and this run asks for float32: set the scorer's dtype "
            "(dpo.reference or model.scorer): bfloat16 in the suite to replay them, or re-record in float32"
            ) in str(e.value)


def test_save_and_load_round_trip(model, tok, tmp_path):
    from rlhf_eval.backends import make_scorer

    model.save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    config = ScorerConfig(provider="hf", name=str(tmp_path), template=TEMPLATE, batch_size=2)
    loaded = HFScorer(config)
    assert loaded.name == f"hf:{tmp_path}"
    want = _scorer(model, tok).score(PROMPTS[1], COMPLETIONS)
    for got in (loaded.score(PROMPTS[1], COMPLETIONS), make_scorer(config).score(PROMPTS[1], COMPLETIONS)):
        for g, w in zip(got, want):
            assert g.token_count == w.token_count
            assert g.logp == pytest.approx(w.logp, abs=1e-6)


def test_missing_checkpoint_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    missing = tmp_path / "no-such-checkpoint"
    with pytest.raises(ScoringError) as e:
        HFScorer(ScorerConfig(provider="hf", name=str(missing)))
    msg = str(e.value)
    assert "\n" not in msg and str(missing) in msg and "download" in msg
    with pytest.raises(ScoringError) as e:
        HFScorer(ScorerConfig(provider="hf", name="no-such-org/no-such-model-xyz"))
    msg = str(e.value)
    assert "\n" not in msg and "huggingface-cli download no-such-org/no-such-model-xyz" in msg
    with pytest.raises(ScoringError) as e:  # a directory without a checkpoint in it
        HFScorer(ScorerConfig(provider="hf", name=str(tmp_path)))
    assert "\n" not in str(e.value) and str(tmp_path) in str(e.value)


def test_local_transformers_reference_through_a_suite(project, emulator, monkeypatch, tmp_path):
    """An `hf` reference scorer in a suite records, replays offline and gives the margins its
    logps imply (here, beside the scorer's own tests: one worker imports torch)."""
    pytest.importorskip("openai")
    from test_logprob_backends import margins_from_json, openai_suite, replay_offline
    from test_plugin import metrics_of, report_json

    monkeypatch.setenv("OPENAI_API_KEY", TEST_KEY)
    tok = _tokenizer()
    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=16, n_head=2, vocab_size=len(tok), n_positions=4096,
                                       bos_token_id=0, eos_token_id=1))
    checkpoint = tmp_path / "tiny-ref"
    model.save_pretrained(checkpoint)
    tok.save_pretrained(checkpoint)
    text = openai_suite(emulator.base_url, limit=2, samples=4)
    doc = yaml.safe_load(text)
    doc["dpo"]["reference"] = {"provider": "hf", "name": str(checkpoint), "template": "{prompt}\n", "batch_size": 3}
    text = yaml.safe_dump(doc, sort_keys=False)
    project.makefile(".yaml", oa=text)
    recorded, rec = report_json(project, "--rlhf-record-mode=once")
    recorded.assert_outcomes(passed=2)
    replayed, rep = replay_offline(project, monkeypatch, text, url=emulator.base_url)
    replayed.assert_outcomes(passed=2)
    assert metrics_of(rep) == metrics_of(rec)
    for q in rep["suites"][0]["questions"]:
        assert all(t["ref_logp"] is not None and t["ref_token_count"] > 0 for t in q["traces"])
        assert [p["margin"] for p in q["pairs"]] == pytest.approx(margins_from_json(q, 0.1, reference=True))

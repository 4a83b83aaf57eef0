"""Recording and replaying a question's HTTP with vcrpy: one cassette per question.

Requests match on method, path and the *canonical JSON body* (never host or port), so a changed
prompt, model or sampling setting can never replay a stale answer, and a cassette recorded against
the emulator replays against any base URL.

Cassettes are written atomically (temp file + rename), only when the whole question was sampled,
and never with a secret in them: known keys are filtered, and the text is scanned for any key or
token before it is written. Only the final exchange of a retried request is kept.

One module per concern:

- `bodies`: JSON bodies, parsed once (orjson when it gives `json`'s value)
- `cassette_format`: the file format (compact JSON, seed order) and what is kept of an exchange
- `storage`: vcrpy persisters — atomic writes, the secret scan, one line for a bad file
- `matching`: the JSON-body matcher, the request filter and the match index
- `explain`: why a request is not in its cassette (stale, seeds changed, more answers asked for)
- `faults`: which interaction answered a request, to blame a bad response on its cassette
- `router`: the one vcrpy patch, routing each thread to its own cassette
- `cassette`: a question's cassette and `use_cassette`
- `vcr_adapter`: the only module that imports vcrpy, and every vcrpy internal used here
- `answers`: answers that came another way (a batch job), played and recorded as from the network
- `local`: a local model's calls (the `hf` sampler and scorer) as cassette entries, `POST local://hf/…`

What a request's seed is (for the file's order and the "did `samples` or `seed` change?"
explanation) is the provider's knowledge: `rlhf_eval.providers.request_seed`.
"""
from __future__ import annotations

from ..record_modes import RECORD_MODES
from .bodies import loads_json
from .cassette import IndexedCassette, cassette_path, open_cassette, use_cassette
from .cassette_format import CompactJSONSerializer
from .explain import explain_mismatch, find_cassette_mismatch, json_diff
from .faults import forget_replayed, replay_fault
from .matching import SECRET_HEADERS, SECRET_QUERY, json_body
from .problems import CassetteProblem, CassetteWriteError, ReplayFault, SecretInCassette, rerecord_advice
from .router import RETRYABLE_STATUS, ROUTER, before_network, bind, current_cassette, hold_patch, release_patch

__all__ = [
    "RECORD_MODES", "RETRYABLE_STATUS", "SECRET_HEADERS", "SECRET_QUERY",
    "CassetteProblem", "CassetteWriteError", "ReplayFault", "SecretInCassette",
    "CompactJSONSerializer", "IndexedCassette", "ROUTER",
    "before_network", "bind", "cassette_path", "current_cassette", "explain_mismatch", "find_cassette_mismatch",
    "forget_replayed",
    "hold_patch", "json_body", "json_diff", "loads_json", "open_cassette", "release_patch", "replay_fault",
    "rerecord_advice", "use_cassette",
]

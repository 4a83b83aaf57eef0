"""Cassette size per question: what is on disk, where the bytes go, and what other encodings weigh.

    python benchmarks/cassette_size.py                          # the shipped cassettes/
    python benchmarks/cassette_size.py /tmp/rlhf-bench/cassettes [--sample 100]

For every cassette (one per question): size on disk (mean / median / max KB), traces and
chosen-token logprobs per question. Then, for a sample of cassettes, the same interactions as

* compact JSON, the format rlhf-eval writes (re-serialized: must equal the file, as a check);
* YAML, as vcrpy's default serializer writes it (what a plain vcrpy setup would store);
* compact JSON with each response body stored as a JSON value instead of an escaped string (a
  format change: readers of `body.string`, vcrpy's own serializers included, would break);
* gzip of the compact JSON (for reference: not readable by YAML/JSON tools as is).

and where the bytes of a compact-JSON cassette go (request, response text, logprobs, escaping).
"""
from __future__ import annotations

import argparse
import gzip
import json
import statistics
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]


def compact(value) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def kb(n: float) -> str:
    return f"{n / 1000:7.1f} KB"


def variants(path: Path) -> dict[str, int]:
    """Byte sizes of one cassette in each encoding."""
    from vcr.serializers import yamlserializer

    from rlhf_eval.recording import CompactJSONSerializer

    text = path.read_text(encoding="utf-8")
    data = json.loads(text)
    out = {"on disk (compact JSON)": len(text.encode("utf-8"))}
    out["compact JSON, re-serialized"] = len(CompactJSONSerializer.serialize(json.loads(text)).encode("utf-8"))
    out["YAML (vcrpy's default serializer)"] = len(yamlserializer.serialize(json.loads(text)).encode("utf-8"))
    as_value = json.loads(text)
    for inter in as_value["interactions"]:
        body = inter["response"]["body"]
        try:
            body["json"] = json.loads(body.pop("string"))
        except (ValueError, TypeError):
            pass
    lines = [compact(i) for i in as_value["interactions"]]
    out["compact JSON, bodies as JSON values"] = len(('{"version":1,"interactions":[\n' + ",\n".join(lines)
                                                      + "\n]}\n").encode("utf-8"))
    out["gzip of compact JSON"] = len(gzip.compress(text.encode("utf-8"), 6))
    del data
    return out


def breakdown(path: Path) -> dict[str, int]:
    """Where the bytes of one compact-JSON cassette go."""
    data = json.loads(path.read_text(encoding="utf-8"))
    parts = dict.fromkeys(["requests (uri, body, headers)", "response text", "chosen-token logprobs",
                           "other response fields", "escaping of the body string (\\\")",
                           "framing (status, headers, keys)"], 0)
    for inter in data["interactions"]:
        parts["requests (uri, body, headers)"] += len(compact(inter["request"]).encode())
        raw = inter["response"]["body"]["string"]
        body = json.loads(raw)
        raw_len = len(raw.encode())
        escaped_len = len(compact(raw).encode())
        parts["escaping of the body string (\\\")"] += escaped_len - raw_len
        text = chosen = 0
        for cand in body.get("candidates", []):
            text += len(compact(cand.get("content", {})).encode())
            chosen += len(compact((cand.get("logprobsResult") or {}).get("chosenCandidates") or []).encode())
        parts["response text"] += text
        parts["chosen-token logprobs"] += chosen
        parts["other response fields"] += raw_len - text - chosen
        parts["framing (status, headers, keys)"] += len(compact(inter["response"]).encode()) - escaped_len
    total = len(path.read_text(encoding="utf-8").encode())
    parts["framing (status, headers, keys)"] += total - sum(parts.values())
    return parts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("cassette_dir", nargs="?", type=Path, default=REPO / "cassettes")
    parser.add_argument("--sample", type=int, default=100, help="cassettes re-encoded for the comparison")
    parser.add_argument("--limit-kb", type=float, default=200.0)
    args = parser.parse_args()
    files = sorted(args.cassette_dir.rglob("*.yaml"))
    if not files:
        sys.exit(f"no cassettes under {args.cassette_dir}")
    sizes, traces, tokens = [], [], []
    for path in files:
        sizes.append(path.stat().st_size)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except ValueError:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        n = t = 0
        for inter in data["interactions"]:
            try:
                body = json.loads(inter["response"]["body"]["string"])
            except (ValueError, TypeError, KeyError):
                continue
            for cand in body.get("candidates", []):
                n += 1
                t += len((cand.get("logprobsResult") or {}).get("chosenCandidates") or [])
        traces.append(n)
        tokens.append(t)
    mean, total_tokens = statistics.mean(sizes), sum(tokens)
    print(f"{len(files)} cassettes (one per question) under {args.cassette_dir}: {sum(sizes) / 1e6:.1f} MB")
    print(f"  per question: mean {kb(mean)}, median {kb(statistics.median(sizes))}, max {kb(max(sizes))}, "
          f"min {kb(min(sizes))}; over {args.limit_kb:.0f} KB: {sum(s > args.limit_kb * 1000 for s in sizes)}")
    print(f"  traces per question: mean {statistics.mean(traces):.1f}; chosen-token logprobs per trace: "
          f"mean {total_tokens / max(1, sum(traces)):.1f}")
    if total_tokens:
        print(f"  {sum(sizes) / total_tokens:.1f} bytes on disk per chosen token "
              f"(a question of 8 traces x 300 tokens: {sum(sizes) / total_tokens * 2400 / 1000:.0f} KB)")
    verdict = "meets" if mean <= args.limit_kb * 1000 else "misses"
    print(f"  target <= {args.limit_kb:.0f} KB per question (mean): {verdict} ({mean / 1000:.1f} KB)")

    step = max(1, len(files) // max(1, args.sample))
    sample = files[::step][:args.sample]
    totals: dict[str, list[int]] = {}
    for path in sample:
        for name, size in variants(path).items():
            totals.setdefault(name, []).append(size)
    base = statistics.mean(totals["on disk (compact JSON)"])
    print(f"\nencodings of the same interactions ({len(sample)} cassettes sampled), mean per question:")
    for name, values in totals.items():
        m = statistics.mean(values)
        print(f"  {kb(m)}  max {kb(max(values))}  {m / base:6.2f}x  {name}")
    parts: dict[str, int] = {}
    for path in sample:
        for name, size in breakdown(path).items():
            parts[name] = parts.get(name, 0) + size
    whole = sum(parts.values())
    print("\nwhere the bytes of a compact-JSON cassette go:")
    for name, size in sorted(parts.items(), key=lambda kv: -kv[1]):
        print(f"  {size / whole * 100:5.1f}%  {kb(size / len(sample))}/question  {name}")


if __name__ == "__main__":
    main()

"""The run report as one self-contained HTML page.

`render_html(report)` turns the `Report` that `report.build_report` makes (the same one written as
JSON; a report dict is validated into one) into a single HTML file: inline CSS, inline SVG plots, an
optional small inline script for filtering and expanding — and nothing fetched from anywhere.
Everything reads with JavaScript off. Every string taken from the report is escaped (trace texts are model output).

Optional parts are rendered when present and skipped when absent: per-question and per-suite
`intervals` ({metric: [lo, hi]}), `metrics.maj_at_k`, and a top-level `comparison` against a
baseline run (deltas next to the metrics, significant ones marked, flipped pairs per question).

The page is built with list appends and one join, so it stays linear in the size of the report
(1000 questions × 8 traces render in well under a second).
"""
from __future__ import annotations

import html
from array import array
import math
import re
from pathlib import Path
from typing import Any, Callable
from urllib.parse import quote

import numpy as np

from .credentials import checked_writer, write_without_secrets
from .compare import one_sided_lines
from .report_model import MetricChange, Question, QuestionComparison, Report, Suite
from .rewards import DEFAULT_REWARD
from .rows import (
    CURVES,
    DPO_METRICS,
    UNAVAILABLE,
    Cell,
    digits_of,
    fmt,
    fmt_p,
    fmt_signed,
    is_number,
    is_zero_spread,
    metric_order,
    question_cells,
    suite_cells,
    summary_columns,
    typographic,
)
from .types import VERDICTS

__all__ = ["render_html", "write_html"]

# C0 controls (but tab, newline, carriage return), DEL and lone surrogates: invalid in an HTML
# document or unencodable as UTF-8. Shown as visible replacement characters instead.
_BAD_CHARS = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ud800-\udfff]")


def _fix_char(m: re.Match) -> str:
    c = m.group(0)
    o = ord(c)
    if o < 0x20:
        return chr(0x2400 + o)  # the Unicode "control pictures" block: ␀ ␁ …
    if o == 0x7F:
        return "\u2421"
    return "\ufffd"


def prompt_html(prompt: str | list[dict[str, Any]]) -> str:
    """A report question's prompt as HTML: text in one block; a chat as one block per message under
    its role (system, user, assistant), in order."""
    if not isinstance(prompt, list):
        return f'<div class="pre">{_esc(prompt)}</div>'
    return "".join(f'<div class="msg"><div class="role">{_esc(m.get("role", ""))}</div>'
                   f'<div class="pre">{_esc(m.get("content", ""))}</div></div>' for m in prompt)


def _esc(value: Any) -> str:
    """Escape any value for HTML text and attribute values (quotes included)."""
    s = value if isinstance(value, str) else str(value)
    if _BAD_CHARS.search(s):
        s = _BAD_CHARS.sub(_fix_char, s)
    return html.escape(s, quote=True)


# ---------------------------------------------------------------------------------------------
# numbers: rows' formatters, escaped, with a true minus sign


def _fmt(v: Any, digits: int = 3) -> str:
    if isinstance(v, str):
        return _esc(v)
    text = fmt(v, digits)
    return text if text == "-" else typographic(text)


def _signed(v: Any, digits: int = 3) -> str:
    return typographic(fmt_signed(v, digits)) if is_number(v) else _fmt(v, digits)


# ---------------------------------------------------------------------------------------------
# small pieces: intervals, deltas, anchors


def _interval_values(intervals: dict | None, name: str | None) -> tuple[float, float] | None:
    iv = (intervals or {}).get(name) if name else None
    if isinstance(iv, (list, tuple)) and len(iv) == 2 and is_number(iv[0]) and is_number(iv[1]):
        return float(iv[0]), float(iv[1])
    return None


def _interval(intervals: dict | None, name: str | None) -> str:
    """' [lo, hi]' when the intervals hold two numbers for `name`, else ''."""
    iv = _interval_values(intervals, name)
    if iv is None:
        return ""
    return f' <span class="ci" title="interval for {_esc(name)}">[{_fmt(iv[0], 2)}, {_fmt(iv[1], 2)}]</span>'


def _delta(changes: dict[str, MetricChange] | None, name: str | None, digits: int = 3) -> str:
    """The change against the baseline of metric `name` when the comparison holds it, else ''."""
    entry = (changes or {}).get(name) if name else None
    if entry is None:
        return ""
    base, cur, delta = entry.baseline, entry.current, entry.delta
    if not is_number(delta) and is_number(base) and is_number(cur):
        delta = float(cur) - float(base)
    significant, worse = entry.significant, entry.worse
    tip = [f"{name}: baseline {_fmt(base, digits)} → current {_fmt(cur, digits)}"]
    if is_number(entry.p_value):
        tip.append(f"p = {fmt_p(entry.p_value)}")
    if entry.test:
        tip.append(f"test: {_esc(entry.test)}")
    if entry.reason:  # measured on one side only: lost (a regression) or new
        tip.append(_esc(entry.reason))
    tip.append("significant" if significant else "not significant")
    if worse:
        tip.append("worse")
    cls = "d " + ("sig " + ("worse" if worse else "better") if significant else ("ns worse" if worse else "ns"))
    if entry.reason:
        text = "lost" if cur is None else "new"
    else:
        text = "Δ n/a" if not is_number(delta) else f"Δ{_signed(delta, digits)}"
    star = "*" if significant else ""
    return f' <span class="{cls}" title="{"; ".join(tip)}">{text}{star}</span>'


def _anchor(prefix: str, *parts: Any, taken: set[str] | None = None) -> str:
    """An id usable as `#fragment`: readable, percent-encoded outside [A-Za-z0-9._~/-], unique."""
    base = prefix + quote("/".join(str(p) for p in parts), safe="/._-~", errors="replace")
    anchor, n = base, 1
    if taken is not None:
        while anchor in taken:
            n += 1
            anchor = f"{base}~{n}"
        taken.add(anchor)
    return anchor


# ---------------------------------------------------------------------------------------------
# answer highlighting


def _is_word(c: str) -> bool:
    return c.isalnum()


def _last_occurrence(text: str, needle: str) -> int:
    """Index of the last occurrence of `needle` in `text`, preferring one not glued to a longer
    word or number (so the answer 'A' is found in '(A)', not in 'Answer'); -1 when absent."""
    if not needle:
        return -1
    first = pos = text.rfind(needle)
    tries = 0
    while pos >= 0 and tries < 64:
        before = text[pos - 1] if pos else ""
        after = text[pos + len(needle)] if pos + len(needle) < len(text) else ""
        if not (before and _is_word(before) and _is_word(needle[0])) and \
                not (after and _is_word(after) and _is_word(needle[-1])):
            return pos
        pos = text.rfind(needle, 0, pos + len(needle) - 1) if pos else -1
        tries += 1
    if first < 0:  # a case-insensitive verifier may report the answer in another case
        low = text.lower()
        if len(low) == len(text):
            first = low.rfind(needle.lower())
    return first


def _highlight(text: str, extracted: Any, cls: str = "") -> tuple[str, bool]:
    """The escaped text with the last occurrence of the extracted answer wrapped in <mark>."""
    if not isinstance(text, str):
        text = "" if text is None else str(text)
    if extracted is None or extracted == "":
        return _esc(text), False
    needle = str(extracted)
    pos = _last_occurrence(text, needle)
    if pos < 0 and needle.strip() and needle.strip() != needle:
        needle = needle.strip()
        pos = _last_occurrence(text, needle)
    if pos < 0:
        return _esc(text), False
    end = pos + len(needle)
    mark = f'<mark class="{cls}">' if cls else "<mark>"
    return f'{_esc(text[:pos])}{mark}{_esc(text[pos:end])}</mark>{_esc(text[end:])}', True


# ---------------------------------------------------------------------------------------------
# SVG plots


def _svg_open(width: int, height: int, label: str) -> str:
    return (f'<svg class="plot" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
            f'viewBox="0 0 {width} {height}" role="img" aria-label="{_esc(label)}">')


def _bar_chart(values: list[float | None], labels: list[str], hrefs: list[str], *, title: str, ymax: float,
               fail: list[bool], intervals: list[tuple[float, float] | None] | None = None,
               zero_marks: bool = False, width: int = 414, height: int = 104) -> str:
    """One bar per question (None: no bar, a grey tick), y from 0 to ymax, links to the question."""
    left, right, top, bottom = 34, 6, 18, 16
    pw, ph = width - left - right, height - top - bottom
    n = max(len(values), 1)
    slot = pw / n
    bw = max(slot * 0.78, 0.6)
    ymax = ymax if ymax > 0 else 1.0
    axis_note = f"{len(values)} questions, in suite order"
    if slot < 3 and (intervals or zero_marks):  # too dense: error bars and markers would hide the bars
        intervals, zero_marks = None, False
        title = title.split(" (")[0]
        axis_note += " (too many for intervals and markers)"

    def y(v: float) -> float:
        return top + ph - max(0.0, min(v, ymax)) / ymax * ph

    out = [_svg_open(width, height, title),
           f'<text x="{left}" y="12" class="pt">{_esc(title)}</text>']
    for frac in (0.0, 0.5, 1.0):
        yy = y(frac * ymax)
        out.append(f'<line x1="{left}" x2="{left + pw}" y1="{yy:.1f}" y2="{yy:.1f}" class="grid"/>'
                   f'<text x="{left - 4}" y="{yy + 3:.1f}" class="ax" text-anchor="end">{frac * ymax:.3g}</text>')
    base = top + ph
    for i, v in enumerate(values):
        x = left + i * slot + (slot - bw) / 2
        tip = f"{labels[i]}: {_fmt(v)}"
        iv = intervals[i] if intervals else None
        if iv:
            tip += f" [{_fmt(iv[0], 2)}, {_fmt(iv[1], 2)}]"
        parts = [f'<a href="#{hrefs[i]}"><title>{_esc(tip)}</title>']
        if v is None or not is_number(v):
            parts.append(f'<rect x="{x:.2f}" y="{base - 2:.1f}" width="{bw:.2f}" height="2" class="na"/>')
        else:
            yy = y(float(v))
            h = max(base - yy, 0.0)
            cls = "bar fail" if fail[i] else "bar"
            parts.append(f'<rect x="{x:.2f}" y="{yy:.1f}" width="{bw:.2f}" height="{max(h, 0.8):.1f}" class="{cls}"/>')
            if zero_marks and float(v) == 0.0:
                cx = x + bw / 2
                parts.append(f'<path d="M{cx - 3:.1f} {base + 3:.1f}l3 -5l3 5z" class="zero"/>')
        if iv:
            lo, hi = iv
            cx = x + bw / 2
            parts.append(f'<line x1="{cx:.2f}" x2="{cx:.2f}" y1="{y(lo):.1f}" y2="{y(hi):.1f}" class="err"/>')
        parts.append("</a>")
        out.append("".join(parts))
    out.append(f'<line x1="{left}" x2="{left + pw}" y1="{base}" y2="{base}" class="axis"/>'
               f'<text x="{left + pw}" y="{height - 3}" class="ax" text-anchor="end">{axis_note}</text>')
    out.append("</svg>")
    return "".join(out)


def _nice_max(v: float) -> float:
    """A round upper end for an axis that starts at 0: 0.535 → 0.6, 3.2 → 4, 0 → 1."""
    if not v > 0:
        return 1.0
    mag = 10 ** math.floor(math.log10(v))
    for step in (1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10):
        if v <= step * mag * 1.0000001:
            return step * mag
    return 10 * mag


def _pass_curve(pass_at: list[float], pass_hat: list[float], *, small: bool = False) -> str:
    """pass@k (at least one of k traces correct) and pass^k (all k correct) against the budget k = 1..n,
    as lines from 0 to 1; each point's value in its tooltip."""
    n = len(pass_at)
    width, height = (150, 44) if small else (300, 104)
    left, right, top, bottom = (22, 6, 6, 12) if small else (34, 8, 18, 16)
    pw, ph = width - left - right, height - top - bottom
    title = "pass@k (—) and pass^k (- -) by budget k"

    def xy(i: int, v: float) -> tuple[float, float]:
        return left + (i / (n - 1) if n > 1 else 0.5) * pw, top + (1.0 - v) * ph

    out = [_svg_open(width, height, title)]
    if not small:
        out.append(f'<text x="{left}" y="12" class="pt">{title}</text>')
    base = top + ph
    out.append(f'<line x1="{left}" x2="{left + pw}" y1="{top}" y2="{top}" class="grid"/>'
               f'<line x1="{left}" x2="{left + pw}" y1="{base}" y2="{base}" class="axis"/>'
               f'<text x="{left - 4}" y="{top + 3}" class="ax" text-anchor="end">1</text>'
               f'<text x="{left - 4}" y="{base + 3}" class="ax" text-anchor="end">0</text>'
               f'<text x="{left}" y="{height - 2}" class="ax">k=1</text>'
               f'<text x="{left + pw}" y="{height - 2}" class="ax" text-anchor="end">{n}</text>')
    for values, cls, name in ((pass_at, "curve", "pass@"), (pass_hat, "curve hat", "pass^")):
        if not values:
            continue
        points = [xy(i, v) for i, v in enumerate(values)]
        out.append(f'<polyline points="{" ".join(f"{x:.1f},{y:.1f}" for x, y in points)}" class="{cls}"/>')
        radius = 1.5 if small else 2.5
        out.extend(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="{radius}" class="{cls}"><title>{name}{k} = {_fmt(v)}</title>'
                   '</circle>' for k, (x, y), v in zip(range(1, n + 1), points, values))
    out.append("</svg>")
    return "".join(out)


def _histogram(margins: np.ndarray, *, title: str, width: int = 414, height: int = 104, bins: int = 24) -> str:
    left, right, top, bottom = 34, 6, 18, 16
    pw, ph = width - left - right, height - top - bottom
    lo, hi = float(margins.min()), float(margins.max())
    if lo == hi:
        lo, hi = lo - 0.5, hi + 0.5
    if lo < 0 < hi:  # put an edge at 0, so no bar mixes preferred and dispreferred pairs
        step = (hi - lo) / bins
        edges = np.arange(math.floor(lo / step), math.ceil(hi / step) + 1) * step
        lo, hi = float(edges[0]), float(edges[-1])
        counts, edges = np.histogram(margins, bins=edges)
    else:
        counts, edges = np.histogram(margins, bins=bins, range=(lo, hi))
    cmax = int(counts.max()) or 1

    def x(v: float) -> float:
        return left + (v - lo) / (hi - lo) * pw

    base = top + ph
    out = [_svg_open(width, height, title), f'<text x="{left}" y="12" class="pt">{_esc(title)}</text>',
           f'<line x1="{left}" x2="{left + pw}" y1="{top}" y2="{top}" class="grid"/>'
           f'<text x="{left - 4}" y="{top + 3}" class="ax" text-anchor="end">{cmax}</text>'
           f'<text x="{left - 4}" y="{base + 3}" class="ax" text-anchor="end">0</text>']
    for c, a, b in zip(counts.tolist(), edges[:-1].tolist(), edges[1:].tolist()):
        if not c:
            continue
        h = c / cmax * ph
        cls = "bar pos" if (a + b) / 2 > 0 else "bar neg"
        out.append(f'<rect x="{x(a) + 0.5:.1f}" y="{base - h:.1f}" width="{max(x(b) - x(a) - 1, 0.8):.1f}" '
                   f'height="{h:.1f}" class="{cls}"><title>{_fmt(a)} … {_fmt(b)}: {c} pair(s)</title></rect>')
    out.append(f'<line x1="{left}" x2="{left + pw}" y1="{base}" y2="{base}" class="axis"/>')
    if lo < 0 < hi:
        zx = x(0.0)
        out.append(f'<line x1="{zx:.1f}" x2="{zx:.1f}" y1="{top - 2}" y2="{base + 2}" class="zl"/>'
                   f'<text x="{zx:.1f}" y="{height - 3}" class="ax" text-anchor="middle">0</text>')
    out.append(f'<text x="{left}" y="{height - 3}" class="ax">{_fmt(lo, 2)}</text>'
               f'<text x="{left + pw}" y="{height - 3}" class="ax" text-anchor="end">{_fmt(hi, 2)}</text>')
    out.append("</svg>")
    return "".join(out)


# ---------------------------------------------------------------------------------------------
# the page


_CSS = """
:root{--fg:#1d2327;--muted:#68737d;--line:#dde3e8;--bg:#fff;--soft:#f5f7f9;--ok:#1a7f37;--bad:#c62828;
--okbg:#e6f4ea;--badbg:#fdecec;--warnbg:#fff6db;--warn:#8a6100;--acc:#2f6db5}
*{box-sizing:border-box}
body{margin:0;padding:14px 22px 40px;
font:13px/1.4 -apple-system,"Segoe UI",Roboto,"DejaVu Sans",Helvetica,Arial,sans-serif;color:var(--fg);
background:var(--bg)}
h1{font-size:20px;margin:0 0 4px}h2{font-size:16px;margin:18px 0 6px}h3{font-size:13px;margin:10px 0 4px}
a{color:var(--acc);text-decoration:none}a:hover{text-decoration:underline}
.muted{color:var(--muted)}.small{font-size:11.5px}
header{border-bottom:1px solid var(--line);padding-bottom:8px;margin-bottom:10px}
.hl{display:flex;gap:12px;align-items:baseline;flex-wrap:wrap}
.verdict{font-weight:700;padding:1px 8px;border-radius:10px;font-size:12px}
.verdict.pass{background:var(--okbg);color:var(--ok)}.verdict.fail{background:var(--badbg);color:var(--bad)}
.banner{padding:6px 10px;border-radius:4px;margin:6px 0;border-left:4px solid}
.banner.emu{background:var(--warnbg);border-color:#e0a800;color:#5c4300}
.banner.changed{background:var(--badbg);border-color:var(--bad);color:#7a1111;font-weight:600}
.banner.cmp{background:#eef4fb;border-color:var(--acc)}
.banner ul{margin:3px 0 0 18px;padding:0}
.suites-line{margin:3px 0}
.tablewrap{overflow-x:auto}
figure{margin:0 0 8px;padding:4px 8px 6px;border:1px solid var(--line);border-radius:4px;background:var(--soft)}
figcaption{font-weight:600;margin-bottom:2px}figcaption .muted{font-weight:400}
.charts{display:flex;flex-wrap:wrap;gap:8px}.charts>.unavail{width:414px;margin:3px 0}
svg.plot{display:block;background:#fff;margin:3px 0}
svg .pt{font-size:11px;font-weight:600;fill:#333}svg .ax{font-size:9.5px;fill:#777}
svg .grid{stroke:#eceff1}svg .axis{stroke:#999}svg .bar{fill:#4a86c5}svg .bar.fail{fill:#d9534f}
svg .bar.pos{fill:#3c9a5f}svg .bar.neg{fill:#d9534f}svg .na{fill:#bbb}svg .zero{fill:#e08a00}
svg .err{stroke:#222;stroke-width:1}svg .zl{stroke:#333;stroke-dasharray:3 2}
svg polyline.curve{fill:none;stroke:#4a86c5;stroke-width:1.5}svg polyline.curve.hat{stroke:#e08a00;stroke-dasharray:4 2}
svg circle.curve{fill:#4a86c5}svg circle.curve.hat{fill:#e08a00}
.unavail{padding:10px;color:var(--muted);font-style:italic;background:#fff;border:1px dashed var(--line)}
table{border-collapse:collapse}
table.sum{font-variant-numeric:tabular-nums;min-width:60%}
table.sum th,table.sum td{padding:1px 7px;border-bottom:1px solid var(--line);text-align:right;white-space:nowrap}
table.sum th{background:var(--soft);position:sticky;top:0;font-weight:600;z-index:1}
table.sum td.l,table.sum th.l{text-align:left}
table.sum tr.sh th{background:#fff;text-align:left;font-size:13.5px;padding-top:8px;position:static;
border-bottom:1px solid #c5ced6}
table.sum tr.srow td{font-weight:600;background:#eef2f6;border-bottom:2px solid #c5ced6}
table.sum tr.fail td{background:var(--badbg)}table.sum tr.srow.fail td{background:#f8d7d7}
.res{font-weight:700}.res.pass{color:var(--ok)}.res.fail{color:var(--bad)}
.badge{display:inline-block;padding:0 5px;border-radius:8px;font-size:10.5px;font-weight:600;line-height:15px;
vertical-align:1px}
.badge.zero{background:#fde9c8;color:#8a4b00}
.na-t{color:var(--muted);font-style:italic}
.ci{color:var(--muted);font-size:11px}
.d{font-size:11px;margin-left:2px}.d.ns{color:#8a949c}.d.ns.worse{color:#b07a7a}
.d.sig{font-weight:700;padding:0 3px;border-radius:3px}.d.sig.worse{color:#fff;background:var(--bad)}
.d.sig.better{color:#fff;background:var(--ok)}
#controls{margin:4px 0 6px;display:flex;gap:10px;align-items:center;flex-wrap:wrap}
#controls[hidden]{display:none}
#controls input[type=search]{padding:2px 6px;width:220px}
section.suite{margin-top:14px}
.settings{color:var(--muted);margin:2px 0 6px}
details.q{border:1px solid var(--line);border-radius:4px;margin:5px 0;background:#fff}
details.q[data-fail]{border-color:#e6a5a5}
details.q>summary{cursor:pointer;padding:4px 8px;background:var(--soft);list-style-position:inside}
details.q[open]>summary{border-bottom:1px solid var(--line)}
details.q>summary .qid{font-weight:700;margin:0 6px}
.qbody{padding:6px 10px 10px}
.kvs{display:flex;flex-wrap:wrap;gap:4px 14px;margin:2px 0 6px;font-variant-numeric:tabular-nums}
.kv .k{color:var(--muted);margin-right:3px}
ul.fails{margin:4px 0;padding-left:18px;color:var(--bad)}ul.unchk{margin:4px 0;padding-left:18px;color:var(--muted)}
.err-box{background:var(--badbg);color:#7a1111;padding:4px 8px;border-radius:3px;white-space:pre-wrap;
font-family:ui-monospace,Menlo,Consolas,monospace;font-size:12px}
table.tr{width:100%;font-variant-numeric:tabular-nums}
table.tr th,table.tr td{padding:3px 6px;border-bottom:1px solid var(--line);vertical-align:top;text-align:right;
white-space:nowrap}
table.tr th{background:var(--soft);font-weight:600;font-size:12px}
table.tr td.l,table.tr th.l{text-align:left}
table.tr td.txt{white-space:pre-wrap;text-align:left;
font-family:ui-monospace,Menlo,Consolas,"DejaVu Sans Mono",monospace;font-size:11.5px;line-height:1.35;width:100%;
word-break:break-word}
mark{background:#ffe066;color:#000;padding:0 2px;border-radius:2px;outline:1px solid #e0b400;font-weight:700}
mark.ok{background:#b6f0c4;outline-color:#2f9e52}mark.bad{background:#ffd0cc;outline-color:#d9534f}
.qref{margin:2px 0 4px}
.qref .ref{font-family:ui-monospace,Menlo,Consolas,monospace;background:var(--soft);padding:0 4px;border-radius:3px}
details.prompt{display:inline-block;margin-left:14px;vertical-align:top}
details.prompt>summary{cursor:pointer;color:var(--acc)}
details.prompt[open]{display:block;margin:4px 0 0}
.msg{margin:2px 0}.msg .role{color:var(--muted);font-size:11px;font-weight:700;text-transform:uppercase}
details.rs{margin-bottom:4px;color:#555;white-space:pre-wrap}details.rs>summary{cursor:pointer}
.pre{white-space:pre-wrap;font-family:ui-monospace,Menlo,Consolas,"DejaVu Sans Mono",monospace;font-size:11.5px;
background:var(--soft);padding:4px 8px;border-radius:3px}
.v{display:inline-block;padding:0 6px;border-radius:8px;font-size:11px;font-weight:700;color:#fff}
.v.correct{background:var(--ok)}.v.incorrect{background:var(--bad)}.v.unparsable{background:#8e44ad}
.v.truncated{background:#d17a00}.v.blocked{background:#555}.v.error{background:#000}.v.other{background:#777}
.vd{display:block;color:var(--muted);font-size:10.5px}
.pos{color:var(--ok)}.neg{color:var(--bad)}
.pairs{display:flex;flex-wrap:wrap;gap:4px 6px;margin:4px 0}
.pair{border:1px solid var(--line);border-radius:10px;padding:0 7px;font-size:11.5px;
font-variant-numeric:tabular-nums;white-space:nowrap}
.pair.pos{background:var(--okbg);border-color:#b7dfc2}.pair.neg{background:var(--badbg);border-color:#f0b8b8}
.pair.na{color:var(--muted)}
ul.flips{margin:4px 0;padding-left:18px}
footer{margin-top:24px;color:var(--muted);font-size:11.5px}
@media print{#controls{display:none}}
"""

_SCRIPT = """
(function(){
var c=document.getElementById('controls');if(!c)return;c.hidden=false;
var f=document.getElementById('flt'),fo=document.getElementById('failonly'),zo=document.getElementById('zeroonly');
var items=Array.prototype.slice.call(document.querySelectorAll('[data-q]'));
function apply(){var t=f.value.trim().toLowerCase(),o=fo.checked,z=zo.checked,n=0;
items.forEach(function(e){var s=(!t||e.getAttribute('data-q').indexOf(t)>=0)&&(!o||e.hasAttribute('data-fail'))
&&(!z||e.hasAttribute('data-zero'));
e.style.display=s?'':'none';if(s&&e.tagName==='TR')n++;});document.getElementById('shown').textContent=n+' shown';}
f.addEventListener('input',apply);fo.addEventListener('change',apply);zo.addEventListener('change',apply);
function all(open){document.querySelectorAll('details.q').forEach(function(d){d.open=open;});}
document.getElementById('expand').addEventListener('click',function(){all(true);});
document.getElementById('collapse').addEventListener('click',function(){all(false);});
function target(){var h=location.hash.slice(1);if(!h)return;var e=document.getElementById(h);
if(!e){try{e=document.getElementById(decodeURIComponent(h));}catch(x){}}
if(e&&e.tagName==='DETAILS'&&!e.open){e.open=true;e.scrollIntoView();}}
window.addEventListener('hashchange',target);target();apply();
})();
"""


_ZERO_BADGE = ' <span class="badge zero" title="every trace got the same reward: no GRPO signal">zero</span>'
_ZERO_BADGE_LONG = (' <span class="badge zero" title="every trace got the same reward: no GRPO signal">'
                    'zero spread</span>')


def _verdict_badge(verdict: Any) -> str:
    v = str(verdict)
    cls = v if v in VERDICTS else "other"
    return f'<span class="v {cls}">{_esc(v)}</span>'


def _dpo_cell(value: Any, unavailable: Any, interval: str = "", delta: str = "") -> str:
    if unavailable:
        return f'<span class="na-t" title="{_esc(unavailable)}">{UNAVAILABLE}</span>{delta}'
    return f"{_fmt(value)}{interval}{delta}"


def _cell(c: Cell, intervals: dict | None, changes: dict[str, MetricChange] | None) -> str:
    """A summary-table value with its interval and its change against the baseline (when there are)."""
    digits = 0 if isinstance(c.value, int) else 3
    if c.unavailable:
        return _dpo_cell(c.value, c.unavailable, delta=_delta(changes, c.metric, digits))
    zero = _ZERO_BADGE if c.metric == "spread" and is_zero_spread(c.value) else ""
    text = c.text if c.text == "-" else typographic(_esc(c.text))
    return f"{c.prefix}{text}{zero}{_interval(intervals, c.metric)}{_delta(changes, c.metric, digits)}"


class _SuiteFacts:
    """What the page's header and plots show of a suite's questions, gathered in one pass: a few
    values a question (the questions themselves may be read from disk one at a time)."""

    def __init__(self) -> None:
        self.ids: list[str] = []
        self.fail: list[bool] = []
        self.acc: list[Any] = []
        self.spread: list[Any] = []
        self.acc_iv: list[tuple[float, float] | None] = []
        self.spr_iv: list[tuple[float, float] | None] = []
        self.margins = array("d")  # scored pairs' margins, in order
        self.versions: dict[str, None] = {}  # the model versions of the traces, in order of appearance
        self.traces = 0
        self.pairs = 0

    def add(self, q: Question) -> None:
        self.ids.append(q.id)
        self.fail.append(_failed(q))
        self.acc.append(q.metrics.accuracy if q.metrics else None)
        self.spread.append(q.metrics.spread if q.metrics else None)
        self.acc_iv.append(_interval_values(q.intervals, "accuracy"))
        self.spr_iv.append(_interval_values(q.intervals, "spread"))
        self.margins.extend(float(p.margin) for p in q.pairs if is_number(p.margin))
        for t in q.traces:
            if t.model_version:
                self.versions.setdefault(str(t.model_version), None)
        self.traces += len(q.traces)
        self.pairs += len(q.pairs)


def _failed(q: Question) -> bool:
    return bool(q.error) or not q.passed


class _Page:
    """Holds the report and the look-ups every part needs; `render()` returns the whole page."""

    def __init__(self, report: Report, title: str) -> None:
        self.report = report
        self.title = title
        self.suites: list[Suite] = report.suites
        self.cmp = report.comparison
        self.cmp_suites = {cs.name: cs for cs in self.cmp.suites} if self.cmp else {}
        self.taken: set[str] = set()
        # anchors, computed once so the table, the plots and the sections agree
        self.q_anchor: dict[tuple[int, int], str] = {}
        self.s_anchor: dict[int, str] = {}
        # What the header and the plots show of each question, in one pass over the questions
        # (a report too large for memory reads them from disk: rlhf_eval.spool); the summary
        # table and the sections read them once more each.
        self.facts: list[_SuiteFacts] = []
        has_maj = False
        for si, s in enumerate(self.suites):
            self.s_anchor[si] = _anchor("s-", s.name, taken=self.taken)
            facts = _SuiteFacts()
            for qi, q in enumerate(s.questions):
                self.q_anchor[si, qi] = _anchor("q-", s.name, q.id, taken=self.taken)
                facts.add(q)
                has_maj = has_maj or (q.metrics is not None and "maj_at_k" in q.metrics.model_fields_set)
            self.facts.append(facts)
        self.has_maj = has_maj or any("maj_at_k" in s.aggregates.model_fields_set for s in self.suites)

    # -- comparison look-ups
    def cmp_suite_metrics(self, suite: Suite) -> dict[str, MetricChange] | None:
        cs = self.cmp_suites.get(suite.name)
        return cs.aggregates if cs else None

    def cmp_question(self, suite: Suite, q: Question) -> QuestionComparison:
        cs = self.cmp_suites.get(suite.name)
        return (cs.questions.get(q.id) if cs else None) or QuestionComparison()

    # -- the page
    def render(self) -> str:
        out: list[str] = []
        self.render_to(out.append)
        return "".join(out)

    def render_to(self, w: Callable[[str], Any]) -> None:
        """Write the page, piece by piece, with `w`."""
        w(f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
          f'<meta name="viewport" content="width=device-width,initial-scale=1">'
          f'<title>{_esc(self.title)}</title><style>{_CSS}</style></head><body>')
        self.header(w)
        w('<section class="plots" aria-label="plots">')
        self.plots(w)
        w('</section><section class="summary" aria-label="summary table">')
        self.controls(w)
        self.summary_table(w)
        w("</section>")
        self.sections(w)
        w('<footer>Generated by rlhf_eval.html_report from the JSON report (version '
          f'{_esc(self.report.version)}). Self-contained: no scripts, styles, fonts or images are '
          'loaded from anywhere; the page reads with JavaScript off (the script only adds filtering and '
          'expand/collapse).</footer>')
        w(f"<script>{_SCRIPT}</script></body></html>\n")

    def header(self, w) -> None:
        n_q = sum(len(f.ids) for f in self.facts)
        n_failed = sum(sum(f.fail) for f in self.facts)
        n_t = sum(f.traces for f in self.facts)
        n_p = sum(f.pairs for f in self.facts)
        suite_fail = [s for s in self.suites if s.threshold_failures]
        cmp_fail = list(self.cmp.failures) if self.cmp else []
        failed = bool(n_failed or suite_fail or cmp_fail)
        w('<header><div class="hl">')
        w(f'<h1>{_esc(self.title)}</h1>')
        w(f'<span class="verdict {"fail" if failed else "pass"}">{"FAIL" if failed else "PASS"}</span>')
        w(f'<span>{len(self.suites)} suite(s) · {n_q} question(s), {n_failed} failed · {n_t} traces · '
          f'{n_p} preference pairs</span></div>')
        w('<p class="suites-line">All numbers on this page come from the traces recorded in the report '
          '(their verdicts, rewards and log-probabilities), computed by the harness; nothing here was '
          're-sampled, and no metric is filled in where the report has none.</p>')
        versions: list[str] = []
        for f in self.facts:
            versions.extend(v for v in f.versions if v not in versions)
        emu = [v for v in versions if v.endswith("-emulator")]
        if emu:
            w('<div class="banner emu"><b>Emulator traces.</b> These traces come from rlhf-eval\'s Gemini '
              f'emulator (model version {", ".join(_esc(v) for v in emu)}), not from a real model: they show '
              'the harness working, not how good any model is.</div>')
        if self.cmp:
            self.comparison_banner(w)
        for si, s in enumerate(self.suites):
            a = s.aggregates
            vs = list(self.facts[si].versions)
            ver = f' (model version {", ".join(_esc(v) for v in vs)})' if vs else ""
            n_questions = a.questions if "questions" in a.model_fields_set else len(s.questions)
            bits = [f'<a href="#{self.s_anchor[si]}"><b>{_esc(s.name)}</b></a>',
                    f'{_esc(s.model.get("provider", "?"))} / {_esc(s.model.get("name", "?"))}{ver}',
                    f'k = {_esc(_or(s.samples, "?"))}', f'seed {_esc(_or(s.seed, "?"))}',
                    f'verifier {_esc(s.verifier.get("name", "?"))}',
                    f'{_esc(n_questions)} questions, {_esc(a.questions_failed)} failed']
            if s.dpo:
                bits.append(f'DPO β = {_esc(s.dpo.get("beta", "?"))}, reference {_esc(s.dpo.get("reference", "none"))}')
            w(f'<div class="suites-line">{" · ".join(bits)}</div>')
            for line in s.threshold_failures:
                w(f'<div class="banner changed">FAIL suite {_esc(s.name)}: {_esc(line)}</div>')
        w("</header>")

    def comparison_banner(self, w) -> None:
        c = self.cmp
        assert c is not None
        if c.model_version_changed:
            w(f'<div class="banner changed">Model version changed since the baseline {_esc(c.baseline)}: '
              'differences below may come from a different model, not from the change under test.</div>')
        w(f'<div class="banner cmp">Compared with baseline <b>{_esc(c.baseline)}</b>. '
          'Δ = current − baseline next to each metric; <span class="d sig worse">Δ*</span> / '
          '<span class="d sig better">Δ*</span> mark a significant change (worse / better), grey ones are '
          'not significant; hover a Δ for the test and p-value.')
        # what else changed (model, settings, prompts, suites and questions that ran on one side
        # only), one line each; a report written before `notes` has them joined in `note`
        notes = c.notes or ([c.note] if c.note else [])
        if notes:
            w('<ul class="notes">' + "".join(f'<li>{_esc(n)}</li>' for n in notes) + '</ul>')
        one_sided = one_sided_lines(c)
        if one_sided:
            w('<ul>' + "".join(f'<li class="{"neg" if worse else "pos"}">{_esc(line)}</li>'
                               for worse, line in one_sided) + '</ul>')
        if c.failures:
            w('<ul>' + "".join(f'<li class="neg">{_esc(f)}</li>' for f in c.failures) + '</ul>')
        w("</div>")

    def controls(self, w) -> None:
        w('<div id="controls" hidden><input type="search" id="flt" placeholder="filter questions by suite/id" '
          'aria-label="filter questions"><label><input type="checkbox" id="failonly"> failing only</label>'
          '<label><input type="checkbox" id="zeroonly"> zero spread only</label>'
          '<button type="button" id="expand">expand all</button><button type="button" id="collapse">collapse all'
          '</button><span id="shown" class="muted"></span></div>')

    def summary_table(self, w) -> None:
        columns = summary_columns(self.has_maj)
        head = ["question"] + [c.label for c in columns] + ["result"]
        w('<div class="tablewrap"><table class="sum"><thead><tr>')
        w("".join(f'<th class="{"l" if h == "question" else ""}">{h}</th>' for h in head))
        w("</tr></thead>")
        for si, s in enumerate(self.suites):
            ename = _esc(s.name)
            w(f'<tbody><tr class="sh"><th colspan="{len(head)}"><a href="#{self.s_anchor[si]}">{ename}</a> '
              f'<span class="muted small">{_esc(s.model.get("name", ""))} · k = {_esc(_or(s.samples, "?"))} · '
              f'{len(s.questions)} questions</span></th></tr>')
            for qi, q in enumerate(s.questions):
                cq = self.cmp_question(s, q).metrics
                res, rcls = q.result, "fail" if _failed(q) else "pass"
                attrs = f' data-q="{_esc(s.name.lower())}/{_esc(q.id.lower())}"'
                if rcls == "fail":
                    attrs += " data-fail"
                if q.metrics is not None and is_zero_spread(q.metrics.spread):
                    attrs += " data-zero"
                cls = ' class="fail"' if rcls == "fail" else ""
                cells = [f'<td class="l"><a href="#{self.q_anchor[si, qi]}">{_esc(q.id)}</a></td>']
                cells += [f"<td>{_cell(c, q.intervals, cq)}</td>" for c in question_cells(q, self.has_maj)]
                cells.append(f'<td><span class="res {rcls}">{res}</span></td>')
                w(f'<tr{cls}{attrs}>{"".join(cells)}</tr>')
            a = s.aggregates
            ca = self.cmp_suite_metrics(s)
            sfail = s.failed
            tip = "; ".join(str(x) for x in s.threshold_failures)
            cells = [f'<td class="l" title="{ename}: the whole suite"><a href="#{self.s_anchor[si]}">suite</a>'
                     f' ({_esc(a.questions)} questions)</td>']
            for parts in suite_cells(s, self.has_maj):
                title = (' title="mean spread over questions; fraction of questions with zero spread"'
                         if len(parts) > 1 else "")
                cells.append(f"<td{title}>{' · '.join(_cell(c, a.intervals, ca) for c in parts)}</td>")
            cells.append(f'<td title="{_esc(tip)}"><span class="res {"fail" if sfail else "pass"}">'
                         f'{"FAIL" if sfail else "pass"}</span></td>')
            w(f'<tr class="srow{" fail" if sfail else ""}">{"".join(cells)}</tr></tbody>')
        w("</table></div>")

    def plots(self, w) -> None:
        for si, s in enumerate(self.suites):
            f = self.facts[si]
            labels, fail, acc, spread, acc_iv, spr_iv = f.ids, f.fail, f.acc, f.spread, f.acc_iv, f.spr_iv
            qs = labels  # one per question
            hrefs = [self.q_anchor[si, qi] for qi in range(len(qs))]
            smax = max([float(v) for v in spread if is_number(v)] + [hi for iv in spr_iv if iv for hi in iv[1:]]
                       + [0.0])
            w(f'<figure><figcaption><a href="#{self.s_anchor[si]}">{_esc(s.name)}</a> <span class="muted">'
              f'({len(qs)} questions; click a bar for its question)</span></figcaption><div class="charts">')
            w(_bar_chart(acc, labels, hrefs,
                         title="accuracy per question" + (" (with interval)" if any(acc_iv) else ""),
                         ymax=1.0, fail=fail, intervals=acc_iv if any(acc_iv) else None))
            w(_bar_chart(spread, labels, hrefs, title="reward spread per question (▲ = zero spread)",
                         ymax=_nice_max(smax), fail=fail, intervals=spr_iv if any(spr_iv) else None, zero_marks=True))
            if s.aggregates.pass_at:
                w(_pass_curve(s.aggregates.pass_at, s.aggregates.pass_hat or []))
            unavailable = s.aggregates.dpo_unavailable
            margins = np.frombuffer(f.margins, dtype=float) if len(f.margins) else np.zeros(0)
            if unavailable:
                w(f'<div class="unavail">DPO margin distribution unavailable: {_esc(unavailable)}</div>')
            elif not len(margins):
                w('<div class="unavail">DPO margin distribution unavailable: no scored preference pairs in this '
                  'suite.</div>')
            else:
                pos = int((margins > 0).sum())
                w(_histogram(margins, title=f"DPO margins of all {len(margins)} scored pairs "
                                            f"({pos} > 0, {len(margins) - pos} ≤ 0)"))
            w("</div></figure>")

    def sections(self, w) -> None:
        first = True
        for si, s in enumerate(self.suites):
            w(f'<section class="suite" id="{self.s_anchor[si]}"><h2>{_esc(s.name)}: questions</h2>')
            if s.description:
                w(f'<div>{_esc(s.description)}</div>')
            bits = []
            if s.reward_funcs:
                bits.append("reward functions " + ", ".join(f"{_esc(f.name)} ×{_esc(f.weight)}"
                                                            for f in s.reward_funcs))
            if s.rewards:
                bits.append("rewards " + ", ".join(f"{_esc(k)} {_esc(v)}" for k, v in s.rewards.items()))
            if s.dpo:
                bits.append("DPO " + ", ".join(f"{_esc(k)} {_esc(v)}" for k, v in s.dpo.items()))
            if s.grpo:
                bits.append("GRPO " + ", ".join(f"{_esc(k)} {_esc(v)}" for k, v in s.grpo.items()))
            if s.suite_thresholds:
                bits.append("suite thresholds " + ", ".join(
                    f"{_esc(k)} " + " ".join(f"{_esc(b)} {_esc(x)}" for b, x in (v or {}).items())
                    for k, v in s.suite_thresholds.items()))
            if s.aggregates.dpo_unavailable:
                bits.append(f'DPO metrics unavailable: {_esc(s.aggregates.dpo_unavailable)}')
            bits += _usage_and_length_bits(s)
            if bits:
                w(f'<div class="settings small">{" · ".join(bits)}</div>')
            for qi, q in enumerate(s.questions):
                self.question(w, s, si, qi, q, open_=first)
                first = False
            w("</section>")

    def question(self, w, s: Suite, si: int, qi: int, q: Question, *, open_: bool) -> None:
        m = q.metrics
        iv = q.intervals
        cqe = self.cmp_question(s, q)
        cq = cqe.metrics
        unavailable = q.dpo_unavailable
        rcls = "fail" if _failed(q) else "pass"
        spread = m.spread if m else None
        zero = is_zero_spread(spread)
        attrs = f' data-q="{_esc(s.name.lower())}/{_esc(q.id.lower())}"'
        if rcls == "fail":
            attrs += " data-fail"
        if zero:
            attrs += " data-zero"
        w(f'<details class="q" id="{self.q_anchor[si, qi]}"{attrs}{" open" if open_ else ""}><summary>'
          f'<span class="res {rcls}">{q.result}</span><span class="qid">{_esc(q.id)}</span>'
          f'<span class="muted">{_esc(s.name)}</span>'
          + (f' · answer <b>{_esc(q.answer)}</b>' if q.answer is not None else "")
          + f' · accuracy {_fmt(m.accuracy if m else None)}'
          f'{_interval(iv, "accuracy")}{_delta(cq, "accuracy")} · spread {_fmt(spread)}'
          f'{_ZERO_BADGE_LONG if zero else ""} · pairs {_fmt(m.pairs if m else None)} · '
          f'mean margin {_dpo_cell(m.mean_margin if m else None, unavailable)}</summary><div class="qbody">')
        if q.error:
            w(f'<div class="err-box">{_esc(q.error)}</div>')
        if q.answer is not None or q.prompt:
            ref = f'reference answer <b class="ref">{_esc(q.answer)}</b>' if q.answer is not None else ""
            prompt = (f'<details class="prompt"><summary>{"chat prompt" if isinstance(q.prompt, list) else "prompt"}'
                      f'</summary>{prompt_html(q.prompt)}</details>' if q.prompt else "")
            w(f'<div class="qref">{ref}{prompt}</div>')
        held = dict(m.items()) if m else {}
        if held:
            kv = []
            for k in metric_order(held):
                if k in CURVES:
                    continue
                if k in DPO_METRICS and unavailable:
                    val = f'<span class="na-t" title="{_esc(unavailable)}">{UNAVAILABLE}</span>'
                else:
                    val = _fmt(held[k], digits_of(k))
                kv.append(f'<span class="kv"><span class="k">{_esc(k)}</span>{val}{_interval(iv, k)}'
                          f'{_delta(cq, k)}</span>')
            if held.get("pass_at"):
                kv.append(f'<span class="kv">{_pass_curve(held["pass_at"], held.get("pass_hat") or [], small=True)}'
                          '</span>')
            w(f'<div class="kvs">{"".join(kv)}</div>')
        if unavailable:
            w(f'<div class="muted">DPO metrics unavailable: {_esc(unavailable)}</div>')
        if q.failures:
            items = [f'<li><b>{_esc(f.metric)}</b> = {_fmt(f.value)} (threshold {_esc(f.bound)}): {_esc(f.reason)}</li>'
                     for f in q.failures]
            w(f'<h3>Failures</h3><ul class="fails">{"".join(items)}</ul>')
        if q.unchecked:
            w('<ul class="unchk">' + "".join(f"<li>not checked: {_esc(u)}</li>" for u in q.unchecked) + "</ul>")
        if cqe.grpo_signal:
            w(f'<div class="banner cmp">GRPO signal since the baseline: {_esc(cqe.grpo_signal)}</div>')
        if cqe.flips:
            items = []
            for fl in cqe.flips:
                b, c = fl.baseline_margin, fl.current_margin
                items.append(f'<li>chosen answer “{_esc(fl.chosen)}” vs rejected “{_esc(fl.rejected)}”: '
                             f'margin <span class="{_sign_cls(b)}">{_signed(b)}</span> in the baseline → '
                             f'<span class="{_sign_cls(c)}">{_signed(c)}</span> now'
                             + (f' ({_esc(fl.direction)})' if fl.direction else "") + "</li>")
            w(f'<h3>Flipped preferences since the baseline ({len(cqe.flips)})</h3>'
              f'<ul class="flips">{"".join(items)}</ul>')
        self.traces(w, q)
        self.pairs(w, q, unavailable)
        w("</div></details>")

    def traces(self, w, q: Question) -> None:
        traces = q.traces
        if not traces:
            w('<div class="muted">No traces recorded.</div>')
            return
        has_ref = any(t.ref_logp is not None for t in traces)
        has_reasoning = any(t.reasoning_tokens is not None or t.reasoning for t in traces)
        # each reward function's reward beside their weighted sum, when there is more than the default
        functions = list(dict.fromkeys(name for t in traces for name in (t.rewards_by_function or {})))
        if functions == [DEFAULT_REWARD]:
            functions = []
        head = ['<th>#</th><th class="l">verdict</th><th class="l">answer</th><th title="the weighted sum of the '
                'reward functions">reward</th>',
                "".join(f'<th title="{_esc(name)}">{_esc(name.rpartition(":")[2])}</th>' for name in functions),
                '<th>advantage</th><th title="the answer\'s tokens">tokens</th>',
                '<th title="thinking tokens the API reported">reasoning tokens</th>' if has_reasoning else "",
                "<th>logp</th>", "<th>ref logp</th>" if has_ref else "",
                '<th class="l">finish</th><th>seed</th><th class="l">trace text — the extracted answer highlighted '
                '(<mark class="ok">correct</mark> / <mark class="bad">not</mark>)</th>']
        w(f'<h3>Traces ({len(traces)})</h3><table class="tr"><thead><tr>{"".join(head)}</tr></thead><tbody>')
        rows = []
        for i, t in enumerate(traces):
            text, found = _highlight(t.text, t.extracted, "ok" if t.verdict == "correct" else "bad")
            ext = t.extracted
            if ext is None or ext == "":
                ans = '<span class="muted">-</span>'
            else:
                missing = "" if found else ' <span class="muted small">(not found verbatim)</span>'
                ans = f"<b>{_esc(ext)}</b>{missing}"
            detail = f'<span class="vd">{_esc(t.detail)}</span>' if t.detail else ""
            ltip = (f' title="source: {_esc(t.logp_source)}"' if t.logp_source else
                    f' title="none: {_esc(t.logp_note)}"' if t.logp_note else "")
            if t.reasoning:  # shown apart from the answer, collapsed: it is never verified
                text = (f'<details class="rs"><summary class="muted small">reasoning (not verified)</summary>'
                        f'{_esc(t.reasoning)}</details>{text}')
            rows.append(
                f'<tr><td>{i}</td><td class="l">{_verdict_badge(_or(t.verdict, "?"))}{detail}</td>'
                f'<td class="l">{ans}</td><td>{_fmt(t.reward, 2)}</td>'
                + "".join(f'<td>{_fmt((t.rewards_by_function or {}).get(name), 2)}</td>' for name in functions)
                + f'<td class="{_sign_cls(t.advantage)}">{_signed(t.advantage)}</td><td>{_fmt(t.token_count)}</td>'
                + (f'<td>{_fmt(t.reasoning_tokens)}</td>' if has_reasoning else "")
                + f'<td{ltip}>{_fmt(t.logp, 2)}</td>'
                + (f'<td>{_fmt(t.ref_logp, 2)}</td>' if has_ref else "")
                + f'<td class="l">{_esc(_or(t.finish_reason, "-"))}</td><td>{_esc(_or(t.seed, "-"))}</td>'
                f'<td class="txt">{text}</td></tr>')
        w("".join(rows))
        w("</tbody></table>")

    def pairs(self, w, q: Question, unavailable: Any) -> None:
        pairs = q.pairs
        if not pairs:
            w('<div class="muted">No preference pairs (every trace got the same verdict class).</div>')
            return
        scored = [p.margin for p in pairs if is_number(p.margin)]
        pos = sum(1 for x in scored if x > 0)
        note = (f"{len(scored)} scored, {pos} with margin &gt; 0" if scored
                else f"margins unavailable{': ' + _esc(unavailable) if unavailable else ''}")
        chips = []
        for p in pairs:
            mg = p.margin
            cls = _sign_cls(mg) if is_number(mg) else "na"
            val = _signed(mg) if is_number(mg) else UNAVAILABLE
            chips.append(f'<span class="pair {cls}">chosen #{p.chosen} vs rejected #{p.rejected} <b>{val}</b></span>')
        w(f'<h3>Preference pairs ({len(pairs)}; {note})</h3><div class="pairs">{"".join(chips)}</div>')


def _usage_and_length_bits(s: Suite) -> list[str]:
    """The suite's token totals and cost (or why there is no cost), and its length-bias figures."""
    a, bits = s.aggregates, []
    if a.total_tokens is not None:
        bits.append(f'tokens {a.prompt_tokens:,} prompt + {a.output_tokens:,} output'
                    + (f' ({a.thinking_tokens:,} thinking)' if a.thinking_tokens else "") + f' = {a.total_tokens:,}')
    if a.cost_usd is not None:
        source = (s.price or {}).get("source")
        shown = f' <span class="muted">({_esc(source)})</span>' if source else ""
        bits.append(f'cost <b>${a.cost_usd:.4f}</b>{shown}')
    elif a.cost_unavailable:
        bits.append(f'cost unknown: {_esc(a.cost_unavailable)}')
    if not a.dpo_unavailable and a.mean_margin is not None:
        corr = (_signed(a.margin_length_corr) if a.margin_length_corr is not None
                else f'- <span class="muted">({_esc(a.margin_length_corr_unavailable or "")})</span>')
        bits.append(f'margin per token {_signed(a.margin_per_token, 4)} · margin~length difference r {corr}')
    return bits


def _or(value: Any, default: Any) -> Any:
    return default if value is None else value


def _sign_cls(v: Any) -> str:
    if not is_number(v) or float(v) == 0:
        return ""
    return "pos" if float(v) > 0 else "neg"


def render_html(report: Report | dict, *, title: str = "rlhf-eval report") -> str:
    """The whole report as one self-contained HTML page (a str). A dict is validated into a Report
    first (ReportError, one line, if it does not fit)."""
    return _Page(Report.of(report), title).render()


def write_html(report: Report | dict, path: str | Path, *, title: str = "rlhf-eval report") -> None:
    """Render and write atomically, so a reader never sees half a page. Raises OSError, or
    SecretInOutput (and writes nothing, but to a pipe: see its `partial`) if the page would
    contain one of the run's secrets.

    A report whose questions are on disk (`Report.streamed`: a run of many questions, see
    rlhf_eval.spool) is written as it is rendered, a piece at a time: the same complete page,
    never whole in memory."""
    report = Report.of(report)
    if not report.streamed:
        write_without_secrets(path, render_html(report, title=title))
        return
    with checked_writer(path) as write:
        _Page(report, title).render_to(write)

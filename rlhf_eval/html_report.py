"""The run report as one self-contained HTML page.

`render_html(report)` turns the dict `report.build_report` makes (the same one written as JSON)
into a single HTML file: inline CSS, inline SVG plots, an optional small inline script for
filtering and expanding — and nothing fetched from anywhere. Everything reads with JavaScript
off. Every string taken from the report is escaped (trace texts are model output).

Optional parts are rendered when present and skipped when absent: per-question and per-suite
`intervals` ({metric: [lo, hi]}), `metrics.maj_at_k`, and a top-level `comparison` against a
baseline run (deltas next to the metrics, significant ones marked, flipped pairs per question).

The page is built with list appends and one join, so it stays linear in the size of the report
(1000 questions × 8 traces render in well under a second).
"""
from __future__ import annotations

import html
import math
import re
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np

from .credentials import write_without_secrets

__all__ = ["render_html", "write_html"]

# shown as "unavailable" (with the reason) when the model gave no log-probabilities
DPO_METRICS = ("mean_margin", "reward_accuracy", "dpo_loss", "mean_logp", "mean_ref_logp")

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


def _esc(value: Any) -> str:
    """Escape any value for HTML text and attribute values (quotes included)."""
    s = value if isinstance(value, str) else str(value)
    if _BAD_CHARS.search(s):
        s = _BAD_CHARS.sub(_fix_char, s)
    return html.escape(s, quote=True)


# ---------------------------------------------------------------------------------------------
# numbers


def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool) and math.isfinite(v)


def _fmt(v: Any, digits: int = 3) -> str:
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    if isinstance(v, (float, np.floating)):
        if math.isnan(v):
            return "-"
        if math.isinf(v):
            return "∞" if v > 0 else "−∞"
        return f"{float(v):.{digits}f}".replace("-", "−")
    return _esc(v)


def _signed(v: Any, digits: int = 3) -> str:
    if not _is_num(v):
        return _fmt(v, digits)
    return f"{float(v):+.{digits}f}".replace("-", "−")


# ---------------------------------------------------------------------------------------------
# small pieces: intervals, deltas, anchors


def _interval(intervals: dict | None, *names: str) -> str:
    """' [lo, hi]' for the first of `names` the intervals hold with two numbers, else ''."""
    if not isinstance(intervals, dict):
        return ""
    for name in names:
        iv = intervals.get(name)
        if isinstance(iv, (list, tuple)) and len(iv) == 2 and _is_num(iv[0]) and _is_num(iv[1]):
            return f' <span class="ci" title="interval for {_esc(name)}">[{_fmt(iv[0], 2)}, {_fmt(iv[1], 2)}]</span>'
    return ""


def _interval_values(intervals: dict | None, name: str) -> tuple[float, float] | None:
    if not isinstance(intervals, dict):
        return None
    iv = intervals.get(name)
    if isinstance(iv, (list, tuple)) and len(iv) == 2 and _is_num(iv[0]) and _is_num(iv[1]):
        return float(iv[0]), float(iv[1])
    return None


def _delta(cmp_metrics: dict | None, *names: str, digits: int = 3) -> str:
    """The change against the baseline for the first of `names` the comparison holds, else ''."""
    if not isinstance(cmp_metrics, dict):
        return ""
    entry = None
    for name in names:
        entry = cmp_metrics.get(name)
        if isinstance(entry, dict):
            break
    if not isinstance(entry, dict):
        return ""
    base, cur, delta = entry.get("baseline"), entry.get("current"), entry.get("delta")
    if not _is_num(delta) and _is_num(base) and _is_num(cur):
        delta = float(cur) - float(base)
    significant, worse = bool(entry.get("significant")), bool(entry.get("worse"))
    tip = [f"{name}: baseline {_fmt(base, digits)} → current {_fmt(cur, digits)}"]
    p = entry.get("p_value")
    if _is_num(p):
        tip.append(f"p = {float(p):.3g}")
    if entry.get("test"):
        tip.append(f"test: {_esc(entry['test'])}")
    tip.append("significant" if significant else "not significant")
    if worse:
        tip.append("worse")
    cls = "d " + ("sig " + ("worse" if worse else "better") if significant else ("ns worse" if worse else "ns"))
    text = "Δ n/a" if not _is_num(delta) else f"Δ{_signed(delta, digits)}"
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
        if intervals and intervals[i]:
            tip += f" [{_fmt(intervals[i][0], 2)}, {_fmt(intervals[i][1], 2)}]"
        parts = [f'<a href="#{hrefs[i]}"><title>{_esc(tip)}</title>']
        if v is None or not _is_num(v):
            parts.append(f'<rect x="{x:.2f}" y="{base - 2:.1f}" width="{bw:.2f}" height="2" class="na"/>')
        else:
            yy = y(float(v))
            h = max(base - yy, 0.0)
            cls = "bar fail" if fail[i] else "bar"
            parts.append(f'<rect x="{x:.2f}" y="{yy:.1f}" width="{bw:.2f}" height="{max(h, 0.8):.1f}" class="{cls}"/>')
            if zero_marks and float(v) == 0.0:
                cx = x + bw / 2
                parts.append(f'<path d="M{cx - 3:.1f} {base + 3:.1f}l3 -5l3 5z" class="zero"/>')
        if intervals and intervals[i]:
            lo, hi = intervals[i]
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
body{margin:0;padding:14px 22px 40px;font:13px/1.4 -apple-system,"Segoe UI",Roboto,"DejaVu Sans",Helvetica,Arial,sans-serif;color:var(--fg);background:var(--bg)}
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
.unavail{padding:10px;color:var(--muted);font-style:italic;background:#fff;border:1px dashed var(--line)}
table{border-collapse:collapse}
table.sum{font-variant-numeric:tabular-nums;min-width:60%}
table.sum th,table.sum td{padding:1px 7px;border-bottom:1px solid var(--line);text-align:right;white-space:nowrap}
table.sum th{background:var(--soft);position:sticky;top:0;font-weight:600;z-index:1}
table.sum td.l,table.sum th.l{text-align:left}
table.sum tr.sh th{background:#fff;text-align:left;font-size:13.5px;padding-top:8px;position:static;border-bottom:1px solid #c5ced6}
table.sum tr.srow td{font-weight:600;background:#eef2f6;border-bottom:2px solid #c5ced6}
table.sum tr.fail td{background:var(--badbg)}table.sum tr.srow.fail td{background:#f8d7d7}
.res{font-weight:700}.res.pass{color:var(--ok)}.res.fail{color:var(--bad)}
.badge{display:inline-block;padding:0 5px;border-radius:8px;font-size:10.5px;font-weight:600;line-height:15px;vertical-align:1px}
.badge.zero{background:#fde9c8;color:#8a4b00}
.na-t{color:var(--muted);font-style:italic}
.ci{color:var(--muted);font-size:11px}
.d{font-size:11px;margin-left:2px}.d.ns{color:#8a949c}.d.ns.worse{color:#b07a7a}
.d.sig{font-weight:700;padding:0 3px;border-radius:3px}.d.sig.worse{color:#fff;background:var(--bad)}.d.sig.better{color:#fff;background:var(--ok)}
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
.err-box{background:var(--badbg);color:#7a1111;padding:4px 8px;border-radius:3px;white-space:pre-wrap;font-family:ui-monospace,Menlo,Consolas,monospace;font-size:12px}
table.tr{width:100%;font-variant-numeric:tabular-nums}
table.tr th,table.tr td{padding:3px 6px;border-bottom:1px solid var(--line);vertical-align:top;text-align:right;white-space:nowrap}
table.tr th{background:var(--soft);font-weight:600;font-size:12px}
table.tr td.l,table.tr th.l{text-align:left}
table.tr td.txt{white-space:pre-wrap;text-align:left;font-family:ui-monospace,Menlo,Consolas,"DejaVu Sans Mono",monospace;font-size:11.5px;line-height:1.35;width:100%;word-break:break-word}
mark{background:#ffe066;color:#000;padding:0 2px;border-radius:2px;outline:1px solid #e0b400;font-weight:700}
mark.ok{background:#b6f0c4;outline-color:#2f9e52}mark.bad{background:#ffd0cc;outline-color:#d9534f}
.qref{margin:2px 0 4px}.qref .ref{font-family:ui-monospace,Menlo,Consolas,monospace;background:var(--soft);padding:0 4px;border-radius:3px}
details.prompt{display:inline-block;margin-left:14px;vertical-align:top}details.prompt>summary{cursor:pointer;color:var(--acc)}
details.prompt[open]{display:block;margin:4px 0 0}
details.rs{margin-bottom:4px;color:#555;white-space:pre-wrap}details.rs>summary{cursor:pointer}
.pre{white-space:pre-wrap;font-family:ui-monospace,Menlo,Consolas,"DejaVu Sans Mono",monospace;font-size:11.5px;background:var(--soft);padding:4px 8px;border-radius:3px}
.v{display:inline-block;padding:0 6px;border-radius:8px;font-size:11px;font-weight:700;color:#fff}
.v.correct{background:var(--ok)}.v.incorrect{background:var(--bad)}.v.unparsable{background:#8e44ad}
.v.truncated{background:#d17a00}.v.blocked{background:#555}.v.error{background:#000}.v.other{background:#777}
.vd{display:block;color:var(--muted);font-size:10.5px}
.pos{color:var(--ok)}.neg{color:var(--bad)}
.pairs{display:flex;flex-wrap:wrap;gap:4px 6px;margin:4px 0}
.pair{border:1px solid var(--line);border-radius:10px;padding:0 7px;font-size:11.5px;font-variant-numeric:tabular-nums;white-space:nowrap}
.pair.pos{background:var(--okbg);border-color:#b7dfc2}.pair.neg{background:var(--badbg);border-color:#f0b8b8}.pair.na{color:var(--muted)}
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
items.forEach(function(e){var s=(!t||e.getAttribute('data-q').indexOf(t)>=0)&&(!o||e.hasAttribute('data-fail'))&&(!z||e.hasAttribute('data-zero'));
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
_ZERO_BADGE_LONG = ' <span class="badge zero" title="every trace got the same reward: no GRPO signal">zero spread</span>'


def _verdict_badge(verdict: Any) -> str:
    v = str(verdict)
    cls = v if v in ("correct", "incorrect", "unparsable", "truncated", "blocked", "error") else "other"
    return f'<span class="v {cls}">{_esc(v)}</span>'


def _dpo_cell(value: Any, unavailable: Any, interval: str = "", delta: str = "") -> str:
    if unavailable:
        return f'<span class="na-t" title="{_esc(unavailable)}">unavailable</span>{delta}'
    return f"{_fmt(value)}{interval}{delta}"


def _model_versions(suite: dict) -> list[str]:
    seen: dict[str, None] = {}
    for q in suite.get("questions") or ():
        for t in q.get("traces") or ():
            mv = t.get("model_version")
            if mv:
                seen.setdefault(str(mv), None)
    return list(seen)


def _suite_failed(suite: dict) -> bool:
    a = suite.get("aggregates") or {}
    return bool(suite.get("threshold_failures")) or bool(a.get("questions_failed")) or \
        any(not q.get("passed", True) or q.get("error") for q in suite.get("questions") or ())


def _question_result(q: dict) -> tuple[str, str]:
    if q.get("error"):
        return "ERROR", "fail"
    return ("pass", "pass") if q.get("passed", True) else ("FAIL", "fail")


class _Page:
    """Holds the report and the look-ups every part needs; `render()` returns the whole page."""

    def __init__(self, report: dict, title: str) -> None:
        self.report = report
        self.title = title
        self.suites: list[dict] = list(report.get("suites") or [])
        cmp = report.get("comparison")
        self.cmp: dict | None = cmp if isinstance(cmp, dict) else None
        self.cmp_suites: dict[str, dict] = {}
        if self.cmp:
            for cs in self.cmp.get("suites") or ():
                if isinstance(cs, dict) and "name" in cs:
                    self.cmp_suites[str(cs["name"])] = cs
        self.taken: set[str] = set()
        # anchors, computed once so the table, the plots and the sections agree
        self.q_anchor: dict[tuple[int, int], str] = {}
        self.s_anchor: dict[int, str] = {}
        for si, s in enumerate(self.suites):
            self.s_anchor[si] = _anchor("s-", s.get("name", si), taken=self.taken)
            for qi, q in enumerate(s.get("questions") or ()):
                self.q_anchor[si, qi] = _anchor("q-", s.get("name", si), q.get("id", qi), taken=self.taken)
        self.has_maj = any(isinstance(q.get("metrics"), dict) and "maj_at_k" in q["metrics"]
                           for s in self.suites for q in s.get("questions") or ()) or \
            any("maj_at_k" in (s.get("aggregates") or {}) for s in self.suites)

    # -- comparison look-ups
    def cmp_suite_metrics(self, suite: dict) -> dict | None:
        cs = self.cmp_suites.get(str(suite.get("name")))
        return cs.get("aggregates") if cs else None

    def cmp_question(self, suite: dict, q: dict) -> dict:
        cs = self.cmp_suites.get(str(suite.get("name")))
        if not cs:
            return {}
        entry = (cs.get("questions") or {}).get(str(q.get("id")))
        return entry if isinstance(entry, dict) else {}

    # -- the page
    def render(self) -> str:
        out: list[str] = []
        w = out.append
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
          f'{_esc(self.report.get("version", "?"))}). Self-contained: no scripts, styles, fonts or images are '
          'loaded from anywhere; the page reads with JavaScript off (the script only adds filtering and '
          'expand/collapse).</footer>')
        w(f"<script>{_SCRIPT}</script></body></html>\n")
        return "".join(out)

    def header(self, w) -> None:
        n_q = sum(len(s.get("questions") or ()) for s in self.suites)
        n_failed = sum(1 for s in self.suites for q in s.get("questions") or ()
                       if not q.get("passed", True) or q.get("error"))
        n_t = sum(len(q.get("traces") or ()) for s in self.suites for q in s.get("questions") or ())
        n_p = sum(len(q.get("pairs") or ()) for s in self.suites for q in s.get("questions") or ())
        suite_fail = [s for s in self.suites if s.get("threshold_failures")]
        cmp_fail = list((self.cmp or {}).get("failures") or ())
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
        for s in self.suites:
            versions.extend(v for v in _model_versions(s) if v not in versions)
        emu = [v for v in versions if v.endswith("-emulator")]
        if emu:
            w('<div class="banner emu"><b>Emulator traces.</b> These traces come from rlhf-eval\'s Gemini '
              f'emulator (model version {", ".join(_esc(v) for v in emu)}), not from a real model: they show '
              'the harness working, not how good any model is.</div>')
        if self.cmp:
            self.comparison_banner(w)
        for si, s in enumerate(self.suites):
            m = s.get("model") or {}
            a = s.get("aggregates") or {}
            dpo = s.get("dpo") or {}
            vs = _model_versions(s)
            ver = f' (model version {", ".join(_esc(v) for v in vs)})' if vs else ""
            bits = [f'<a href="#{self.s_anchor[si]}"><b>{_esc(s.get("name", "?"))}</b></a>',
                    f'{_esc(m.get("provider", "?"))} / {_esc(m.get("name", "?"))}{ver}',
                    f'k = {_esc(s.get("samples", "?"))}', f'seed {_esc(s.get("seed", "?"))}',
                    f'verifier {_esc((s.get("verifier") or {}).get("name", "?"))}',
                    f'{_esc(a.get("questions", len(s.get("questions") or ())))} questions, '
                    f'{_esc(a.get("questions_failed", 0))} failed']
            if dpo:
                bits.append(f'DPO β = {_esc(dpo.get("beta", "?"))}, reference {_esc(dpo.get("reference", "none"))}')
            w(f'<div class="suites-line">{" · ".join(bits)}</div>')
            for line in s.get("threshold_failures") or ():
                w(f'<div class="banner changed">FAIL suite {_esc(s.get("name"))}: {_esc(line)}</div>')
        w("</header>")

    def comparison_banner(self, w) -> None:
        c = self.cmp or {}
        base = c.get("baseline")
        if c.get("model_version_changed"):
            w(f'<div class="banner changed">Model version changed since the baseline {_esc(base)}: '
              'differences below may come from a different model, not from the change under test.</div>')
        w(f'<div class="banner cmp">Compared with baseline <b>{_esc(base)}</b>. '
          'Δ = current − baseline next to each metric; <span class="d sig worse">Δ*</span> / '
          '<span class="d sig better">Δ*</span> mark a significant change (worse / better), grey ones are '
          'not significant; hover a Δ for the test and p-value.')
        if c.get("note"):
            w(f'<div>{_esc(c["note"])}</div>')
        for cs in c.get("suites") or ():
            if not isinstance(cs, dict):
                continue
            for key, what in (("only_in_baseline", "only in the baseline"), ("only_in_current", "new in this run")):
                ids = cs.get(key) or ()
                if ids:
                    shown = ", ".join(_esc(i) for i in list(ids)[:20]) + (" …" if len(ids) > 20 else "")
                    w(f'<div class="small">{_esc(cs.get("name"))}: {len(ids)} question(s) {what}: {shown}</div>')
        fails = c.get("failures") or ()
        if fails:
            w('<ul>' + "".join(f'<li class="neg">{_esc(f)}</li>' for f in fails) + '</ul>')
        w("</div>")

    def controls(self, w) -> None:
        w('<div id="controls" hidden><input type="search" id="flt" placeholder="filter questions by suite/id" '
          'aria-label="filter questions"><label><input type="checkbox" id="failonly"> failing only</label>'
          '<label><input type="checkbox" id="zeroonly"> zero spread only</label>'
          '<button type="button" id="expand">expand all</button><button type="button" id="collapse">collapse all'
          '</button><span id="shown" class="muted"></span></div>')

    def summary_table(self, w) -> None:
        head = ["question", "k", "accuracy"] + (["maj@k"] if self.has_maj else []) + \
            ["unparsable", "pairs", "mean margin", "reward acc", "spread", "result"]
        w('<div class="tablewrap"><table class="sum"><thead><tr>')
        w("".join(f'<th class="{"l" if h == "question" else ""}">{h}</th>' for h in head))
        w("</tr></thead>")
        for si, s in enumerate(self.suites):
            name = s.get("name", "?")
            ename = _esc(name)
            model = s.get("model") or {}
            w(f'<tbody><tr class="sh"><th colspan="{len(head)}"><a href="#{self.s_anchor[si]}">{ename}</a> '
              f'<span class="muted small">{_esc(model.get("name", ""))} · k = {_esc(s.get("samples", "?"))} · '
              f'{len(s.get("questions") or ())} questions</span></th></tr>')
            for qi, q in enumerate(s.get("questions") or ()):
                m = q.get("metrics") if isinstance(q.get("metrics"), dict) else {}
                iv = q.get("intervals")
                cq = self.cmp_question(s, q).get("metrics")
                unavailable = q.get("dpo_unavailable")
                res, rcls = _question_result(q)
                spread = m.get("spread")
                zero = _is_num(spread) and float(spread) == 0.0
                attrs = f' data-q="{_esc(str(name).lower())}/{_esc(str(q.get("id", "")).lower())}"'
                if rcls == "fail":
                    attrs += " data-fail"
                if zero:
                    attrs += " data-zero"
                cls = ' class="fail"' if rcls == "fail" else ""
                cells = [f'<td class="l"><a href="#{self.q_anchor[si, qi]}">{_esc(q.get("id", "?"))}</a></td>',
                         f'<td>{_fmt(m.get("k"))}</td>',
                         f'<td>{_fmt(m.get("accuracy"))}{_interval(iv, "accuracy")}{_delta(cq, "accuracy")}</td>']
                if self.has_maj:
                    cells.append(f'<td>{_fmt(m.get("maj_at_k"))}{_interval(iv, "maj_at_k")}{_delta(cq, "maj_at_k")}</td>')
                cells += [f'<td>{_fmt(m.get("unparsable"))}{_delta(cq, "unparsable", "unparsable_rate")}</td>',
                          f'<td>{_fmt(m.get("pairs"))}{_delta(cq, "pairs", digits=0)}</td>',
                          f'<td>{_dpo_cell(m.get("mean_margin"), unavailable, _interval(iv, "mean_margin"), _delta(cq, "mean_margin"))}</td>',
                          f'<td>{_dpo_cell(m.get("reward_accuracy"), unavailable, _interval(iv, "reward_accuracy"), _delta(cq, "reward_accuracy"))}</td>',
                          f'<td>{_fmt(spread)}{_ZERO_BADGE if zero else ""}'
                          f'{_interval(iv, "spread")}{_delta(cq, "spread")}</td>',
                          f'<td><span class="res {rcls}">{res}</span></td>']
                w(f'<tr{cls}{attrs}>{"".join(cells)}</tr>')
            a = s.get("aggregates") or {}
            aiv = a.get("intervals")
            ca = self.cmp_suite_metrics(s)
            unavailable = a.get("dpo_unavailable")
            sfail = bool(s.get("threshold_failures")) or bool(a.get("questions_failed"))
            tip = "; ".join(str(x) for x in s.get("threshold_failures") or ())
            cells = [f'<td class="l" title="{ename}: the whole suite"><a href="#{self.s_anchor[si]}">suite</a>'
                     f' ({_esc(a.get("questions", "?"))} questions)</td>',
                     f'<td>{_fmt(s.get("samples"))}</td>',
                     f'<td>{_fmt(a.get("accuracy"))}{_interval(aiv, "accuracy")}{_delta(ca, "accuracy")}</td>']
            if self.has_maj:
                cells.append(f'<td>{_fmt(a.get("maj_at_k"))}{_interval(aiv, "maj_at_k")}{_delta(ca, "maj_at_k")}</td>')
            cells += [f'<td>{_fmt(a.get("unparsable_rate"))}{_delta(ca, "unparsable_rate")}</td>',
                      f'<td>{_fmt(a.get("pairs"))}{_delta(ca, "pairs", digits=0)}</td>',
                      f'<td>{_dpo_cell(a.get("mean_margin"), unavailable, _interval(aiv, "mean_margin"), _delta(ca, "mean_margin"))}</td>',
                      f'<td>{_dpo_cell(a.get("reward_accuracy"), unavailable, _interval(aiv, "reward_accuracy"), _delta(ca, "reward_accuracy"))}</td>',
                      f'<td title="mean spread over questions; fraction of questions with zero spread">{_fmt(a.get("mean_spread"))}'
                      f'{_interval(aiv, "mean_spread", "spread")}{_delta(ca, "mean_spread", "spread")} · zero '
                      f'{_fmt(a.get("frac_zero_spread"))}{_delta(ca, "frac_zero_spread")}</td>',
                      f'<td title="{_esc(tip)}"><span class="res {"fail" if sfail else "pass"}">'
                      f'{"FAIL" if sfail else "pass"}</span></td>']
            w(f'<tr class="srow{" fail" if sfail else ""}">{"".join(cells)}</tr></tbody>')
        w("</table></div>")

    def plots(self, w) -> None:
        for si, s in enumerate(self.suites):
            qs = s.get("questions") or []
            name = str(s.get("name", "?"))
            labels = [str(q.get("id", "?")) for q in qs]
            hrefs = [self.q_anchor[si, qi] for qi in range(len(qs))]
            metrics = [q.get("metrics") if isinstance(q.get("metrics"), dict) else {} for q in qs]
            fail = [bool(q.get("error")) or not q.get("passed", True) for q in qs]
            acc = [m.get("accuracy") for m in metrics]
            spread = [m.get("spread") for m in metrics]
            acc_iv = [_interval_values(q.get("intervals"), "accuracy") for q in qs]
            spr_iv = [_interval_values(q.get("intervals"), "spread") for q in qs]
            smax = max([float(v) for v in spread if _is_num(v)] + [hi for iv in spr_iv if iv for hi in iv[1:]] + [0.0])
            w(f'<figure><figcaption><a href="#{self.s_anchor[si]}">{_esc(name)}</a> <span class="muted">'
              f'({len(qs)} questions; click a bar for its question)</span></figcaption><div class="charts">')
            w(_bar_chart(acc, labels, hrefs, title="accuracy per question" + (" (with interval)" if any(acc_iv) else ""),
                         ymax=1.0, fail=fail, intervals=acc_iv if any(acc_iv) else None))
            w(_bar_chart(spread, labels, hrefs, title="reward spread per question (▲ = zero spread)",
                         ymax=_nice_max(smax), fail=fail, intervals=spr_iv if any(spr_iv) else None, zero_marks=True))
            unavailable = (s.get("aggregates") or {}).get("dpo_unavailable")
            margins = np.fromiter((p["margin"] for q in qs for p in q.get("pairs") or ()
                                   if _is_num(p.get("margin"))), dtype=float)
            if unavailable:
                w(f'<div class="unavail">DPO margin distribution unavailable: {_esc(unavailable)}</div>')
            elif not len(margins):
                w('<div class="unavail">DPO margin distribution unavailable: no scored preference pairs in this suite.</div>')
            else:
                pos = int((margins > 0).sum())
                w(_histogram(margins, title=f"DPO margins of all {len(margins)} scored pairs "
                                            f"({pos} > 0, {len(margins) - pos} ≤ 0)"))
            w("</div></figure>")

    def sections(self, w) -> None:
        first = True
        for si, s in enumerate(self.suites):
            name = s.get("name", "?")
            a = s.get("aggregates") or {}
            w(f'<section class="suite" id="{self.s_anchor[si]}"><h2>{_esc(name)}: questions</h2>')
            if s.get("description"):
                w(f'<div>{_esc(s["description"])}</div>')
            rw = s.get("rewards") or {}
            dpo = s.get("dpo") or {}
            grpo = s.get("grpo") or {}
            st = s.get("suite_thresholds") or {}
            bits = []
            if rw:
                bits.append("rewards " + ", ".join(f"{_esc(k)} {_esc(v)}" for k, v in rw.items()))
            if dpo:
                bits.append("DPO " + ", ".join(f"{_esc(k)} {_esc(v)}" for k, v in dpo.items()))
            if grpo:
                bits.append("GRPO " + ", ".join(f"{_esc(k)} {_esc(v)}" for k, v in grpo.items()))
            if st:
                bits.append("suite thresholds " + ", ".join(
                    f"{_esc(k)} " + " ".join(f"{_esc(b)} {_esc(x)}" for b, x in (v or {}).items())
                    for k, v in st.items()))
            if a.get("dpo_unavailable"):
                bits.append(f'DPO metrics unavailable: {_esc(a["dpo_unavailable"])}')
            if bits:
                w(f'<div class="settings small">{" · ".join(bits)}</div>')
            for qi, q in enumerate(s.get("questions") or ()):
                self.question(w, s, si, qi, q, open_=first)
                first = False
            w("</section>")

    def question(self, w, s: dict, si: int, qi: int, q: dict, *, open_: bool) -> None:
        m = q.get("metrics") if isinstance(q.get("metrics"), dict) else {}
        iv = q.get("intervals")
        cqe = self.cmp_question(s, q)
        cq = cqe.get("metrics")
        unavailable = q.get("dpo_unavailable")
        res, rcls = _question_result(q)
        spread = m.get("spread")
        zero = _is_num(spread) and float(spread) == 0.0
        attrs = f' data-q="{_esc(str(s.get("name", "")).lower())}/{_esc(str(q.get("id", "")).lower())}"'
        if rcls == "fail":
            attrs += " data-fail"
        if zero:
            attrs += " data-zero"
        w(f'<details class="q" id="{self.q_anchor[si, qi]}"{attrs}{" open" if open_ else ""}><summary>'
          f'<span class="res {rcls}">{res}</span><span class="qid">{_esc(q.get("id", "?"))}</span>'
          f'<span class="muted">{_esc(s.get("name", "?"))}</span>'
          + (f' · answer <b>{_esc(q["answer"])}</b>' if q.get("answer") is not None else "")
          + f' · accuracy {_fmt(m.get("accuracy"))}'
          f'{_interval(iv, "accuracy")}{_delta(cq, "accuracy")} · spread {_fmt(spread)}'
          f'{_ZERO_BADGE_LONG if zero else ""} · pairs {_fmt(m.get("pairs"))} · '
          f'mean margin {_dpo_cell(m.get("mean_margin"), unavailable)}</summary><div class="qbody">')
        if q.get("error"):
            w(f'<div class="err-box">{_esc(q["error"])}</div>')
        if q.get("answer") is not None or q.get("prompt"):
            ref = (f'reference answer <b class="ref">{_esc(q["answer"])}</b>' if q.get("answer") is not None else "")
            prompt = (f'<details class="prompt"><summary>prompt</summary><div class="pre">{_esc(q["prompt"])}</div>'
                      '</details>' if q.get("prompt") else "")
            w(f'<div class="qref">{ref}{prompt}</div>')
        if m:
            kv = []
            order = ["k", "correct", "incorrect", "unparsable", "blocked", "truncated", "error", "accuracy",
                     "maj_at_k", "pass_at_k", "unparsable_rate", "spread", "nonzero_advantages", "pairs",
                     "pairs_scored", "mean_margin", "reward_accuracy", "dpo_loss", "mean_tokens", "mean_logp",
                     "mean_ref_logp"]
            keys = [k for k in order if k in m] + [k for k in m if k not in order]
            for k in keys:
                v = m[k]
                if k in DPO_METRICS and unavailable:
                    val = f'<span class="na-t" title="{_esc(unavailable)}">unavailable</span>'
                else:
                    val = _fmt(v, 2 if k in ("mean_logp", "mean_ref_logp", "mean_tokens") else 3)
                kv.append(f'<span class="kv"><span class="k">{_esc(k)}</span>{val}{_interval(iv, k)}{_delta(cq, k)}</span>')
            w(f'<div class="kvs">{"".join(kv)}</div>')
        if unavailable:
            w(f'<div class="muted">DPO metrics unavailable: {_esc(unavailable)}</div>')
        fails = q.get("failures") or ()
        if fails:
            items = []
            for f in fails:
                if isinstance(f, dict):
                    items.append(f'<li><b>{_esc(f.get("metric", "?"))}</b> = {_fmt(f.get("value"))} '
                                 f'(threshold {_esc(f.get("bound", "?"))}): {_esc(f.get("reason", ""))}</li>')
                else:
                    items.append(f"<li>{_esc(f)}</li>")
            w(f'<h3>Failures</h3><ul class="fails">{"".join(items)}</ul>')
        unchecked = q.get("unchecked") or ()
        if unchecked:
            w('<ul class="unchk">' + "".join(f"<li>not checked: {_esc(u)}</li>" for u in unchecked) + "</ul>")
        if cqe.get("grpo_signal"):
            w(f'<div class="banner cmp">GRPO signal since the baseline: {_esc(cqe["grpo_signal"])}</div>')
        flips = cqe.get("flips") or ()
        if flips:
            items = []
            for fl in flips:
                if not isinstance(fl, dict):
                    items.append(f"<li>{_esc(fl)}</li>")
                    continue
                b, c = fl.get("baseline_margin"), fl.get("current_margin")
                items.append(f'<li>chosen answer “{_esc(fl.get("chosen"))}” vs rejected “{_esc(fl.get("rejected"))}”: '
                             f'margin <span class="{_sign_cls(b)}">{_signed(b)}</span> in the baseline → '
                             f'<span class="{_sign_cls(c)}">{_signed(c)}</span> now'
                             + (f' ({_esc(fl["direction"])})' if fl.get("direction") else "") + "</li>")
            w(f'<h3>Flipped preferences since the baseline ({len(flips)})</h3><ul class="flips">{"".join(items)}</ul>')
        self.traces(w, q)
        self.pairs(w, q, unavailable)
        w("</div></details>")

    def traces(self, w, q: dict) -> None:
        traces = q.get("traces") or []
        if not traces:
            w('<div class="muted">No traces recorded.</div>')
            return
        has_ref = any(t.get("ref_logp") is not None for t in traces)
        has_reasoning = any(t.get("reasoning_tokens") is not None or t.get("reasoning") for t in traces)
        head = ['<th>#</th><th class="l">verdict</th><th class="l">answer</th><th>reward</th><th>advantage</th>'
                '<th title="the answer\'s tokens">tokens</th>',
                '<th title="thinking tokens the API reported">reasoning tokens</th>' if has_reasoning else "",
                "<th>logp</th>", "<th>ref logp</th>" if has_ref else "",
                '<th class="l">finish</th><th>seed</th><th class="l">trace text — the extracted answer highlighted '
                '(<mark class="ok">correct</mark> / <mark class="bad">not</mark>)</th>']
        w(f'<h3>Traces ({len(traces)})</h3><table class="tr"><thead><tr>{"".join(head)}</tr></thead><tbody>')
        rows = []
        for i, t in enumerate(traces):
            text, found = _highlight(t.get("text") or "", t.get("extracted"),
                                     "ok" if t.get("verdict") == "correct" else "bad")
            ext = t.get("extracted")
            if ext is None or ext == "":
                ans = '<span class="muted">-</span>'
            else:
                ans = f"<b>{_esc(ext)}</b>" + ("" if found else ' <span class="muted small">(not found verbatim)</span>')
            detail = f'<span class="vd">{_esc(t["detail"])}</span>' if t.get("detail") else ""
            logp = t.get("logp")
            ltip = (f' title="source: {_esc(t.get("logp_source"))}"' if t.get("logp_source") else
                    f' title="none: {_esc(t.get("logp_note"))}"' if t.get("logp_note") else "")
            if t.get("reasoning"):  # shown apart from the answer, collapsed: it is never verified
                text = (f'<details class="rs"><summary class="muted small">reasoning (not verified)</summary>'
                        f'{_esc(t["reasoning"])}</details>{text}')
            adv = t.get("advantage")
            seed = t.get("seed")
            rows.append(
                f'<tr><td>{i}</td><td class="l">{_verdict_badge(t.get("verdict", "?"))}{detail}</td>'
                f'<td class="l">{ans}</td><td>{_fmt(t.get("reward"), 2)}</td>'
                f'<td class="{_sign_cls(adv)}">{_signed(adv)}</td><td>{_fmt(t.get("token_count"))}</td>'
                + (f'<td>{_fmt(t.get("reasoning_tokens"))}</td>' if has_reasoning else "")
                + f'<td{ltip}>{_fmt(logp, 2)}</td>'
                + (f'<td>{_fmt(t.get("ref_logp"), 2)}</td>' if has_ref else "")
                + f'<td class="l">{_esc(t.get("finish_reason", "-"))}</td><td>{"-" if seed is None else _esc(seed)}</td>'
                f'<td class="txt">{text}</td></tr>')
        w("".join(rows))
        w("</tbody></table>")

    def pairs(self, w, q: dict, unavailable: Any) -> None:
        pairs = q.get("pairs") or []
        if not pairs:
            w('<div class="muted">No preference pairs (every trace got the same verdict class).</div>')
            return
        scored = [p.get("margin") for p in pairs if _is_num(p.get("margin"))]
        pos = sum(1 for x in scored if x > 0)
        note = (f"{len(scored)} scored, {pos} with margin &gt; 0" if scored
                else f"margins unavailable{': ' + _esc(unavailable) if unavailable else ''}")
        chips = []
        for p in pairs:
            mg = p.get("margin")
            cls = _sign_cls(mg) if _is_num(mg) else "na"
            val = _signed(mg) if _is_num(mg) else "unavailable"
            chips.append(f'<span class="pair {cls}">chosen #{_esc(p.get("chosen", "?"))} vs rejected '
                         f'#{_esc(p.get("rejected", "?"))} <b>{val}</b></span>')
        w(f'<h3>Preference pairs ({len(pairs)}; {note})</h3><div class="pairs">{"".join(chips)}</div>')


def _sign_cls(v: Any) -> str:
    if not _is_num(v) or float(v) == 0:
        return ""
    return "pos" if float(v) > 0 else "neg"


def render_html(report: dict, *, title: str = "rlhf-eval report") -> str:
    """The whole report as one self-contained HTML page (a str)."""
    return _Page(report, title).render()


def write_html(report: dict, path: str | Path, *, title: str = "rlhf-eval report") -> None:
    """Render and write atomically, so a reader never sees half a page. Raises OSError, or
    SecretInOutput (and writes nothing) if the page would contain one of the run's secrets."""
    write_without_secrets(path, render_html(report, title=title))

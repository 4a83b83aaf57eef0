"""The HTML report: one self-contained page rendered from the shipped suites' JSON report, checked
with the stdlib HTML parser (and, when Chromium is installed, screenshotted in a headless browser)."""
import copy
import re
import shutil
import struct
import subprocess
import time
import zlib
from html.parser import HTMLParser

import pytest

from conftest import REPO
from rlhf_eval.html_report import _highlight, render_html, write_html
from rlhf_eval.report_model import Report

VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}


# ---------------------------------------------------------------------------------------------
# a tiny DOM on top of html.parser


class Node:
    def __init__(self, tag, attrs, parent=None):
        self.tag, self.attrs, self.parent, self.children = tag, dict(attrs), parent, []

    @property
    def classes(self):
        return (self.attrs.get("class") or "").split()

    def text(self):
        return "".join(c if isinstance(c, str) else c.text() for c in self.children)

    def iter(self):
        for c in self.children:
            if isinstance(c, Node):
                yield c
                yield from c.iter()

    def find_all(self, tag=None, cls=None, **attrs):
        return [n for n in self.iter() if (tag is None or n.tag == tag) and (cls is None or cls in n.classes)
                and all(n.attrs.get(k.replace("_", "-")) == v for k, v in attrs.items())]

    def find(self, tag=None, cls=None, **attrs):
        found = self.find_all(tag, cls, **attrs)
        return found[0] if found else None


class Tree(HTMLParser):
    """Builds a Node tree and records every tag that closes something it did not open."""

    def __init__(self, text):
        super().__init__(convert_charrefs=True)
        self.root = Node("#root", {})
        self.cur = self.root
        self.mismatches = []
        self.feed(text)
        self.close()

    def handle_starttag(self, tag, attrs):
        node = Node(tag, attrs, self.cur)
        self.cur.children.append(node)
        if tag not in VOID:
            self.cur = node

    def handle_startendtag(self, tag, attrs):
        self.cur.children.append(Node(tag, attrs, self.cur))

    def handle_endtag(self, tag):
        if tag in VOID:
            return
        if self.cur.tag != tag:
            self.mismatches.append((tag, self.cur.tag, self.getpos()))
            n = self.cur
            while n is not self.root and n.tag != tag:
                n = n.parent
            if n is self.root:
                return
            self.cur = n
        self.cur = self.cur.parent

    def handle_data(self, data):
        self.cur.children.append(data)


def parse(text):
    tree = Tree(text)
    assert not tree.mismatches, tree.mismatches[:5]
    assert tree.cur is tree.root, f"unclosed <{tree.cur.tag}>"
    return tree.root


# ---------------------------------------------------------------------------------------------
# the report under test


@pytest.fixture(scope="module")
def shipped_report(shipped_report):  # conftest's (report, stdout); here only the report, two of its suites
    report, _ = shipped_report
    assert [s["name"] for s in report["suites"]] == ["gsm8k_reference", "gsm8k_smoke", "science_choice"]
    return {**report, "suites": report["suites"][1:]}


@pytest.fixture(scope="module")
def page(shipped_report):
    html = render_html(shipped_report)
    return html, parse(html)


def with_comparison(report):
    """The shipped report plus what is being added next to it: intervals, maj@k and a comparison
    against a (fake) baseline run, with one significant worsening, one insignificant change and a flip."""
    r = copy.deepcopy(report)
    gsm = r["suites"][0]
    for q in gsm["questions"]:
        m = q["metrics"]
        acc = m["accuracy"]
        q["intervals"] = {"accuracy": [max(0.0, acc - 0.21), min(1.0, acc + 0.23)],
                          "spread": [max(0.0, m["spread"] - 0.1), m["spread"] + 0.1]}
        if m["mean_margin"] is not None:
            q["intervals"]["mean_margin"] = [m["mean_margin"] - 5.0, m["mean_margin"] + 5.0]
            q["intervals"]["reward_accuracy"] = [max(0.0, m["reward_accuracy"] - 0.3), 1.0]
        m["maj_at_k"] = 1.0 if acc > 0.5 else 0.0
    agg = gsm["aggregates"]
    agg["intervals"] = {"accuracy": [0.235, 0.354], "mean_margin": [-1.5, 7.2], "reward_accuracy": [0.39, 0.53]}
    agg["maj_at_k"] = 0.3
    first = gsm["questions"][0]
    r["comparison"] = {
        "baseline": "baseline-run.json",
        "model_version_changed": True,
        "note": "baseline recorded with gemini-2.0-flash-001; this run with gemini-2.0-flash-emulator",
        "failures": ["gsm8k_smoke: accuracy got significantly worse (0.292 vs 0.450, p = 0.0004)"],
        "suites": [{
            "name": "gsm8k_smoke",
            "aggregates": {
                "accuracy": {"baseline": 0.45, "current": agg["accuracy"], "delta": agg["accuracy"] - 0.45,
                             "p_value": 0.0004, "test": "two-proportion z-test", "significant": True, "worse": True},
                "mean_margin": {"baseline": 2.5, "current": agg["mean_margin"], "delta": agg["mean_margin"] - 2.5,
                                "p_value": 0.61, "test": "Welch t-test", "significant": False, "worse": False},
            },
            "questions": {
                first["id"]: {
                    "metrics": {"accuracy": {"baseline": 0.75, "current": 0.25, "delta": -0.5, "p_value": 0.041,
                                             "test": "Fisher exact", "significant": True, "worse": True},
                                "spread": {"baseline": 0.46, "current": 0.46, "delta": 0.0, "p_value": 1.0,
                                           "test": "Levene", "significant": False, "worse": False}},
                    "flips": [{"chosen": "18", "rejected": "<4>", "baseline_margin": 1.25,
                               "current_margin": -0.75}],
                },
            },
        }],
    }
    return r


def without_additions(report):
    """The report as it was before intervals, maj@k and comparisons existed (whatever the harness now adds)."""
    r = copy.deepcopy(report)
    r.pop("comparison", None)
    for s in r["suites"]:
        s["aggregates"].pop("intervals", None)
        s["aggregates"].pop("maj_at_k", None)
        for q in s["questions"]:
            q.pop("intervals", None)
            (q.get("metrics") or {}).pop("maj_at_k", None)
    return r


def _columns(table):
    """{header: column index} of the summary table."""
    return {th.text(): i for i, th in enumerate(table.find("thead").find_all("th"))}


def _questions(report):
    return [(s, q) for s in report["suites"] for q in s["questions"]]


def _section(root, suite, q):
    """The <details> of a question: the one the summary table links to."""
    row = next(r for r in root.find("table", cls="sum").find_all("tr")
               if r.attrs.get("data-q") == f"{suite['name']}/{q['id']}".lower())
    href = row.find("a").attrs["href"]
    assert href.startswith("#")
    sec = root.find("details", id=href[1:])
    assert sec is not None, href
    return sec


# ---------------------------------------------------------------------------------------------
# tests


def test_page_is_self_contained(page):
    html, root = page
    assert html.startswith("<!DOCTYPE html>")
    for n in root.iter():
        assert n.tag not in ("link", "img", "iframe", "object", "embed", "base", "source", "video", "audio")
        for name, value in n.attrs.items():
            if name in ("src", "href", "xlink:href", "action", "srcset", "poster", "background"):
                assert value is not None and (value.startswith("#") or value.startswith("data:")), (n.tag, name, value)
        if n.tag == "script":
            assert "src" not in n.attrs
    style = "".join(n.text() for n in root.find_all("style"))
    assert style and "url(" not in style and "@import" not in style
    # the only absolute URL on the page is the SVG namespace name (never fetched)
    assert html.replace('xmlns="http://www.w3.org/2000/svg"', "").count("http") == 0


def test_header_says_where_the_numbers_come_from_and_that_they_are_emulated(page, shipped_report):
    _, root = page
    header = root.find("header").text()
    assert "come from the traces recorded in the report" in header
    emu = root.find("div", cls="emu")
    assert emu is not None and "emulator" in emu.text() and "not from a real model" in emu.text()
    assert "gemini-2.0-flash-emulator" in emu.text()

    real = copy.deepcopy(shipped_report)
    for _, q in _questions(real):
        for t in q["traces"]:
            t["model_version"] = t["model_version"].replace("-emulator", "-001")
    assert parse(render_html(real)).find("div", cls="emu") is None


def test_summary_table_has_a_row_per_question_and_per_suite(page, shipped_report):
    _, root = page
    table = root.find("table", cls="sum")
    qrows = [r for r in table.find_all("tr") if "data-q" in r.attrs]
    assert [r.attrs["data-q"] for r in qrows] == [f"{s['name']}/{q['id']}".lower()
                                                 for s, q in _questions(shipped_report)]
    srows = table.find_all("tr", cls="srow")
    assert len(srows) == len(shipped_report["suites"])
    col = _columns(table)
    assert list(col)[:3] == ["question", "k", "accuracy"] and list(col)[-1] == "result"
    assert ("maj@k" in col) == any("maj_at_k" in q["metrics"] for _, q in _questions(shipped_report))
    for (_, q), row in zip(_questions(shipped_report), qrows):
        cells = [td.text().strip() for td in row.find_all("td")]
        assert cells[0] == q["id"] and cells[1] == str(q["metrics"]["k"])
        assert cells[2].startswith(f"{q['metrics']['accuracy']:.3f}")  # then the interval, when there is one
        assert cells[-1] == ("pass" if q["passed"] else "FAIL")
        assert ("fail" in row.classes) == (not q["passed"])
        zero = q["metrics"]["spread"] == 0
        assert ("data-zero" in row.attrs) == zero
        assert (row.find("span", cls="zero") is not None) == zero, "zero-spread questions are marked"
    gsm_suite = [td.text().strip() for td in srows[0].find_all("td")]
    assert gsm_suite[2].startswith(f"{shipped_report['suites'][0]['aggregates']['accuracy']:.3f}")
    # the table links every question to its section, and every link lands on an id on the page
    ids = {n.attrs["id"] for n in root.iter() if "id" in n.attrs}
    hrefs = [n.attrs["href"] for n in root.find_all("a")]
    assert hrefs and all(h[1:] in ids for h in hrefs)


def test_dpo_metrics_say_unavailable_for_the_suite_without_logprobs(page, shipped_report):
    _, root = page
    table = root.find("table", cls="sum")
    col = _columns(table)
    tbodies = table.find_all("tbody")
    assert len(tbodies) == 2
    for tbody, suite in zip(tbodies, shipped_report["suites"]):
        rows = [r for r in tbody.find_all("tr") if "data-q" in r.attrs or "srow" in r.classes]
        assert len(rows) == len(suite["questions"]) + 1
        for row in rows:
            cells = [td.text().strip() for td in row.find_all("td")]
            margin, reward_acc = cells[col["mean margin"]], cells[col["reward acc"]]
            if suite["name"] == "science_choice":
                assert margin == reward_acc == "unavailable"
            else:
                assert "unavailable" not in (margin, reward_acc)
    figures = root.find_all("figure")
    assert len(figures) == 2
    assert "unavailable" in figures[1].find("div", cls="unavail").text()
    assert figures[0].find("div", cls="unavail") is None


def test_svg_plots_per_suite(page, shipped_report):
    _, root = page
    for fig, suite in zip(root.find_all("figure"), shipped_report["suites"]):
        svgs = fig.find_all("svg")
        n = len(suite["questions"])
        bars = [len([r for r in svg.find_all("rect") if "bar" in r.classes]) for svg in svgs]
        links = [len(svg.find_all("a")) for svg in svgs]
        assert bars[:2] == [n, n] and links[:2] == [n, n], "accuracy and spread: one bar per question"
        # the suite's pass@k and pass^k by budget k, each point titled with the JSON's value
        curve = [c.find("title").text() for c in svgs[2].find_all("circle")]
        k = len(suite["aggregates"]["pass_at"])
        assert curve == ([f"pass@{i + 1} = {v:.3f}" for i, v in enumerate(suite["aggregates"]["pass_at"])]
                         + [f"pass^{i + 1} = {v:.3f}" for i, v in enumerate(suite["aggregates"]["pass_hat"])])
        assert k == suite["samples"]
        if suite["name"] == "gsm8k_smoke":
            assert len(svgs) == 4 and bars[3] > 3, "a histogram of the margins"
            assert "202 scored pairs" in svgs[3].text()
        else:
            assert len(svgs) == 3


def test_every_question_has_a_section_with_all_its_traces_and_pairs(page, shipped_report):
    _, root = page
    sections = root.find_all("details", cls="q")
    assert len(sections) == len(_questions(shipped_report))
    assert "open" in sections[0].attrs and all("open" not in s.attrs for s in sections[1:])
    for s, q in _questions(shipped_report):
        sec = _section(root, s, q)
        rows = sec.find("table", cls="tr").find("tbody").find_all("tr")
        assert len(rows) == len(q["traces"])
        for t, row in zip(q["traces"], rows):
            cell = row.find("td", cls="txt")
            assert cell.text() == t["text"], "the whole trace text, unchanged"
            assert row.find("span", cls="v").text() == t["verdict"]
            assert str(t["seed"]) in row.text() and t["finish_reason"] in row.text()
            marks = cell.find_all("mark")
            if t["extracted"]:
                assert [m.text() for m in marks] == [t["extracted"]]
                # the last occurrence: no standalone copy of the answer follows the mark
                i = cell.children.index(marks[0])
                after = "".join(c for c in cell.children[i + 1:] if isinstance(c, str))
                assert not re.search(rf"(?<![A-Za-z0-9]){re.escape(t['extracted'])}(?![A-Za-z0-9])", after)
            else:
                assert marks == []
        chips = sec.find_all("span", cls="pair")
        assert len(chips) == len(q["pairs"])
        for p, chip in zip(q["pairs"], chips):
            assert f"chosen #{p['chosen']} vs rejected #{p['rejected']}" in chip.text()
            if p["margin"] is None:
                assert "unavailable" in chip.text()
            else:
                assert ("pos" if p["margin"] > 0 else "neg") in chip.classes
    marked = [m.text() for m in root.find_all("mark")]
    assert "18" in marked and "A" in marked


def test_failures_are_listed_with_their_reasons(shipped_report):
    r = copy.deepcopy(shipped_report)
    q = r["suites"][0]["questions"][0]
    q["passed"] = False
    q["failures"] = [{"metric": "accuracy", "value": 0.25, "bound": "min 0.5",
                      "reason": "accuracy = 0.25 < min 0.5"}]
    r["suites"][0]["aggregates"]["questions_failed"] = 1
    r["suites"][1]["threshold_failures"] = ["accuracy = 0.25 < min 0.3"]
    root = parse(render_html(r))
    row = next(t for t in root.find("table", cls="sum").find_all("tr") if "data-q" in t.attrs)
    assert "fail" in row.classes and row.find_all("td")[-1].text() == "FAIL"
    sec = _section(root, r["suites"][0], q)
    assert "data-fail" in sec.attrs
    assert "accuracy = 0.25 < min 0.5" in sec.find("ul", cls="fails").text()
    assert "FAIL suite science_choice: accuracy = 0.25 < min 0.3" in root.find("header").text()
    assert root.find("span", cls="verdict").text() == "FAIL"
    assert all("fail" in s.classes for s in root.find_all("tr", cls="srow"))


def test_model_output_is_escaped(shipped_report):
    r = copy.deepcopy(shipped_report)
    evil = '<script>alert("pwned")</script> & <b>bold</b> </td></tr></table> <!-- A: 4'
    t = r["suites"][0]["questions"][0]["traces"][0]
    t["text"], t["extracted"] = evil, "4"
    t["detail"] = '"><img src=x onerror=alert(1)>'
    r["suites"][0]["description"] = "<iframe src=//evil.example>"
    r["suites"][1]["questions"][0]["traces"][0]["text"] = "bad bytes \x00\x1b and a lone surrogate \ud800, A: (A)"
    html = render_html(r)
    assert '<script>alert' not in html and "<img" not in html and "<iframe" not in html
    root = parse(html)
    assert len(root.find_all("script")) == 1  # the page's own filtering script, nothing else
    assert not root.find_all("img") and not root.find_all("iframe")
    cell = root.find("td", cls="txt")
    assert cell.text() == evil and [m.text() for m in cell.find_all("mark")] == ["4"]
    assert "␀␛" in html and "\ud800" not in html


def test_highlight_prefers_the_last_standalone_occurrence():
    text, found = _highlight("Answer: the answer is (A).", "A")
    assert found and text == "Answer: the answer is (<mark>A</mark>)."
    text, found = _highlight("16 - 3 = 13\nA: 13 eggs, 13", "13")
    assert found and text.endswith("<mark>13</mark>")
    assert _highlight("no answer here", "42") == ("no answer here", False)
    assert _highlight("x <y> 1", None) == ("x &lt;y&gt; 1", False)
    assert _highlight("Final: ANSWER", "answer")[0] == "Final: <mark>ANSWER</mark>"
    assert _highlight("1234 and 12", "12")[0] == "1234 and <mark>12</mark>"
    assert _highlight("x1234", "12")[0] == "x<mark>12</mark>34"  # only glued: still the last occurrence


def test_comparison_intervals_and_maj_at_k(shipped_report):
    r = with_comparison(shipped_report)
    html = render_html(r)
    root = parse(html)
    changed = root.find("div", cls="changed")
    assert changed is not None and "Model version changed" in changed.text()
    cmp_banner = root.find("div", cls="cmp")
    assert "baseline-run.json" in cmp_banner.text() and "gemini-2.0-flash-001" in cmp_banner.text()
    assert "accuracy got significantly worse" in cmp_banner.text()
    assert root.find("span", cls="verdict").text() == "FAIL"  # a comparison failure fails the page

    table = root.find("table", cls="sum")
    col = _columns(table)
    assert "maj@k" in col
    qrow = next(t for t in table.find_all("tr") if "data-q" in t.attrs)
    acc_cell = qrow.find_all("td")[col["accuracy"]]
    delta = acc_cell.find("span", cls="d")
    assert delta is not None and "sig" in delta.classes and "worse" in delta.classes
    assert delta.text() == "Δ−0.500*" and "Fisher exact" in delta.attrs["title"] and "0.041" in delta.attrs["title"]
    assert acc_cell.find("span", cls="ci").text() == "[0.04, 0.48]"
    spread_delta = qrow.find_all("td")[col["spread"]].find("span", cls="d")
    assert "ns" in spread_delta.classes and spread_delta.text() == "Δ+0.000"
    srow = table.find("tr", cls="srow")
    sdeltas = srow.find_all("span", cls="d")
    assert any("sig" in d.classes for d in sdeltas) and any("ns" in d.classes for d in sdeltas)
    assert "[0.23, 0.35]" in srow.text()
    # the first question's section: deltas next to its metrics, and the flipped pair
    sec = _section(root, r["suites"][0], r["suites"][0]["questions"][0])
    assert sec.find("div", cls="kvs").find("span", cls="d") is not None
    flips = sec.find("ul", cls="flips")
    assert flips is not None and "“18” vs rejected “<4>”" in flips.text() and "+1.250" in flips.text()
    assert "−0.750" in flips.text()
    # error bars on the accuracy plot
    assert root.find("figure").find("svg").find_all("line", cls="err")

    plain = parse(render_html(without_additions(shipped_report)))
    assert plain.find("div", cls="changed") is None and plain.find("span", cls="d") is None
    assert plain.find("span", cls="ci") is None and "maj@k" not in _columns(plain.find("table", cls="sum"))
    assert not plain.find("figure").find("svg").find_all("line", cls="err")


def test_write_html_is_atomic_and_renders_fast_for_a_large_report(shipped_report, tmp_path):
    out = tmp_path / "report.html"
    write_html(shipped_report, out)
    assert out.read_text(encoding="utf-8") == render_html(shipped_report)
    assert [p.name for p in tmp_path.iterdir()] == ["report.html"]  # no temp file left behind

    big = copy.deepcopy(shipped_report)
    for s in big["suites"]:
        base = s["questions"]
        s["questions"] = [{**q, "id": f"{q['id']}-r{rep}", "index": rep * len(base) + q["index"]}
                          for rep in range(1000 // len(big["suites"]) // len(base) + 1) for q in base]
    n = sum(len(s["questions"]) for s in big["suites"])
    assert n >= 1000
    start = time.perf_counter()
    html = render_html(big)
    elapsed = time.perf_counter() - start
    assert elapsed < 5.0, f"{n} questions took {elapsed:.2f} s"
    assert html.count('<details class="q"') == n


def _png_info(data):
    """(width, height, decompressed scanlines) of a PNG, with the stdlib only."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, width, height = 8, [], None, None
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            width, height = struct.unpack(">II", body[:8])
        elif kind == b"IDAT":
            idat.append(body)
        pos += 12 + length
    return width, height, zlib.decompress(b"".join(idat))


@pytest.mark.skipif(not shutil.which("chromium"), reason="chromium is not installed")
def test_screenshot_in_headless_chromium(shipped_report, tmp_path):
    page = tmp_path / "report.html"
    png = tmp_path / "report.png"
    write_html(with_comparison(shipped_report), page)
    proc = subprocess.run([str(REPO / "scripts" / "screenshot-html.sh"), str(page), str(png), "1200x1500"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    data = png.read_bytes()
    assert len(data) > 20_000
    width, height, raw = _png_info(data)
    assert (width, height) == (1200, 1500)
    assert len(set(raw)) > 64, "not a single colour"
    stride = len(raw) // height
    rows = {raw[i * stride + 1:(i + 1) * stride] for i in range(0, height, 50)}
    assert len(rows) > 10, "most sampled rows differ"


@pytest.mark.skipif(not shutil.which("chromium"), reason="chromium is not installed")
def test_the_script_runs_in_chromium_and_opens_a_linked_question(shipped_report, tmp_path):
    page = tmp_path / "report.html"
    write_html(shipped_report, page)
    s, q = _questions(shipped_report)[-1]
    anchor = _section(parse(page.read_text()), s, q).attrs["id"]
    proc = subprocess.run(
        ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         f"--user-data-dir={tmp_path / 'profile'}", "--dump-dom", f"{page.as_uri()}#{anchor}"],
        capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    dom = parse(proc.stdout)
    assert "hidden" not in dom.find("div", id="controls").attrs, "the script ran: the filter controls show"
    assert dom.find("span", id="shown").text() == f"{len(_questions(shipped_report))} shown"
    assert "open" in dom.find("details", id=anchor).attrs, "the linked question opened"


def test_renders_the_comparison_the_harness_computes(shipped_report):
    compare = pytest.importorskip("rlhf_eval.compare")
    baseline = copy.deepcopy(shipped_report)
    for _, q in _questions(baseline):
        for t in q["traces"]:
            t["model_version"] = "gemini-2.0-flash-001"
    report = Report.of(shipped_report)
    report.comparison = compare.compare_reports(report, Report.of(baseline), "baseline.json")
    root = parse(render_html(report))
    assert "Model version changed" in root.find("div", cls="changed").text()
    assert root.find("table", cls="sum").find_all("span", cls="d"), "deltas next to the metrics"


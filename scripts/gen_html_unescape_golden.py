#!/usr/bin/python3
"""Writes tests/data/html_unescape_golden.jsonl: expected html_unescape results.

Each line is {"in": s, "out": html.unescape(s)} as computed by this Python
(Debian's 3.11 is the reference; tests/common/html_unescape_test.cc checks
vitrine::html_unescape against every line). Cases, in this order:

  (a) a hand-written table of tricky inputs: every numeric edge (NUL, CR, the
      0x80..0x9F Windows-1252 table in decimal and hex, surrogates, code
      points that decode to nothing, > U+10FFFF, huge numbers, missing ';'),
      named references with and without ';', legacy prefix matches
      (&ampfoo, &notit;), the 32-code-point name limit in ASCII and non-ASCII,
      characters that end a name, unknown names, two-code-point values;
  (b) every title and content string that contains '&' in the shared sample
      files (read at generation time; their contents are not copied into the
      repo except as these strings), in file order, title before content.

Inputs are de-duplicated keeping the first occurrence, so the output is
deterministic. Written with json.dumps(ensure_ascii=False) and '\\n' endings.
The golden file changes only by re-running this script.

Not a goal: testing html.escape or anything but html.unescape.

Usage: /usr/bin/python3 scripts/gen_html_unescape_golden.py [--shared DIR] [--out PATH]
"""

import argparse
import html
import json
from pathlib import Path

kRepo = Path(__file__).resolve().parent.parent
kDefaultShared = kRepo.parent / "shared"
kDefaultOut = kRepo / "tests" / "data" / "html_unescape_golden.jsonl"
kSharedFiles = ("data/amazon_titles_sample.jsonl", "data/amazon_titles_tst_head.jsonl")

# Code points Python's html.unescape turns into '' (its _invalid_codepoints).
kNoncharacters = [0xFFFE, 0xFFFF] + [(plane << 16) | low for plane in range(1, 17)
                                     for low in (0xFFFE, 0xFFFF)]


def numeric_cases() -> list:
    cases = [
        "&#0;", "&#x0;", "&#X0;", "&#00000;", "&#13;", "&#x0D;", "&#x0d", "&#9;", "&#10;",
        "&#12;", "&#32;", "&#127;", "&#x7F;", "&#x7f", "&#160;", "&#xA0;", "&#xa0;",
        "&#xD800;", "&#xDBFF;", "&#xDC00;", "&#xDFFF;", "&#55296;", "&#57343;", "&#xE000;",
        "&#x10FFFF;", "&#x10FFFD;", "&#1114109;", "&#1114111;", "&#1114112;", "&#x110000;",
        "&#99999999999999999999;", "&#xFFFFFFFFFFFFFFFFFFFF;", "&#x7FFFFFFF;",
        "&#4294967296;", "&#4294967361;", "&#x100000041;",
        "&#0000000000000000000000065;", "&#x00000000000000000000041;",
        "&#11;", "&#xFDD0;", "&#xFDCF;", "&#xFDEF;", "&#xFDF0;", "&#xFFFD;",
        "&#65", "&#65 ", "&#65x", "&#65;x", "&#65;;", "&#x41", "&#x41g", "&#x41BCg",
        "&#x41ab", "&#X41;", "&#x41;", "&#x0041;", "&#65&#66;", "&#x41&#x42",
        "&#;", "&#x;", "&#X;", "&#xg;", "&#xG1;", "&#", "&#x", "&#X", "&# 65;",
        "&#-1;", "&#+1;", "&#1.5;", "&#\u0665;", "&#\uff11;", "&#x\uff41;",
        "&#8217;s", "&#x2019;s", "&#x1F600;", "&#128512;", "&#38;amp;", "&#x26;lt;",
    ]
    cases += [f"&#{n};" for n in range(1, 9)]
    cases += [f"&#{n};" for n in range(14, 32)]
    for n in range(0x80, 0xA0):  # all 32 Windows-1252 slots, every spelling
        cases += [f"&#{n};", f"&#x{n:x};", f"&#X{n:X};"]
    cases += ["&#150", "&#x96", "&#x81;", "&#x8d;", "&#x8f;", "&#x90;", "&#x9d;"]
    cases += [f"&#x{cp:X};" for cp in kNoncharacters]
    cases += [f"&#x{cp:X};" for cp in range(0xFDD0, 0xFDF0, 5)]
    return cases


def named_cases() -> list:
    long_name = "Abcdefghijklmnopqrstuvwxyzabcdef"  # 32 characters
    assert len(long_name) == 32
    return [
        "&", "&&", "&&&", "&&amp;", "&&&amp;", "&amp;&", "&;", "&;amp;", "& ", "&\t", "&\n",
        "&\f", "&\r", "&\rx;", "&\x0b", "&<", "&<lt;", "&#", "&amp", "&amp;", "&AMP",
        "&AMP;", "&Amp;", "&AMPx", "&amp;amp;", "&amp;;", "&ampamp;", "&ampfoo", "&amp foo",
        "&amp\tx", "&amp\rx", "&amp<", "&amp#38;", "&ampé", "&amp中;", "&lt", "&lt;", "&LT",
        "&LT;", "&Lt;", "&ltx", "&ltx;", "&gtx;", "&gt=", "&l", "&g", "&lt;&gt;", "x &lt y",
        "&quot;", "&quot", "&QUOT", "&apos;", "&apos", "&nbsp", "&nbsp;", "&nbspx",
        "&not", "&not;", "&notit;", "&notin;", "&notin", "&notinva;", "&notinvb", "&no",
        "&copy", "&copy;", "&COPY", "&COPY;", "&copy2019", "&copy 2019", "&reg;", "&REG",
        "&sup1", "&sup1;", "&sup12", "&sup", "&sup;", "&frac12;", "&frac12", "&frac123",
        "&frac1", "&frac13;", "&aacute", "&aacutexyz", "&Aacute;", "&AElig", "&AEligs;",
        "&times", "&timesbar;", "&timesbarx", "&yuml;", "&Yuml;", "&Yuml", "&euro;",
        "&euro", "&hellip;", "&mdash;", "&ndash;", "&rsquo;", "&lsquo;", "&ldquo;",
        "&rdquo;", "&trade;", "&trade", "&bull;", "&middot", "&middotx;",
        "&NotEqualTilde;", "&acE;", "&nGt;", "&nLt;", "&bne;", "&fjlig;", "&ThickSpace;",
        "&NewLine;", "&Tab;", "&bsol;", "&lowbar;", "&semi;", "&num;", "&amp;#65;",
        "&foo;", "&foo", "&a;", "&a", "&ab", "&zz;", "&image;", "&imagpart;",
        "&CounterClockwiseContourIntegral;", "&CounterClockwiseContourIntegral",
        "&CounterClockwiseContourIntegralX;", "&ClockwiseContourIntegral;x",
        "&" + long_name, "&" + long_name + ";", "&" + long_name + "g;",
        "&" + "a" * 31 + ";", "&" + "a" * 32 + ";", "&" + "a" * 33 + ";",
        "&amp" + "x" * 40, "&amp" + "x" * 28 + ";", "&amp" + "x" * 29 + ";",
        "&" + "a" * 31 + "é;", "&" + "a" * 32 + "é;", "&" + "é" * 32 + ";",
        "&" + "é" * 33 + ";", "&" + "中" * 40 + "&amp;", "&lt" + "é" * 29 + ";",
        "&lt" + "é" * 30 + ";", "&" + "\U0001F600" * 33 + ";", "&\U0001F600;", "&é;",
        "&éamp;", "&café;", "&notéx", "&中文;", "&amp\U0001F600", "&\x00;", "&amp\x00",
        "&;;", "&!;", "&$amp;", "&-lt;", "&.;", "&lt.", "&gt,x", "&lt-3", "&amp=1",
        "café &amp; crème", "€&euro;€", "Ünïcödé &eacute;tüde &#233;", "AT&T",
        "AT&T;", "Q&A", "Q&amp;A", "R&D&amp;", "Tom & Jerry", "Tom &amp; Jerry",
        "a&b&c;&d", "&amp;lt;", "&lt;b&gt;bold&lt;/b&gt;", "5 &gt 3 &lt 7",
        "price &pound;5 &yen100 &cent;", "&Oslash;ther &oslash",
        "&#x2019;&#x2018;&#x2026;&#x2013;&#x201C;&mdash;&#x201D;&#8221;&#160;&#8220;",
        "--This text refers to an out of print or unavailable edition of this title.",
    ]


def shared_cases(shared_dir: Path) -> list:
    cases = []
    for rel in kSharedFiles:
        with open(shared_dir / rel, encoding="utf-8") as f:
            for line in f:
                record = json.loads(line)
                for key in ("title", "content"):
                    text = record.get(key, "")
                    if "&" in text:
                        cases.append(text)
    return cases


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path, default=kDefaultShared, help="shared fixtures dir")
    parser.add_argument("--out", type=Path, default=kDefaultOut, help="golden file to write")
    args = parser.parse_args()

    hand_written = numeric_cases() + named_cases()
    from_data = shared_cases(args.shared)
    seen = set()
    lines = []
    for text in hand_written + from_data:
        if text in seen:
            continue
        seen.add(text)
        lines.append(json.dumps({"in": text, "out": html.unescape(text)}, ensure_ascii=False))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with open(args.out, "w", encoding="utf-8", newline="\n") as f:
        f.write("\n".join(lines) + "\n")
    print(f"wrote {len(lines)} cases ({len(set(hand_written))} hand-written, "
          f"{len(from_data)} shared strings with '&') to {args.out}")


if __name__ == "__main__":
    main()

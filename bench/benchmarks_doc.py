"""Writes a benchmark's section of docs/benchmarks.md, between its markers."""

import os

DOC = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "docs", "benchmarks.md")


def write_section(doc, begin, end, section):
    """Replaces the text from `begin` to `end` in `doc` with `section` (which
    starts with `begin` and ends with `end`), or appends it when the markers
    are absent; the file is replaced atomically."""
    text = open(doc).read() if os.path.exists(doc) else ""
    if begin in text and end in text:
        text = text[:text.index(begin)] + section + text[text.index(end) + len(end):]
    else:
        text += "\n" + section + "\n"
    tmp = doc + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, doc)


def publish(section, begin, end, write=True, doc=DOC):
    """Prints a bench's section and, unless `write` is false (a bench's
    --no-write), puts it between its markers in docs/benchmarks.md. Notes
    written by hand belong outside the markers: the next run replaces what
    is between them."""
    print(section)
    if write:
        write_section(doc, begin, end, section)

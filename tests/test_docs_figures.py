"""The README's and the docs' tables quote only figures that a committed JSON file holds, and
their relative links point to files that exist, so a stale figure or a moved file fails CI.

The convention (written once here; docs/results.md shows it in use). A table of measured
figures is preceded by an HTML comment, invisible when rendered:

    <!-- figures: ../magicvideo/weights/default/eval_metrics.json
    * | color = {row}.color_acc
    seen prompts | result = seen.color_acc, seen.shape_acc, seen.direction_acc
    * | target = text
    -->

* The first line names the JSON file, relative to the markdown file. Several files are
  separated by spaces and addressed in expressions as ``stem:key.path``
  (``eval_metrics:seen.color_acc``); with one file the prefix may be left out.
* Every further line is ``ROW | COLUMN = EXPR, EXPR, ...``: the cell in each row whose first
  cell starts with ROW (``*``: every row) and in the column whose header starts with COLUMN
  holds one number per EXPR, in order. ``{row}`` in an EXPR is the row's first cell without
  markup. ``text`` instead of EXPRs: the cell's numbers are not measurements (targets,
  settings) and are not checked.
* EXPR is a key path into the JSON (dots between keys, a list's item by its index; keys may
  contain spaces), ``-EXPR``,
  or one of ``mean(path)``, ``sem(path)`` (standard error of the mean, ddof 1) of a list, or
  ``diff(a, b)``, ``diff_sem(a, b)``: the mean and its standard error of the per-item
  differences a - b (paired comparisons).
* A number is checked at the precision it is written with: ``86.5%`` must be 100 x the value
  rounded to one decimal, ``0.47`` the value to two; thousands separators and a leading ``+``
  are allowed. Numbers inside backticks or glued to letters (``1D``, ``H100``) are names,
  not figures.
* Every number in a sourced table outside its first column (the row labels) must be mapped;
  a table with a number outside its first column and no comment must say why it has none:
  ``<!-- figures: none (REASON) -->``.
"""
from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = sorted([ROOT / "README.md", *(ROOT / "docs").glob("*.md"), *(ROOT / "magicvideo" / "weights").glob("*/MODEL_CARD.md")])

# a figure: not glued to letters before it or after it (1D, H100, bf16 are names), but 2.95x is
NUMBER = re.compile(r"(?<![\w.])[+-]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?%?(?![A-Za-wyz_\d])")
CODE_SPAN = re.compile(r"`[^`]*`")
FUNCTIONS = {"mean", "sem", "diff", "diff_sem"}


def _id(path: Path) -> str:
    return str(path.relative_to(ROOT))


# ---------------------------------------------------------------- markdown structure

def _prose_lines(text: str) -> list[tuple[int, str]]:
    """(line number, line) outside fenced code blocks."""
    out, fenced = [], False
    for number, line in enumerate(text.splitlines(), 1):
        if line.lstrip().startswith("```"):
            fenced = not fenced
        elif not fenced:
            out.append((number, line))
    return out


def _cells(line: str) -> list[str]:
    return [c.strip() for c in re.split(r"(?<!\\)\|", line.strip().strip("|"))]


def _plain(cell: str) -> str:
    return cell.replace("`", "").replace("**", "").strip()


def tables(text: str) -> list[dict]:
    """Every pipe table outside code blocks: its line, header, body rows and the HTML comment
    right above it (None when there is none)."""
    lines = _prose_lines(text)
    found, i = [], 0
    while i < len(lines):
        number, line = lines[i]
        if line.lstrip().startswith("|") and i + 1 < len(lines) and re.fullmatch(r"\s*\|[\s:|-]+\|\s*", lines[i + 1][1]):
            j = i + 2
            body = []
            while j < len(lines) and lines[j][1].lstrip().startswith("|"):
                body.append(_cells(lines[j][1]))
                j += 1
            k = i - 1
            while k >= 0 and not lines[k][1].strip():
                k -= 1
            comment = None
            if k >= 0 and lines[k][1].strip().endswith("-->"):
                start = k
                while start >= 0 and "<!--" not in lines[start][1]:
                    start -= 1
                chunk = "\n".join(l for _, l in lines[start : k + 1])
                comment = chunk[chunk.index("<!--") + 4 : chunk.rindex("-->")].strip()
            found.append({"line": number, "header": _cells(line), "rows": body, "comment": comment})
            i = j
        else:
            i += 1
    return found


# ---------------------------------------------------------------- figures

def _lookup(data: dict, path: str):
    files, path = data, path.strip()
    if ":" in path:
        stem, path = path.split(":", 1)
        if stem not in files:
            raise KeyError(f"no source file named {stem!r} (sources: {sorted(files)})")
        value = files[stem]
    elif len(files) == 1:
        value = next(iter(files.values()))
    else:
        raise KeyError(f"{path!r} needs a file prefix (one of {sorted(files)})")
    for key in path.split("."):
        if isinstance(value, list) and key.isdigit() and int(key) < len(value):
            value = value[int(key)]  # a list's item by index: rows of a sweep
            continue
        if not isinstance(value, dict) or key not in value:
            raise KeyError(f"no key {key!r} on the way to {path!r}")
        value = value[key]
    return value


def evaluate(expr: str, data: dict) -> float:
    """The value of one EXPR (see the module docstring) against the loaded source files."""
    expr = expr.strip()
    if expr.startswith("-"):
        return -evaluate(expr[1:], data)
    call = re.fullmatch(r"(\w+)\((.*)\)", expr)
    if call and call.group(1) in FUNCTIONS:
        args = [[float(v) for v in _lookup(data, a)] for a in call.group(2).split(",")]
        values = args[0] if len(args) == 1 else [a - b for a, b in zip(*args, strict=True)]
        if call.group(1) in ("mean", "diff"):
            return sum(values) / len(values)
        m = sum(values) / len(values)
        return math.sqrt(sum((v - m) ** 2 for v in values) / (len(values) - 1) / len(values))
    value = _lookup(data, expr)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{expr!r} is {value!r}, not a number")
    return float(value)


def _split_outside_parentheses(exprs: str) -> list[str]:
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(exprs):
        depth += {"(": 1, ")": -1}.get(ch, 0)
        if ch == "," and depth == 0:
            parts.append(exprs[start:i].strip())
            start = i + 1
    return [*parts, exprs[start:].strip()]


def matches(written: str, value: float) -> bool:
    """Whether ``written`` (a table's number) is ``value`` at the precision it is written with."""
    percent = written.endswith("%")
    text = written.rstrip("%").replace(",", "")
    decimals = len(text.split(".")[1]) if "." in text else 0
    shown = value * 100 if percent else value
    return abs(shown - float(text)) <= 0.5 * 10 ** -decimals + 1e-9


def _numbers(cell: str) -> list[str]:
    return NUMBER.findall(CODE_SPAN.sub("", cell))


def check_figures(md: Path) -> tuple[list[str], int]:
    """Problems with the tables of ``md`` against their declared sources, and how many
    numbers were checked."""
    problems, checked = [], 0
    for table in tables(md.read_text()):
        where = f"{md.name}:{table['line']}"
        comment = table["comment"] or ""
        has_numbers = any(_numbers(c) for row in table["rows"] for c in row[1:])
        if not comment.startswith("figures:"):
            if has_numbers:
                problems.append(f"{where}: a table with figures and no '<!-- figures: FILE ... -->' above it")
            continue
        first, *mapping = [l.strip() for l in comment[len("figures:"):].strip().splitlines() if l.strip()]
        if first.startswith("none"):
            continue
        data = {}
        for name in first.split():
            source = (md.parent / name).resolve()
            if not source.is_file():
                problems.append(f"{where}: source {name} does not exist")
                continue
            data[source.stem] = json.loads(source.read_text())
        if len(data) != len(first.split()):
            continue
        mapped: set[tuple[int, int]] = set()
        for line in mapping:
            try:
                selector, exprs = line.split(" = ", 1)
                row_key, column = (s.strip() for s in selector.split(" | ", 1))
            except ValueError:
                problems.append(f"{where}: cannot read mapping line {line!r} (ROW | COLUMN = EXPR, ...)")
                continue
            headers = [_plain(h) for h in table["header"]]
            columns = [c for c, h in enumerate(headers) if h == column] or [c for c, h in enumerate(headers) if h.startswith(column)]
            rows = [r for r, row in enumerate(table["rows"]) if row_key == "*" or _plain(row[0]).startswith(row_key)]
            if len(columns) != 1 or not rows or (row_key != "*" and len(rows) != 1):
                problems.append(f"{where}: {line!r} selects {len(rows)} rows and {len(columns)} columns")
                continue
            for r in rows:
                cell = table["rows"][r][columns[0]]
                mapped.add((r, columns[0]))
                if exprs.strip() == "text":
                    continue
                label = _plain(table["rows"][r][0])
                wanted = [e.replace("{row}", label) for e in _split_outside_parentheses(exprs)]
                written = _numbers(cell)
                if len(written) != len(wanted):
                    problems.append(f"{where}: row {label!r}, column {column!r}: {len(written)} numbers "
                                    f"{written} for {len(wanted)} expressions")
                    continue
                for number, expr in zip(written, wanted):
                    try:
                        value = evaluate(expr, data)
                    except (KeyError, ValueError, TypeError) as e:
                        problems.append(f"{where}: row {label!r}, column {column!r}: {expr}: {e}")
                        continue
                    checked += 1
                    if not matches(number, value):
                        problems.append(f"{where}: row {label!r}, column {column!r}: {number} written, "
                                        f"{expr} = {value!r} in the source")
        for r, row in enumerate(table["rows"]):
            for c, cell in enumerate(row[1:], 1):
                if _numbers(cell) and (r, c) not in mapped:
                    problems.append(f"{where}: row {_plain(row[0])!r}, column {_plain(table['header'][c])!r}: "
                                    f"figures {_numbers(cell)} not mapped to the source")
    return problems, checked


# ---------------------------------------------------------------- links

def _slug(heading: str) -> str:
    """GitHub's anchor for a heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower().replace("`", ""))
    return text.replace(" ", "-")


def anchors(md: Path) -> set[str]:
    seen: dict[str, int] = {}
    out = set()
    for _, line in _prose_lines(md.read_text()):
        heading = re.match(r"#{1,6}\s+(.*)", line)
        if heading:
            slug = _slug(heading.group(1))
            out.add(slug if slug not in seen else f"{slug}-{seen[slug]}")
            seen[slug] = seen.get(slug, 0) + 1
    return out


def check_links(md: Path) -> list[str]:
    """Relative links (and images) of ``md`` whose file, or heading anchor, does not exist."""
    problems = []
    for number, line in _prose_lines(md.read_text()):
        for target in re.findall(r"\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)", CODE_SPAN.sub("", line)):
            if re.match(r"[a-z][a-z0-9+.-]*:", target):
                continue  # http:, https:, mailto:
            path, _, anchor = target.partition("#")
            file = (md.parent / path).resolve() if path else md
            if not file.exists():
                problems.append(f"{md.name}:{number}: {target} -> no such file")
            elif anchor and file.suffix == ".md" and anchor not in anchors(file):
                problems.append(f"{md.name}:{number}: {target} -> no heading #{anchor} in {file.name}")
    return problems


# ---------------------------------------------------------------- the repository's documents

@pytest.mark.parametrize("md", DOCS, ids=_id)
def test_table_figures_equal_their_json_sources(md):
    problems, _ = check_figures(md)
    assert not problems, "\n".join(problems)


def test_the_users_pages_quote_checked_figures():
    counts = {_id(md): check_figures(md)[1] for md in DOCS}
    for page in ("README.md", "docs/results.md", "docs/ablations.md", "magicvideo/weights/default/MODEL_CARD.md"):
        assert counts.get(page, 0) >= 5, f"{page}: {counts.get(page, 0)} figures checked against a source"


@pytest.mark.parametrize("md", DOCS, ids=_id)
def test_relative_links_point_to_existing_files(md):
    problems = check_links(md)
    assert not problems, "\n".join(problems)


# ---------------------------------------------------------------- the checks can fail

TABLE = """# Results

<!-- figures: metrics.json
* | color = {row}.color_acc
* | gap = mean({row}.clips), sem({row}.clips)
b | versus a = diff(b.clips, a.clips), diff_sem(b.clips, a.clips)
a | versus a = text
-->

| variant | color | gap | versus a |
| --- | --- | --- | --- |
| `a` | 87.5% | +0.2500 +- 0.1443 | 1 |
| `b` | 100% | -0.5000 +- 0.2887 | -0.7500 +- 0.2500 |
"""
SOURCE = {"a": {"color_acc": 0.875, "clips": [0.0, 0.25, 0.5]},
          "b": {"color_acc": 1.0, "clips": [-0.5, -1.0, 0.0]}}


def _write(tmp_path: Path, table: str, source: dict) -> Path:
    (tmp_path / "metrics.json").write_text(json.dumps(source))
    md = tmp_path / "page.md"
    md.write_text(table)
    return md


def test_a_table_that_agrees_with_its_source_passes(tmp_path):
    problems, checked = check_figures(_write(tmp_path, TABLE, SOURCE))
    assert problems == [] and checked == 8


@pytest.mark.parametrize("change", ["json", "table", "rounding", "key"])
def test_a_stale_figure_is_caught(tmp_path, change):
    table, source = TABLE, json.loads(json.dumps(SOURCE))
    if change == "json":
        source["b"]["clips"][0] = -0.4  # a re-run moved the figure, the table was not updated
    elif change == "table":
        table = table.replace("87.5%", "88.5%")
    elif change == "rounding":
        source["a"]["color_acc"] = 0.8756  # 87.6% at the table's precision
    else:
        del source["a"]["color_acc"]
    problems, _ = check_figures(_write(tmp_path, table, source))
    assert problems, f"a {change} change went unnoticed"


def test_an_unmapped_or_unsourced_figure_is_caught(tmp_path):
    unmapped = TABLE.replace("a | versus a = text\n", "")
    assert any("not mapped" in p for p in check_figures(_write(tmp_path, unmapped, SOURCE))[0])
    unsourced = TABLE[TABLE.index("| variant"):]
    assert any("no '<!-- figures" in p for p in check_figures(_write(tmp_path, unsourced, SOURCE))[0])
    excused = "<!-- figures: none (settings, not measurements) -->\n\n" + unsourced
    assert check_figures(_write(tmp_path, excused, SOURCE))[0] == []


def test_a_broken_link_is_caught(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.md").write_text("# Where each idea lives\n")
    md = tmp_path / "README.md"
    md.write_text("[ok](docs/a.md) [anchor](docs/a.md#where-each-idea-lives) [web](https://example.org)\n"
                  "`[code](not/a/link.md)`\n```\n[fenced](nope.md)\n```\n")
    assert check_links(md) == []
    md.write_text("[gone](docs/b.md) [anchor](docs/a.md#nowhere)\n")
    assert len(check_links(md)) == 2

"""The one table writer: a title, a header, rows of strings, a note; as Markdown, LaTeX (booktabs)
or aligned plain text. Used by the paper's tables, the sweep summary and ``taugate bench``.

Small on purpose: tabulate would do the Markdown and text, but not the booktabs LaTeX with the
escapes the paper's tables need, and it would be a dependency for thirty lines.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field


@dataclass
class Table:
    """Rows of already formatted cells; the first column is left-aligned, the others right."""

    title: str  # printed above the table (bold in Markdown, the caption in LaTeX)
    header: list[str]  # column names
    rows: list[list[str]] = field(default_factory=list)  # one list of cells per row
    note: str = ""  # printed below the table

    def __post_init__(self) -> None:
        for i, r in enumerate(self.rows):
            if len(r) != len(self.header):
                raise ValueError(f"table {self.title!r}: row {i} has {len(r)} cells, "
                                 f"the header {len(self.header)}")  # fmt: skip

    def markdown(self) -> str:
        lines = [f"**{self.title}**", ""] if self.title else []
        lines.append("| " + " | ".join(self.header) + " |")
        lines.append("|" + "|".join(["---"] + ["---:"] * (len(self.header) - 1)) + "|")
        lines += ["| " + " | ".join(r) + " |" for r in self.rows]
        if self.note:
            lines += ["", self.note]
        return "\n".join(lines) + "\n"

    def text(self) -> str:
        """Aligned columns for a terminal."""
        cells = [self.header, *self.rows]
        widths = [max(len(r[c]) for r in cells) for c in range(len(self.header))]

        def line(r: list[str]) -> str:
            return "  ".join(v.ljust(w) if c == 0 else v.rjust(w)
                             for c, (v, w) in enumerate(zip(r, widths))).rstrip()  # fmt: skip

        out = ([self.title] if self.title else []) + [line(r) for r in cells]
        return "\n".join(out + ([self.note] if self.note else [])) + "\n"

    def latex(self) -> str:
        def esc(s: str) -> str:
            s = s.replace("\\", r"\textbackslash{}")
            for a, b in (("&", r"\&"), ("%", r"\%"), ("_", r"\_"), ("#", r"\#")):
                s = s.replace(a, b)
            return s.replace("±", r"$\pm$").replace("°", r"$^\circ$").replace("–", "--")

        cols = "l" + "r" * (len(self.header) - 1)
        out = ["\\begin{table}[t]", "\\centering", f"\\caption{{{esc(self.title)}}}",
               f"\\begin{{tabular}}{{{cols}}}", "\\toprule",
               " & ".join(esc(h) for h in self.header) + " \\\\", "\\midrule"]  # fmt: skip
        out += [" & ".join(esc(c) for c in r) + " \\\\" for r in self.rows]
        out += ["\\bottomrule", "\\end{tabular}"]
        if self.note:
            out.append(f"\\\\[2pt]{{\\footnotesize {esc(self.note)}}}")
        out.append("\\end{table}")
        return "\n".join(out) + "\n"


def to_csv(rows: list[dict], first: list[str] | None = None) -> str:
    """Rows as CSV text; columns: ``first`` (those present) then every other key in order seen."""
    cols: list[str] = [c for c in (first or []) if any(c in r for r in rows)]
    for r in rows:
        cols += [k for k in r if k not in cols]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=cols, lineterminator="\n", restval="")
    w.writeheader()
    for r in rows:
        w.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in r.items()})
    return buf.getvalue()

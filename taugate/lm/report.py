"""What ``taugate bench-lm`` prints: the paths per batch, and the caps with the share reached."""

from __future__ import annotations

import math

from taugate.tables import Table


def _f(v: float, spec: str, unit: str = "") -> str:
    return "-" if v is None or not math.isfinite(v) else f"{v:{spec}}{unit}"


def lm_tables(rows: list[dict], info: dict) -> tuple[Table, Table]:
    """(per path and batch: latency, tokens/s, speedup; per batch: shares, caps, reached)."""
    paths = Table("", ["path", "batch", "median ms", "tokens/s", "x torch"],
                  [[r["path"], str(r["batch"]), _f(r["median_ms"], ".3f"), _f(r["tokens_per_s"], ".0f"),
                    _f(r["speedup_vs_torch"], ".2f", "x")] for r in rows])  # fmt: skip
    header = ["batch", "active", "FFN share of decode", "FFN work cap", "FFN speedup", "% of FFN cap",
              "kernel vs dense kernel", "% of cap (kernel)", "end-to-end cap", "compiled vs torch",
              "% of e2e cap"]  # fmt: skip
    body = []
    for batch, b in info["batches"].items():
        act = [a for a in b["active_share"] if math.isfinite(a)]
        body.append([str(batch), _f(100 * sum(act) / len(act), ".1f", " %") if act else "-",
                     _f(100 * b["ffn_share"], ".1f", " %"), _f(b["ffn_work_cap"], ".2f"),
                     _f(b["ffn_speedup"], ".2f", "x"), _f(100 * b["ffn_cap_share"], ".0f", " %"),
                     _f(b["kernel_speedup"], ".2f", "x"), _f(100 * b["kernel_cap_share"], ".0f", " %"),
                     _f(b["e2e_cap"], ".2f"), f"**{_f(b['speedup'], '.2f', 'x')}**",
                     _f(100 * b["e2e_cap_share"], ".0f", " %")])  # fmt: skip
    return paths, Table("", header, body)


def print_lm_bench(what: str, rows: list[dict], info: dict) -> None:
    paths, caps = lm_tables(rows, info)
    kept = ", ".join(f"{b['units_kept']}/{b['units_original']}" for b in info["compile"]["blocks"])
    print(f"model: {what}; FFN units kept per block {kept}")
    print(paths.text())
    print(caps.markdown())
    for batch, b in info["batches"].items():
        if b.get("reference") != "hard-gated":
            print(f"note: batch {batch}: units that compile dropped (they never fired on the "
                  f"calibration text) fire on this prompt: the compiled logits differ from the "
                  f"hard-gated model's by up to {b['max_abs_diff_vs_hard']:.3g}, and equal the "
                  "compiled arrays run in torch math")  # fmt: skip

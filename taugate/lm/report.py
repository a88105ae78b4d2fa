"""What ``taugate bench-lm`` prints: the paths per batch, and the caps with the share reached; with
``--predictor``, the predicted path's rows, every one labelled approximate."""

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
    if "predicted" in info:
        print_predicted(info["predicted"])
    for batch, b in info["batches"].items():
        if b.get("reference") != "hard-gated":
            print(f"note: batch {batch}: units that compile dropped (they never fired on the "
                  f"calibration text) fire on this prompt: the compiled logits differ from the "
                  f"hard-gated model's by up to {b['max_abs_diff_vs_hard']:.3g}, and equal the "
                  "compiled arrays run in torch math")  # fmt: skip


def predicted_tables(pred: dict) -> tuple[Table, Table]:
    """(per margin and batch: FFN kernels exact vs predicted, recall, computed share, decode
    tokens/s; per margin: quality on held-out text and recall on held-out calibration rows)."""
    speed = Table("", ["path", "rank", "margin", "batch", "kernel exact ms", "kernel predicted ms",
                       "kernel speedup", "recall", "computed", "active", "decode tok/s exact",
                       "decode tok/s predicted", "decode speedup"],
                  [[r["path"], str(r["rank"]), f"{r['margin']:g}", str(r["batch"]),
                    _f(r["kernel_exact_ms"], ".3f"), _f(r["kernel_predicted_ms"], ".3f"),
                    _f(r["kernel_speedup"], ".2f", "x"), _f(100 * r["recall"], ".1f", " %"),
                    _f(100 * r["computed_share"], ".1f", " %"), _f(100 * r["active_share"], ".1f", " %"),
                    _f(r["decode_exact_tokens_per_s"], ".1f"), _f(r["decode_predicted_tokens_per_s"], ".1f"),
                    _f(r["decode_speedup"], ".2f", "x")] for r in pred["rows"]])  # fmt: skip
    fit = pred["fit"]["blocks"]
    body = []
    for q in pred["quality"]:  # held: this margin on the held-out calibration rows
        held = [next(s for s in b["scores"] if s["margin"] == q["margin"]) for b in fit]
        rec = sum(s["recall"] * s["active_share"] for s in held) / max(1e-30, sum(s["active_share"] for s in held))  # fmt: skip
        body.append([q["path"], str(q["rank"]), f"{q['margin']:g}", q["metric"],
                     _f(q.get("bpb_exact"), ".4f"), _f(q.get("bpb_predicted"), ".4f"),
                _f(q.get("bpb_change"), "+.4f"),
                     _f(100 * q["top1_agreement"], ".2f", " %"), _f(q["max_abs_logit_diff"], ".3g"),
                     _f(100 * q["recall"], ".1f", " %"), _f(100 * q["computed_share"], ".1f", " %"),
                     _f(100 * rec, ".1f", " %")])  # fmt: skip
    header = ["path", "rank", "margin", "judged by", "bpb exact", "bpb predicted", "bpb change",
              "top-1 agreement", "max |logit diff|", "recall (text)", "computed (text)",
              "recall (held-out calib)"]  # fmt: skip
    return speed, Table("", header, body)


def print_predicted(pred: dict) -> None:
    speed, quality = predicted_tables(pred)
    print("predicted gates (approximate: units predicted shut are skipped even if they would fire)")
    print(speed.text())
    print(quality.markdown())
    if pred["random_text"]:
        print(
            "note: random model on random tokens: bits per byte mean nothing here; judge the "
            "approximation by top-1 agreement and logit difference against the exact compiled model"
        )

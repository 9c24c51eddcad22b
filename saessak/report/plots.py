"""PNG plots of a run's training curves, read defensively from RUN/<stage>/metrics.jsonl.

Stages log different keys and may add new ones; rather than a fixed list, every numeric key is
sorted into a panel by its name (loss, bits per byte, reward, accuracy). Keys that fit no panel
(learning rate, timings) are left out. A missing or empty metrics file yields no plot.
"""

from __future__ import annotations

import math
from pathlib import Path

from saessak.io import read_jsonl

# (panel, y-axis label, predicate on the key name); first match wins.
PANELS = [
    ("bpb", "bits per byte", lambda k: "bpb" in k),
    ("reward", "reward", lambda k: "reward" in k and "std" not in k and "frac" not in k),
    ("accuracy", "accuracy", lambda k: k.startswith(("accuracy", "acc/", "acc_")) or "/accuracy" in k),
    ("loss", "loss", lambda k: k.endswith("loss") or k == "loss"),
]
X_KEYS = ("step", "iter", "iteration")


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def series_by_panel(records: list[dict]) -> dict[str, dict[str, tuple[list[float], list[float]]]]:
    """{panel: {key: (xs, ys)}} from metric records; x is the step when logged, else the line number."""
    panels: dict[str, dict[str, tuple[list[float], list[float]]]] = {}
    for i, rec in enumerate(records):
        x = next((rec[k] for k in X_KEYS if _is_number(rec.get(k))), i)
        for key, value in _flatten(rec).items():
            if key in X_KEYS or not _is_number(value):
                continue
            panel = next((name for name, _, match in PANELS if match(key.lower())), None)
            if panel is None:
                continue
            xs, ys = panels.setdefault(panel, {}).setdefault(key, ([], []))
            xs.append(float(x))
            ys.append(float(value))
    return panels


def _flatten(rec: dict, prefix: str = "") -> dict:
    """Nested dicts ({"accuracy": {"josa": 0.5}}) become "accuracy/josa" keys."""
    out = {}
    for k, v in rec.items():
        name = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, name + "/"))
        else:
            out[name] = v
    return out


def plot_stage(metrics_path: Path, stage: str, out_dir: Path) -> list[Path]:
    """One PNG per panel with data; returns the files written."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from saessak.io import atomic_path

    panels = series_by_panel(read_jsonl(metrics_path))
    written = []
    for panel, label, _ in PANELS:
        series = panels.get(panel)
        if not series:
            continue
        fig, ax = plt.subplots(figsize=(6.4, 3.6), dpi=100)
        for key, (xs, ys) in sorted(series.items()):
            ax.plot(xs, ys, label=key, marker="o" if len(xs) < 20 else None, markersize=3, linewidth=1.2)
        ax.set_xlabel("step")
        ax.set_ylabel(label)
        ax.set_title(f"{stage}: {label}")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7, loc="best")
        fig.tight_layout()
        path = out_dir / f"{stage}_{panel}.png"
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format="png")
        plt.close(fig)
        written.append(path)
    return written

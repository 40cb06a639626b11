"""One matplotlib style for every figure: Agg backend, a fixed colour per method, fonts and sizes.

On-policy GRPO (s = 0) is always black and dashed, so it reads as the reference in every panel;
every other series is coloured by its method and drawn solid.
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402

#: colour per loss (colour-blind friendly: Okabe–Ito plus two)
METHOD_COLORS = {
    "grpo": "#D55E00",
    "grpo_notr": "#CC79A7",
    "m2po": "#0072B2",
    "m2po_released": "#56B4E9",
    "gspo": "#E69F00",
    "cispo": "#009E73",
    "decoupled_ppo": "#8C564B",
    "topr": "#7F7F7F",
    "gppo": "#BCBD22",
}
ON_POLICY_COLOR = "#000000"
METHOD_LABELS = {
    "grpo": "GRPO",
    "grpo_notr": "GRPO no-TR",
    "m2po": "M2PO",
    "m2po_released": "M2PO (released)",
    "gspo": "GSPO",
    "cispo": "CISPO",
    "decoupled_ppo": "AReaL (decoupled PPO)",
    "topr": "TOPR",
    "gppo": "GPPO",
}
#: colours for one line per model (smallest first), distinct from the method colours' meaning
MODEL_COLORS = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9")
PANEL = (4.6, 3.3)  #: size of one panel, inches
STALENESS_CMAP = "viridis"

RC = {
    "figure.dpi": 110,
    "savefig.dpi": 140,
    "savefig.bbox": "tight",
    "font.size": 9,
    "axes.titlesize": 9.5,
    "axes.labelsize": 9,
    "legend.fontsize": 7.5,
    "xtick.labelsize": 8,
    "ytick.labelsize": 8,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "lines.linewidth": 1.6,
    "legend.frameon": True,
    "legend.framealpha": 0.75,
    "legend.edgecolor": "none",
}


def apply() -> None:
    """Install the shared rcParams."""
    plt.rcParams.update(RC)


def label(method: str, staleness: int | None = None) -> str:
    """``GRPO s=32``."""
    name = METHOD_LABELS.get(method, method)
    return name if staleness is None else f"{name} s={staleness}"


def series_style(method: str, staleness: int) -> dict[str, object]:
    """Colour, line style and label of a (method, staleness) series."""
    if method == "grpo" and staleness == 0:
        return {"color": ON_POLICY_COLOR, "ls": "--", "label": label(method, staleness)}
    return {"color": METHOD_COLORS.get(method, "#333333"), "ls": "-", "label": label(method, staleness)}


def model_color(i: int) -> str:
    """Colour of the i-th model (smallest first) where a figure draws one line per model."""
    return MODEL_COLORS[i % len(MODEL_COLORS)]


def staleness_color(staleness: int, levels: list[int]) -> tuple[float, float, float, float]:
    """A colour of the sequential map for a staleness among the swept ``levels`` (darker = older data)."""
    cmap = plt.get_cmap(STALENESS_CMAP)
    i = levels.index(staleness) if staleness in levels else 0
    return cmap(0.85 - 0.75 * i / max(len(levels) - 1, 1))


def sweep_style(method: str, staleness: int, levels: list[int]) -> dict[str, object]:
    """Style of one staleness of a sweep: s = 0 is the black dashed reference, the others a sequential map."""
    if staleness == 0:
        return {"color": ON_POLICY_COLOR, "ls": "--", "label": label(method, 0)}
    stale = [v for v in levels if v > 0]
    return {"color": staleness_color(staleness, stale), "ls": "-", "label": label(method, staleness)}

"""Reports for runs: terminal summaries, Markdown/HTML pages, heatmaps, loss curves and comparisons."""

from coin.report.plots import abbreviate, comparison_bar, forgetting_curves, heatmap, loss_curves_figure
from coin.report.render import (
    load_matrix_json,
    load_run,
    summary_table,
    write_comparison,
    write_report,
)

__all__ = [
    "abbreviate",
    "comparison_bar",
    "forgetting_curves",
    "heatmap",
    "loss_curves_figure",
    "load_matrix_json",
    "load_run",
    "summary_table",
    "write_comparison",
    "write_report",
]

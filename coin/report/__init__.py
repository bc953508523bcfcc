"""Reports for runs: terminal summaries, Markdown/HTML pages, heatmaps, loss curves and comparisons.

One module per job: ``load`` reads and checks a run folder, ``run_report`` writes one run's
report (and the terminal summary), ``judge_blocks`` adds what ``coin judge`` found,
``compare`` writes a comparison of runs; ``document`` renders blocks to Markdown and HTML,
``format`` writes numbers and a run's setup, ``plots`` draws the figures.
"""

from coin.report.compare import write_comparison
from coin.report.load import load_matrix_json, load_run
from coin.report.plots import abbreviate, comparison_bar, forgetting_curves, heatmap, loss_curves_figure
from coin.report.run_report import summary_table, write_report

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

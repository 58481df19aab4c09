"""One machine-readable line per measured figure, collected by run_all.py into one table.

    BENCH<TAB>figure<TAB>value<TAB>baseline<TAB>ratio<TAB>goal<TAB>met
"""

from __future__ import annotations


def bench_row(figure: str, value: str, baseline: str, ratio: float | None, goal: str, met: bool | None) -> None:
    ratio_text = f"{ratio:.3f}x" if ratio is not None else "-"
    met_text = {True: "yes", False: "NO", None: "-"}[met]
    print("\t".join(["BENCH", figure, value, baseline, ratio_text, goal, met_text]), flush=True)

"""Detection power as statistics: Wilson intervals, Kaplan-Meier curves, RMST, comparisons.

A trial is a time to detect, or a miss; a miss is *censored* at the trial's budget (all we
know is that detection would take longer). So the time-to-detect distribution is estimated
with Kaplan-Meier (lifelines), which uses the misses properly instead of dropping them:

* detection rate with a 95% Wilson score interval (right at 0 and n, unlike the normal
  approximation);
* the Kaplan-Meier median time to detect (None when the curve never falls to 0.5 within
  the budget) and the restricted mean survival time up to the budget (RMST: the mean time
  to detect, counting a miss as the whole budget);
* one figure with every entry's curve (probability that the bug is still undetected after t
  seconds) and its 95% band;
* two runs of one entry compared with a log-rank test (lifelines) and a Mann-Whitney U test
  (scipy) over the censored times (a miss counts as the budget, a tie with other misses).

Pure functions of (times, detected) lists: no campaign is run here.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display, wherever a campaign runs
import matplotlib.pyplot as plt  # noqa: E402  (the backend is chosen first)
from lifelines import KaplanMeierFitter  # noqa: E402
from lifelines.statistics import logrank_test  # noqa: E402
from lifelines.utils import restricted_mean_survival_time  # noqa: E402
from scipy.stats import mannwhitneyu  # noqa: E402

__all__ = ["Comparison", "Detections", "compare", "plot_survival", "wilson"]

Z95 = 1.959963984540054


def wilson(hits: int, n: int, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval of a proportion ``hits / n`` (95% by default)."""
    if n <= 0 or not 0 <= hits <= n:
        raise ValueError(f"wilson: need 0 <= hits <= n and n > 0, got {hits}/{n}")
    p = hits / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


@dataclasses.dataclass(frozen=True)
class Detections:
    """One entry's trials: the time to detect of each (None: missed within ``budget``)."""

    label: str
    times: tuple[float | None, ...]
    budget: float

    @classmethod
    def of(cls, label: str, times: Sequence[float | None], budget: float) -> Detections:
        if not times:
            raise ValueError(f"{label}: no trials")
        return cls(label, tuple(times), float(budget))

    def censored(self, budget: float | None = None) -> tuple[list[float], list[bool]]:
        """(durations, observed): a miss, or a detection after ``budget``, is censored at
        ``budget`` (default this run's)."""
        b = self.budget if budget is None else budget
        durations, observed = [], []
        for t in self.times:
            hit = t is not None and t <= b
            durations.append(min(float(t), b) if hit and t is not None else b)
            observed.append(hit)
        return durations, observed

    @property
    def hits(self) -> int:
        return sum(self.censored()[1])

    def rate(self) -> tuple[float, float, float]:
        """(detection rate, Wilson 95% low, high)."""
        n = len(self.times)
        return (self.hits / n, *wilson(self.hits, n))

    def km(self) -> KaplanMeierFitter:
        durations, observed = self.censored()
        return KaplanMeierFitter(label=self.label).fit(durations, observed)

    def median(self) -> float | None:
        """Kaplan-Meier median time to detect; None when not reached within the budget."""
        m = float(self.km().median_survival_time_)
        return None if math.isinf(m) else m

    def rmst(self) -> float:
        """Restricted mean survival time up to the budget: the mean seconds to detect,
        a miss counting as the whole budget."""
        return float(restricted_mean_survival_time(self.km(), t=self.budget))

    def stats(self) -> dict[str, float | int | None]:
        rate, lo, hi = self.rate()
        return {"trials": len(self.times), "hits": self.hits, "rate": rate,
                "rate_lo95": lo, "rate_hi95": hi, "km_median_s": self.median(),
                "rmst_s": self.rmst(), "budget": self.budget}


@dataclasses.dataclass(frozen=True)
class Comparison:
    """Run A against run B of one entry (both censored at the smaller budget)."""

    label: str
    a: dict[str, float | int | None]
    b: dict[str, float | int | None]
    logrank_p: float
    mannwhitney_p: float

    def differs(self, alpha: float = 0.05) -> bool:
        return self.logrank_p < alpha


def compare(a: Detections, b: Detections) -> Comparison:
    """Log-rank and two-sided Mann-Whitney U tests of two runs' times to detect."""
    budget = min(a.budget, b.budget)
    da, ea = a.censored(budget)
    db, eb = b.censored(budget)
    lr = logrank_test(da, db, event_observed_A=ea, event_observed_B=eb)
    p_lr = float(lr.p_value)
    if len(set(da) | set(db)) == 1:  # every value tied: no evidence either way
        p_mw = 1.0
    else:
        p_mw = float(mannwhitneyu(da, db, alternative="two-sided").pvalue)
    ca = dataclasses.replace(a, budget=budget)
    cb = dataclasses.replace(b, budget=budget)
    return Comparison(a.label, ca.stats(), cb.stats(), 1.0 if math.isnan(p_lr) else p_lr, p_mw)


def plot_survival(runs: Sequence[Detections], path: Path, title: str) -> Path:
    """Every run's Kaplan-Meier curve (share of trials still undetected at t) with its 95%
    band, in one figure; written to ``path``."""
    fig, ax = plt.subplots(figsize=(8, 5))
    with warnings.catch_warnings():  # lifelines warns about constant or all-censored data
        warnings.simplefilter("ignore")
        # tab20 pairs a dark and a light shade of each hue: the dark ones first, so that up
        # to ten curves differ in hue, and a dashed line for the light ones beyond
        palette = plt.get_cmap("tab20").colors
        for i, d in enumerate(runs):
            d.km().plot_survival_function(ax=ax, ci_show=True, color=palette[(2 * i) % 20
                                          + (i // 10) % 2], linestyle="--" if i >= 10 else "-")
    budget = max(d.budget for d in runs)
    ax.set_xscale("symlog", linthresh=1.0)  # detections span 0.2 s to the whole budget
    ax.set_xlim(0, budget)
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("seconds since the campaign started (log scale above 1 s)")
    ax.set_ylabel("P(not yet detected)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small", loc="upper right")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path

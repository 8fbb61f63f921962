"""Calibrating the AXA-NK02 design: the grids behind docs/calibration.md, "AXA-NK02: the calibrated design".

    python scripts/calibrate_axa_nk02.py --seed 1 --out calibration_axa_nk02 [--n-trials 1000] [--quick]

Runs, on the shipped AXA-NK02 scenarios with the KN5601 co-data, the lupusbayes design and BOIN (for
the overdosing yardstick) at the spec as it was before calibration (``BEFORE_CALIBRATION``: the
shipped spec carries the calibrated values since 2026-12-06) and over five grids
(``lupusbayes.calibration``):

1. the slope prior's SD (``model.blrm.prior.sd_log_b``) x EWOC's limit;
2. EWOC's limit x the final selection's DLT penalty (``decision.efficacy.dlt_penalty``);
3. EWOC's limit just below 0.35 x the penalty;
4. and 5. the intercept prior's SD (``model.blrm.prior.sd_log_a``) x EWOC's limit, penalty 1.

Each grid's folder holds what ``lupusbayes calibrate`` writes; the chunks are kept in ``OUT/chunks``
(a rerun resumes), the co-data fits in the fit cache. Prints, per setting, the lupusbayes design's
correct selection and patients above the true MTD per scenario, against the issue's targets: the top
dose selected in >= 60% of trials when it is safe and the only efficacious one; no dose selected in
>= 60% when every dose is toxic; patients above the true MTD no more than under BOIN. ``--quick``:
100 trials, the first grid only (a smoke test of a few minutes).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import lupusbayes as lb
from lupusbayes.calibration import CORRECT_SELECTION, calibrate, setting_text
from lupusbayes.fitting.fitcache import FitCache
from lupusbayes.simulation import load_scenarios

EWOC, PENALTY = "decision.max_overdose_probability", "decision.efficacy.dlt_penalty"
GRIDS = {
    "grid1": {"model.blrm.prior.sd_log_b": [0.5, 0.8, 1.2], EWOC: [0.25, 0.3, 0.35]},
    "grid2": {EWOC: [0.3, 0.35, 0.4], PENALTY: [0.5, 1, 2]},
    "grid3": {EWOC: [0.31, 0.32, 0.33], PENALTY: [0.5, 1]},
    "grid4": {"model.blrm.prior.sd_log_a": [1.2, 1.6, 2.0], EWOC: [0.33, 0.35], PENALTY: [1]},
    "grid5": {"model.blrm.prior.sd_log_a": [1.3, 1.4, 1.5], EWOC: [0.35, 0.4], PENALTY: [1]},
}
#: The three calibrated keys as they were before calibration: the grids start from this spec.
BEFORE_CALIBRATION = {"model.blrm.prior.sd_log_a": 1.2, EWOC: 0.25, PENALTY: 2.0}
SAFE, MIDDLE, TOXIC = "safe; efficacious only at the top", "target in the middle", "all toxic"


def _report(result) -> None:
    summary = result.summary[result.summary["level"] == 0].set_index(["setting", "design", "scenario", "quantity"])
    boin = {scenario: float(summary.loc[("current", "boin", scenario, "patients above the true MTD"), "value"])
            for scenario in result.scenarios.names()}
    print(f"  {'setting':62s} {'safe: top':>10s} {'middle':>8s} {'toxic: none':>12s}   patients > MTD "
          f"(middle, toxic; BOIN {boin[MIDDLE]:.2f}, {boin[TOXIC]:.2f})")
    for setting in result.settings:
        def value(scenario, quantity):
            return float(summary.loc[(setting.label, "lupusbayes", scenario, quantity), "value"])

        targets = (value(SAFE, CORRECT_SELECTION) >= 0.6 and value(TOXIC, CORRECT_SELECTION) >= 0.6
                   and all(value(s, "patients above the true MTD") <= boin[s] for s in (MIDDLE, TOXIC)))
        print(f"  {setting.name:>3s} {setting.label:58s} {100 * value(SAFE, CORRECT_SELECTION):9.1f}% "
              f"{100 * value(MIDDLE, CORRECT_SELECTION):7.1f}% {100 * value(TOXIC, CORRECT_SELECTION):11.1f}%   "
              f"{value(MIDDLE, 'patients above the true MTD'):5.2f} {value(TOXIC, 'patients above the true MTD'):5.2f}"
              f"{'   meets the targets' if targets else ''}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--n-trials", type=int, default=1000)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    n_trials = 100 if args.quick else args.n_trials
    spec = lb.parse_spec(setting_text(lb.load_spec("axa_nk02"), BEFORE_CALIBRATION),
                         source="axa_nk02 (before calibration)")
    scenarios = load_scenarios("axa_nk02", spec)
    codata = [lb.load_kn5601()]
    args.out.mkdir(parents=True, exist_ok=True)
    for name, vary in list(GRIDS.items())[:1 if args.quick else None]:
        started = time.perf_counter()
        result = calibrate(spec, scenarios, vary, n_trials=n_trials, seed=args.seed, designs=("lupusbayes", "boin"),
                           codata=codata, cache=FitCache(), checkpoint=args.out / "chunks")
        result.save(args.out / name, overwrite=True, command=f"scripts/calibrate_axa_nk02.py --seed {args.seed}")
        print(f"{name}: {', '.join(vary)} ({n_trials} trials, seed {args.seed}, {time.perf_counter() - started:.0f} s)")
        _report(result)


if __name__ == "__main__":
    main()

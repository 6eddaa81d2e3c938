"""The benchmark's own arithmetic: profile shares, percentiles, and how runs become a section's entry."""

from __future__ import annotations

import os
from pathlib import Path

from bench import Options
from bench.e2e import Run, summary
from bench.harness import children, owned_shares, percentile, top_functions
from bench.run import SECTIONS, merge


def test_top_functions_counts_each_frame_once_per_stack(tmp_path: Path) -> None:
    folded = tmp_path / "api.collapsed"
    folded.write_text("main (a.py:1);submit (b.py:2);execute (c.py:3) 6\n"
                      "main (a.py:1);submit (b.py:2);submit (b.py:2) 2\n"
                      "main (a.py:1);idle (d.py:4) 2\n", encoding="utf-8")
    shares = dict(top_functions(folded))
    assert shares["main (a.py:1)"] == 1.0
    assert shares["submit (b.py:2)"] == 0.8  # recursion is not counted twice
    assert shares["execute (c.py:3)"] == 0.6
    assert shares["idle (d.py:4)"] == 0.2


def test_percentiles_of_one_and_of_many() -> None:
    assert percentile([7.0], 99) == 7.0
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == 50.5
    assert percentile(values, 99) == 99.0


def test_a_sections_entry_sums_loss_over_runs_and_takes_medians() -> None:
    runs = [Run(100.0, 10.0, 50.0, accepted=3000, load_s=30.0, lost=0, duplicated=0, redelivered=1,
                cpu_share={"api": 0.4, "simulator": 0.1}),
            Run(120.0, 12.0, 60.0, accepted=3600, load_s=30.0, lost=2, duplicated=1, redelivered=0,
                cpu_share={"api": 0.5, "simulator": 0.1}),
            Run(80.0, 8.0, 40.0, accepted=2400, load_s=30.0, lost=0, duplicated=0, redelivered=0,
                cpu_share={"api": 0.3, "simulator": 0.2})]
    entry = summary(runs)
    assert entry["cases_per_s"] == {"median": 100.0, "min": 80.0, "max": 120.0, "runs": 3, "unit": "cases/s"}
    assert entry["accepted_per_s"]["median"] == 100.0
    assert (entry["lost"], entry["duplicated"], entry["redelivered"]) == (2, 1, 1)
    assert "busiest api at 30%" in entry["limited_by"]


def test_the_report_has_every_section_the_issue_names_and_keeps_others_from_this_machine() -> None:
    assert {"e2e_embedded", "e2e_postgres_rabbitmq", "sync_query", "mapping", "replay", "startup",
            "scaling"} <= set(SECTIONS)
    fresh = {"startup": {"ready_s": 1}}
    first = merge({}, {"mapping": {"ratio": 1}}, Options(quick=True))
    second = merge(first, fresh, Options(quick=True))
    assert second["mapping"] == {"ratio": 1} and second["startup"] == {"ready_s": 1}
    other_machine = {**first, "machine": {"cpu_count": -1}}
    assert "mapping" not in merge(other_machine, fresh, Options(quick=True))


def test_owned_shares_give_each_sample_to_the_innermost_frame_of_our_own_code(tmp_path: Path) -> None:
    folded = tmp_path / "api.collapsed"
    folded.write_text("run (uvicorn/main.py:1);submit (gateway/http/routers/cases.py:2);execute (sqlalchemy/engine/base.py:3) 6\n"
                      "run (uvicorn/main.py:1);append (gateway/audit/ledger.py:9);seal (certstore/keyring.py:4) 3\n"
                      "run (uvicorn/main.py:1);select (selectors.py:5) 1\n", encoding="utf-8")
    assert owned_shares(folded) == ["60% gateway.http.routers.cases.submit", "30% certstore.keyring.seal", "10% selectors"]


def test_children_are_read_from_proc() -> None:
    import subprocess
    import sys

    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(5)"])
    try:
        assert child.pid in children(os.getpid())
    finally:
        child.kill()
        child.wait()
    assert children(2 ** 22 + 12345) == []  # no such process

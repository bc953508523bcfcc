"""#31.1: a run looks its benchmark up once and reads and validates each data file once.

Before, ``verify_data`` read a task's test file three times (its records, its answer source,
the benchmark's notes) and validated every record, and then ``load_benchmark`` read and
validated every file again, passing (root, image root, config, task, split) to five
functions that each looked the benchmark up again. Now the check keeps the records it
validated and the loader uses them (``TaskManifest.records``), through one ``DataLayout``.
"""

from __future__ import annotations

from collections import Counter

import coin.benchmarks.check as check_mod
import coin.data.coin_json as coin_json
import coin.data.records as records_mod
from coin.benchmarks import BENCHMARKS
from coin.benchmarks.load import load_benchmark, verify_data
from coin.config_load import from_dict
from coin.tasks import resolve_order


def _counting(monkeypatch):
    reads, validated = Counter(), Counter()
    for module in (check_mod, coin_json):
        real = module.read_json

        def read_json(path, *a, _real=real, **k):
            reads[str(path)] += 1
            return _real(path, *a, **k)

        monkeypatch.setattr(module, "read_json", read_json)
    real_check = records_mod.check_records

    def check_records(rows, split, source, *a, **k):
        validated[source] += 1
        return real_check(rows, split, source, *a, **k)

    monkeypatch.setattr(records_mod, "check_records", check_records)
    monkeypatch.setattr(check_mod, "check_records", check_records)
    monkeypatch.setattr(coin_json, "check_records", check_records)
    return reads, validated


def test_a_run_reads_and_validates_each_file_once(micro_config, monkeypatch):
    cfg = from_dict(micro_config)
    order = resolve_order(cfg.tasks.order)
    verify_data(cfg.data, order)  # CoIN-Synth generated into the cache before counting
    reads, validated = _counting(monkeypatch)
    manifest = verify_data(cfg.data, order, protocols=cfg.eval.protocol)
    bench = load_benchmark(cfg.data, order, cfg.seed, protocols=cfg.eval.protocol, manifest=manifest, check=False)
    files = {f for t in manifest.tasks for f in t.files.values()}
    assert len(files) == 2 * len(order)
    assert {f: reads[f] for f in files} == {f: 1 for f in files}
    assert {f: validated[f] for f in files} == {f: 1 for f in files}
    assert all(bench.train[t] and bench.test[t] for t in order)
    assert all(not t.checked for t in manifest.tasks)  # the kept records were handed over, not held twice


def test_records_from_the_check_equal_records_read_again(micro_config):
    cfg = from_dict(micro_config)
    order = resolve_order(cfg.tasks.order)
    manifest = verify_data(cfg.data, order, protocols=cfg.eval.protocol)
    kept = load_benchmark(cfg.data, order, cfg.seed, protocols=cfg.eval.protocol, manifest=manifest, check=False)
    again = load_benchmark(cfg.data, order, cfg.seed, protocols=cfg.eval.protocol, check=False)
    assert kept.train == again.train and kept.test == again.test


def test_loading_looks_the_benchmark_up_once(micro_config, monkeypatch):
    cfg = from_dict(micro_config)
    order = resolve_order(cfg.tasks.order)
    manifest = verify_data(cfg.data, order, protocols=cfg.eval.protocol)
    calls = []
    real = BENCHMARKS.get
    monkeypatch.setattr(BENCHMARKS, "get", lambda name: calls.append(name) or real(name))
    load_benchmark(cfg.data, order, cfg.seed, protocols=cfg.eval.protocol, manifest=manifest, check=False)
    assert calls == [cfg.data.benchmark]

"""Results JSON: round trip with provenance, atomic writes, train-or-load."""

import json

import numpy as np
import pytest

from mernb.errors import MernbError
from mernb.report.results import read_results, results_exist, train_or_load, write_results

RESULT = {"metrics": {"acc": np.float64(0.75), "uf1": 0.7}, "y_true": np.array([0, 1, 1]),
          "y_pred": [0, 1, 0], "wall_time_s": 12.5}


def test_round_trip_with_provenance(tmp_path):
    path = write_results(tmp_path / "a" / "r.json", result=RESULT, config={"lr": 3e-4, "size": (224, 224)},
                         plan="smoke", notebook="mpt/table6", seeds=0, extra={"fold_count": 3})
    doc = read_results(path)
    assert doc["result"]["metrics"]["acc"] == 0.75
    assert doc["result"]["y_true"] == [0, 1, 1]
    assert doc["config"] == {"lr": 3e-4, "size": [224, 224]}
    assert (doc["plan"], doc["notebook"], doc["seeds"], doc["extra"]) == ("smoke", "mpt/table6", [0], {"fold_count": 3})
    prov = doc["provenance"]
    for key in ("git_commit", "git_dirty", "packages", "python", "platform", "device", "timestamp_utc", "wall_time_s"):
        assert key in prov
    assert prov["wall_time_s"] == 12.5
    assert prov["packages"]["numpy"] == np.__version__
    assert prov["timestamp_utc"].endswith("+00:00")
    assert results_exist(path)
    assert list(path.parent.iterdir()) == [path]  # no temporary file left behind


def test_atomic_write_keeps_old_file_and_leaves_no_partial(tmp_path):
    path = tmp_path / "r.json"
    with pytest.raises(MernbError, match="cannot be written"):
        write_results(path, result={"bad": object()}, config={})
    assert not path.exists() and list(tmp_path.iterdir()) == []
    write_results(path, result={"acc": 0.5}, config={})
    with pytest.raises(MernbError):
        write_results(path, result={"bad": object()}, config={})
    assert read_results(path)["result"] == {"acc": 0.5}
    assert list(tmp_path.iterdir()) == [path]


def test_read_errors(tmp_path):
    with pytest.raises(MernbError, match="no results file"):
        read_results(tmp_path / "missing.json")
    broken = tmp_path / "broken.json"
    broken.write_text('{"result": ')
    with pytest.raises(MernbError, match="not valid JSON"):
        read_results(broken)
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"a": 1}))
    assert not results_exist(other) and not results_exist(broken)


def test_train_or_load_runs_once_then_loads(tmp_path):
    calls = []

    def fn():
        calls.append(1)
        return {"acc": 0.5 + len(calls)}

    path = tmp_path / "r.json"
    first = train_or_load(path, fn, config={"epochs": 2}, plan="smoke", seeds=[0, 1])
    second = train_or_load(path, fn, config={"epochs": 2}, plan="smoke", seeds=[0, 1])
    assert len(calls) == 1
    assert first["origin"] == "computed" and second["origin"] == "loaded"
    assert second["result"] == {"acc": 1.5} and second["seeds"] == [0, 1]
    assert first["provenance"]["wall_time_s"] is not None

    with pytest.warns(UserWarning, match="epochs"):
        third = train_or_load(path, fn, config={"epochs": 3})
    assert len(calls) == 2 and third["origin"] == "computed"
    assert third["result"] == {"acc": 2.5} and "epochs" in third["notes"][0]

    forced = train_or_load(path, fn, config={"epochs": 3}, force=True)
    assert len(calls) == 3 and forced["notes"] == ["re-ran: force=True"]


def test_train_or_load_serialises_concurrent_callers(tmp_path):
    """Two notebooks asking for the same shared row at once: one computes, the other loads."""
    import threading
    import time as _time

    from mernb.report.results import train_or_load

    calls = []

    def slow():
        calls.append(1)
        _time.sleep(0.5)
        return {"metrics": {"acc": 0.5}}

    origins = []
    threads = [threading.Thread(target=lambda: origins.append(train_or_load(tmp_path / "row.json", slow,
                                                                            config={"a": 1})["origin"]))
               for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1
    assert sorted(origins) == ["computed", "loaded"]


def test_files_honour_the_umask(tmp_path):
    """Issue 10 §5: results on a group-shared folder are readable by the group (no mkstemp 0600)."""
    import os
    import stat

    from mernb.io import save_torch_atomic, write_json_atomic

    old = os.umask(0o002)
    try:
        written = [write_results(tmp_path / "r.json", result={"a": 1}, config={}),
                   write_json_atomic(tmp_path / "f.json", {"a": 1}), save_torch_atomic(tmp_path / "c.pt", {"a": 1})]
    finally:
        os.umask(old)
    for path in written:
        assert stat.S_IMODE(path.stat().st_mode) == 0o664, path

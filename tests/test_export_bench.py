"""itpl export (litert-torch) and itpl bench (LiteRT) on real conversions and runs."""

import json

import numpy as np
import pytest
import torch
from torch import nn

from itpl.cli import main
from itpl.deploy.bench import tflite_batch
from itpl.deploy.export import export_tflite, run_tflite
from itpl.model import zoo as models


def _run(capsys, *argv):
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture(scope="module")
def r20_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("r20")
    torch.manual_seed(0)
    model = models.build("resnet20")
    return {b: export_tflite(model, (3, 32, 32), str(folder / f"r20-b{b}.tflite"), batch=b).path
            for b in (1, 2)}, model


def test_export_round_trip_numerics(r20_files):
    files, model = r20_files
    x = np.random.default_rng(1).standard_normal((2, 3, 32, 32)).astype(np.float32)
    with torch.no_grad():
        expected = model.eval()(torch.from_numpy(x)).numpy()
    got = run_tflite(files[2], x)
    np.testing.assert_allclose(got, expected, atol=1e-4)
    assert tflite_batch(files[1]) == 1 and tflite_batch(files[2]) == 2


@pytest.mark.slow
@pytest.mark.parametrize("name, shape", [("mobilenet_v1", (3, 64, 64)), ("mobilenet_v2", (3, 64, 64)),
                                         ("resnet50", (3, 64, 64)), ("vgg16", (3, 32, 32))])
def test_every_family_exports(name, shape, tmp_path):
    kwargs = {"width_mult": 0.25} if name.startswith("mobilenet") else {}
    result = export_tflite(models.build(name, **kwargs), shape, str(tmp_path / "m.tflite"), batch=2)
    assert result.max_abs_diff <= result.tolerance
    assert tflite_batch(result.path) == 2


def test_cli_export_batches_and_plan(tmp_path, capsys):
    code, out, err = _run(capsys, "prune", "--model", "resnet20", "--flops-ratio", "0.5",
                          "--samples", "8", "-o", str(tmp_path / "p"), "-q")
    assert code == 0, err
    code, out, err = _run(capsys, "export", str(tmp_path / "p.plan.json"),
                          "-o", str(tmp_path / "p.tflite"), "--batch", "1", "4")
    assert code == 0, err
    assert tflite_batch(str(tmp_path / "p-b1.tflite")) == 1
    assert tflite_batch(str(tmp_path / "p-b4.tflite")) == 4
    assert "max |tflite - torch|" in out


def test_failed_numeric_check_writes_nothing(tmp_path):
    with pytest.raises(ValueError, match="differs from PyTorch"):
        export_tflite(models.build("resnet20"), (3, 32, 32), str(tmp_path / "x.tflite"), rtol=0.0)
    assert list(tmp_path.iterdir()) == []


class DataDependent(nn.Module):
    def forward(self, x):
        return x * 2 if x.sum() > 0 else x


def test_conversion_failure_names_the_layer(tmp_path):
    model = nn.Sequential(nn.Conv2d(3, 4, 3), DataDependent(), nn.Flatten())
    with pytest.raises(ValueError, match=r"failed at layer 1 \(DataDependent\)"):
        export_tflite(model, (3, 8, 8), str(tmp_path / "x.tflite"))
    assert list(tmp_path.iterdir()) == []


def test_bench_table_json_and_compare(r20_files, tmp_path, capsys):
    files, _ = r20_files
    out_json = str(tmp_path / "b.json")
    code, out, err = _run(capsys, "bench", files[1], files[1], files[2], "--threads", "1",
                          "--rounds", "8", "--json", out_json)
    assert code == 0, err
    assert "batch 1" in out and "batch 2" in out and "(reference)" in out and "moved" in out
    result = json.loads(open(out_json).read())
    assert result["device"]["device"] == "local" and result["device"]["threads"] == 1
    assert set(result["references"]) == {"1", "2"}
    rows = [r for r in result["results"] if r["batch"] == 1]
    assert [r["model"] for r in rows] == ["r20-b1.tflite", "r20-b1.tflite#2"]
    assert [r["reference"] for r in rows] == ["r20-b1.tflite"] * 2
    assert rows[0]["speedup"] == 1.0 and len(rows[0]["samples_ms"]) >= 8
    copy = rows[1]  # the same file timed beside itself: a ratio near 1, inside its interval
    assert copy["speedup_low"] <= copy["speedup"] <= copy["speedup_high"]
    # 8 rounds at least: with 4 against 4, Mann-Whitney's smallest p is 1/70, never < 0.01
    assert 0.8 < copy["ratio"] < 1.25 and copy["rounds"] >= 8
    # a constructed 10% regression of the copy (by ratio) fails the gate; the file
    # compared with itself passes
    slower = json.loads(json.dumps(result))
    row = slower["results"][1]
    row["ratios"] = [r * 1.10 for r in row["ratios"]]
    row["samples_ms"] = [v * 1.10 for v in row["samples_ms"]]
    row["median_ms"] *= 1.10
    (tmp_path / "slow.json").write_text(json.dumps(slower))
    code, out, _ = _run(capsys, "bench", "--compare", out_json, str(tmp_path / "slow.json"))
    assert code == 1 and out.count("REGRESSION") == 1 and "+10.0% by ratio" in out
    code, out, _ = _run(capsys, "bench", "--compare", out_json, out_json)
    assert code == 0 and "none slower" in out
    # a gate that compared nothing fails, and a NaN threshold is refused
    other = json.loads(json.dumps(result))
    for r in other["results"]:
        r["model"] = "other"
    (tmp_path / "other.json").write_text(json.dumps(other))
    code, _, err = _run(capsys, "bench", "--compare", out_json, str(tmp_path / "other.json"))
    assert code == 1 and "nothing was compared" in err
    code, _, err = _run(capsys, "bench", "--compare", out_json, out_json, "--threshold", "nan")
    assert code == 2 and "finite" in err
    broken = json.loads(json.dumps(result))
    broken["results"][0]["median_ms"] = "fast"
    (tmp_path / "broken.json").write_text(json.dumps(broken))
    code, _, err = _run(capsys, "bench", "--compare", out_json, str(tmp_path / "broken.json"))
    assert code == 1 and "result 0 is damaged" in err and len(err.strip().splitlines()) == 1


def test_bad_counts_are_refused_before_any_work(r20_files, tmp_path, capsys):
    files, _ = r20_files
    code, _, err = _run(capsys, "bench", files[1], "--threads", "0")
    assert code == 2 and "must be at least 1" in err
    with pytest.raises(ValueError, match="threads must be at least 1"):
        run_tflite(files[1], np.zeros((1, 3, 32, 32), np.float32), threads=0)
    # batch 0 after a valid one: refused while parsing, so no b1 file is left behind
    code, _, err = _run(capsys, "export", "resnet20", "-o", str(tmp_path / "r.tflite"),
                        "--batch", "1", "0")
    assert code == 2 and "must be at least 1" in err
    assert list(tmp_path.iterdir()) == []


def test_missing_and_corrupt_tflite(tmp_path, capsys):
    code, _, err = _run(capsys, "bench", str(tmp_path / "none.tflite"))
    assert code == 1 and "does not exist" in err
    (tmp_path / "bad.tflite").write_bytes(b"\x00" * 64)
    code, _, err = _run(capsys, "bench", str(tmp_path / "bad.tflite"))
    assert code == 1 and "not a valid .tflite model" in err and "Traceback" not in err
    code, _, err = _run(capsys, "bench", "--compare", str(tmp_path / "bad.tflite"),
                        str(tmp_path / "bad.tflite"))
    assert code == 1 and "not valid JSON" in err

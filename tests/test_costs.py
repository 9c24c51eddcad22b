import pytest

from saessak.ledger import ledger_costs, load_prices, record_cost
from saessak.errors import UserError


def _cpu_record(stage="pretrain", wall_s=3600.0, cores=2, **facts):
    return {"stage": stage, "wall_s": wall_s, "cpu_s": wall_s * cores,
            "device": {"type": "cpu", "cpu": "Xeon", "cpu_cores": cores}, **facts}


def test_shipped_table_is_valid_and_sourced():
    prices = load_prices()
    assert prices.usd_to_krw > 100
    assert prices.data["cpu"]["price_source"] and prices.data["cpu"]["watts_source"]
    for name, row in prices.data["gpu"].items():
        assert row["price_source"] and row["watts_source"], name
    assert prices.data["reference"]["deepseek_v3"]["gpu_hours"] == 2_788_000


def test_cpu_record_cost_is_hourly_price_times_hours():
    prices = load_prices()
    cost = record_cost(_cpu_record(wall_s=1800.0, cores=2), prices)
    cpu = prices.data["cpu"]
    expected_usd = 0.5 * 2 * cpu["usd_per_hour"] / cpu["vcpus"]
    assert cost["cost_usd"] == pytest.approx(expected_usd)
    assert cost["cost_krw"] == pytest.approx(expected_usd * prices.usd_to_krw)
    assert cost["energy_kwh"] == pytest.approx(0.5 * cpu["watts"] / 1000 * prices.pue)
    # Twice the cores (a bigger VM) costs twice as much for the same wall time.
    assert record_cost(_cpu_record(wall_s=1800.0, cores=4), prices)["cost_usd"] == pytest.approx(2 * expected_usd)


def test_gpu_record_matches_device_name_and_counts_gpus():
    prices = load_prices()
    rec = {"stage": "pretrain", "wall_s": 7200.0,
           "device": {"type": "cuda", "gpu": "NVIDIA H100 80GB HBM3", "gpu_count": 8}}
    cost = record_cost(rec, prices)
    assert cost["unit"] == "GPU (H100)"
    assert cost["device_hours"] == pytest.approx(16.0)
    assert cost["cost_usd"] == pytest.approx(16.0 * prices.data["gpu"]["H100"]["usd_per_hour"])
    with pytest.raises(UserError, match="no \\[gpu.\\*\\] row matches"):
        record_cost({**rec, "device": {"type": "cuda", "gpu": "Mystery X9", "gpu_count": 1}}, prices)


def test_ledger_totals_sum_stages_and_resumed_runs():
    prices = load_prices()
    recs = [_cpu_record("pretrain", 100.0, flops=1e12, tokens=1000),
            _cpu_record("pretrain", 50.0, flops=5e11, tokens=500),
            _cpu_record("sft", 30.0, flops=1e11)]
    out = ledger_costs(recs, prices)
    assert out["stages"]["pretrain"]["runs"] == 2
    assert out["stages"]["pretrain"]["wall_s"] == pytest.approx(150.0)
    assert out["total"]["flops"] == pytest.approx(1.6e12)
    assert out["total"]["cost_krw"] == pytest.approx(sum(r["cost_krw"] for r in out["records"]))


def test_override_file_replaces_only_given_keys(tmp_path):
    f = tmp_path / "p.toml"
    f.write_text("[currency]\nusd_to_krw = 1000.0\n[cpu]\nusd_per_hour = 1.0\n")
    prices = load_prices(f)
    assert prices.usd_to_krw == 1000.0
    assert prices.data["cpu"]["usd_per_hour"] == 1.0
    assert prices.data["cpu"]["vcpus"] == 2  # kept from the shipped table
    assert "H100" in prices.data["gpu"]


@pytest.mark.parametrize("text, key", [
    ("[cpu]\nusd_per_hour = -0.1\n", "cpu.usd_per_hour"),
    ("[gpu.H100]\nusd_per_hour = -3\n", "gpu.H100.usd_per_hour"),
    ("[gpu.B200]\nmatch = ['B200']\nusd_per_hour = 5.0\n", "gpu.B200.watts"),
    ("[currency]\nusd_to_krw = 'lots'\n", "currency.usd_to_krw"),
])
def test_bad_price_table_names_the_key(tmp_path, text, key):
    f = tmp_path / "bad.toml"
    f.write_text(text)
    with pytest.raises(UserError, match=key.replace(".", r"\.")):
        load_prices(f)


def test_missing_and_malformed_price_files(tmp_path):
    with pytest.raises(UserError, match="not found"):
        load_prices(tmp_path / "nope.toml")
    f = tmp_path / "broken.toml"
    f.write_text("[cpu\n")
    with pytest.raises(UserError, match="not a valid TOML"):
        load_prices(f)

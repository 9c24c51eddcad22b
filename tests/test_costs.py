import pytest

from saessak.ledger import ledger_costs, load_prices, record_cost
from saessak.errors import UserError


def _cpu_record(stage="pretrain", wall_s=3600.0, cores=2, device=None, **facts):
    return {"stage": stage, "wall_s": wall_s, "cpu_s": wall_s * cores,
            "device": device or {"type": "cpu", "cpu": "Xeon", "cpu_cores": cores}, **facts}


def test_shipped_table_is_valid_and_sourced():
    prices = load_prices()
    assert prices.usd_to_krw > 100
    assert prices.legacy_cpu() is None
    rows = prices.cpu_rows()
    assert {"intel_sapphire_rapids", "amd_genoa", "amd_milan"} <= set(rows)
    for name, row in rows.items():
        assert row["price_source"] and row["watts_source"] and row["vendor"] in ("intel", "amd"), name
        assert row["match"] and row["x86"], name
    for name, row in prices.data["gpu"].items():
        assert row["price_source"] and row["watts_source"], name
    assert prices.data["reference"]["deepseek_v3"]["gpu_hours"] == 2_788_000


def test_cpu_record_cost_is_hourly_price_times_hours():
    prices = load_prices()
    cost = record_cost(_cpu_record(wall_s=1800.0, cores=2), prices)
    cpu = prices.cpu_row({"cpu": "Xeon"})[1]
    assert cost["price_row"] == "cpu.intel_sapphire_rapids"
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
    f.write_text("[currency]\nusd_to_krw = 1000.0\n[cpu.amd_genoa]\nusd_per_hour = 1.0\n")
    prices = load_prices(f)
    assert prices.usd_to_krw == 1000.0
    genoa = prices.cpu_rows()["amd_genoa"]
    assert genoa["usd_per_hour"] == 1.0 and genoa["vcpus"] == 2 and genoa["match"]  # the rest kept
    assert "H100" in prices.data["gpu"]


def test_an_older_flat_cpu_table_prices_every_cpu_record(tmp_path):
    """A price file written for the single [cpu] table: its keys lie over the row that table described
    (AWS m7i.large), and that one row prices every CPU record, whatever the CPU."""
    f = tmp_path / "old.toml"
    f.write_text("[cpu]\nusd_per_hour = 0.5\nname = 'my box'\n")
    prices = load_prices(f)
    amd = _cpu_record(device={"type": "cpu", "cpu": "AMD EPYC 9R14 96-Core Processor", "cpu_cores": 2})
    cost = record_cost(amd, prices)
    assert cost["price_row"] == "cpu" and cost["priced_as"] == "my box" and cost["price_note"] is None
    assert cost["cost_usd"] == pytest.approx(0.5)  # 1 h x 2 vCPU x 0.5 / 2
    assert cost["watts"] == pytest.approx(prices.cpu_rows()["intel_sapphire_rapids"]["watts"])


# What /proc/cpuinfo says on three machines (the first processor's block, shortened).
AMD_GENOA_CPUINFO = """processor\t: 0
vendor_id\t: AuthenticAMD
cpu family\t: 25
model\t\t: 17
model name\t: AMD EPYC 9R14 96-Core Processor
"""
AMD_HIDDEN_CPUINFO = AMD_GENOA_CPUINFO.replace("AMD EPYC 9R14 96-Core Processor", "AMD EPYC")
AMD_ZEN5_CPUINFO = AMD_HIDDEN_CPUINFO.replace("cpu family\t: 25", "cpu family\t: 26").replace("model\t\t: 17", "model\t\t: 2")
INTEL_CPUINFO = """processor\t: 0
vendor_id\t: GenuineIntel
cpu family\t: 6
model\t\t: 143
model name\t: Intel(R) Xeon(R) Platinum 8488C

processor\t: 1
model name\t: something else
"""


@pytest.mark.parametrize("cpuinfo, row, note", [
    (AMD_GENOA_CPUINFO, "amd_genoa", None),  # by its model name
    (AMD_HIDDEN_CPUINFO, "amd_genoa", None),  # a VM that hides the name: by family and model numbers
    (AMD_ZEN5_CPUINFO, "amd_genoa", "the nearest row"),  # a newer AMD: the AMD row, and it says so
    (INTEL_CPUINFO, "intel_sapphire_rapids", None),
    ("model name\t: AMD EPYC 7R13 Processor\n", "amd_milan", None),
    ("model name\t: Neoverse-N1\n", "intel_sapphire_rapids", "vendor unknown"),
])
def test_cpu_records_are_priced_with_the_row_of_their_cpu(cpuinfo, row, note):
    from saessak.ledger import cpu_info

    prices = load_prices()
    device = {"type": "cpu", **cpu_info(cpuinfo), "cpu_cores": 2}
    cost = record_cost(_cpu_record(device=device), prices)
    assert cost["price_row"] == f"cpu.{row}"
    assert cost["cost_usd"] == pytest.approx(prices.cpu_rows()[row]["usd_per_hour"])  # 1 h on 2 of its 2 vCPUs
    if note is None:
        assert cost["price_note"] is None
    else:
        assert note in cost["price_note"] and cost["price_note"].startswith(f"priced as {cost['priced_as']}")


def test_an_amd_run_is_priced_as_amd_in_its_report(tmp_path, monkeypatch):
    """End to end: the device a stage records on a (faked) AMD machine chooses the report's price row."""
    from saessak import ledger
    from saessak.report.build import build_report

    real = ledger.cpu_info
    monkeypatch.setattr(ledger, "cpu_info", lambda text=None: real(AMD_HIDDEN_CPUINFO if text is None else text))
    ledger.StageTimer(tmp_path, "pretrain", heartbeat_s=0).finish(tokens=1)
    r = build_report(tmp_path)
    [rec] = r["ledger"]["records"]
    assert rec["device"]["cpu_vendor"] == "AuthenticAMD" and rec["device"]["cpu_family"] == 25
    assert rec["price_row"] == "cpu.amd_genoa" and r["prices"]["cpu"]["row"] == "amd_genoa"
    assert "m7a.large" in r["prices"]["cpu"]["name"] and not r["ledger"]["price_notes"]


def test_a_row_a_user_adds_is_tried_first(tmp_path):
    f = tmp_path / "mine.toml"
    f.write_text("[cpu.lab_box]\nname = 'our lab box'\nvendor = 'amd'\nmatch = ['EPYC 9R14']\n"
                 "usd_per_hour = 0.02\nvcpus = 2\nwatts = 8.0\n")
    cost = record_cost(_cpu_record(device={"type": "cpu", "cpu": "AMD EPYC 9R14 96-Core Processor"}), load_prices(f))
    assert cost["price_row"] == "cpu.lab_box" and cost["cost_usd"] == pytest.approx(0.02)


@pytest.mark.parametrize("text, key", [
    ("[cpu]\nusd_per_hour = -0.1\n", "cpu.usd_per_hour"),
    ("[cpu]\nprice = 1.0\n", "cpu.price"),
    ("[cpu.amd_genoa]\nvcpus = 0\n", "cpu.amd_genoa.vcpus"),
    ("[cpu.amd_genoa]\nmatch = ['EPYC (']\n", "cpu.amd_genoa.match"),
    ("[cpu.amd_genoa]\nx86 = [[25, 16]]\n", "cpu.amd_genoa.x86"),
    ("[cpu.arm]\nvendor = 'arm'\nusd_per_hour = 1.0\nvcpus = 2\nwatts = 1.0\n", "cpu.arm.vendor"),
    ("[cpu.box]\nusd_per_hour = 1.0\nvcpus = 2\n", "cpu.box.watts"),
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

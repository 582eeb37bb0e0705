"""tegrastats parser on recorded lines of several Jetsons, energy integration, samplers, throttling, nvpmodel, clocks."""

from __future__ import annotations

import os
import stat
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from deploy.power import (
    JtopSampler,
    PowerTrace,
    TegrastatsSampler,
    detect_throttling,
    energy_per_frame,
    open_sampler,
    parse_nvpmodel,
    read_clocks,
    summarize_trace,
)
from deploy.tegrastats import TegrastatsParseError, parse_line

FIXTURES = Path(__file__).parent / "fixtures" / "tegrastats"


def fixture_lines(name: str) -> list[str]:
    return [ln for ln in (FIXTURES / f"{name}.txt").read_text().splitlines() if ln.strip() and not ln.startswith("#")]


# (file, ram used/total, cores, online cores, gpu load, gpu MHz, total source, total mW, rails, hottest sensor)
FIRST_LINES = [
    (
        "orin_nano",
        (6712, 7620),
        6,
        6,
        99.0,
        (612,),
        "VDD_IN",
        16321,
        {"VDD_IN", "VDD_CPU_GPU_CV", "VDD_SOC"},
        ("gpu", 58.625),
    ),
    ("orin_nx", (2432, 15598), 8, 6, 0.0, (), "VDD_IN", 7280, {"VDD_IN"}, ("tj", 59.687)),
    (
        "agx_orin",
        (13983, 62780),
        12,
        12,
        14.0,
        (407, 407),
        "sum of rails",
        3150 + 14312 + 4968 + 1091,
        {"VDD_GPU_SOC", "VDD_CPU_CV", "VIN_SYS_5V0", "VDDQ_VDD2_1V8AO"},
        ("CPU", 77.281),
    ),
    (
        "xavier_nx",
        (5246, 7771),
        6,
        6,
        0.0,
        (1109,),
        "VDD_IN",
        6140,
        {"VDD_IN", "VDD_CPU_GPU_CV", "VDD_SOC"},
        ("CPU", 33.5),
    ),
    (
        "agx_xavier",
        (1903, 15692),
        8,
        8,
        0.0,
        (),
        "sum of rails",
        0 + 216 + 864 + 0 + 144 + 1889,
        {"GPU", "CPU", "SOC", "CV", "VDDRQ", "SYS5V"},
        ("Tdiode", 34.75),  # PMIC@100C is a placeholder and must not count
    ),
    ("nano", (613, 3964), 4, 4, 0.0, (), "POM_5V_IN", 943, {"POM_5V_IN", "POM_5V_GPU", "POM_5V_CPU"}, ("AO", 46.0)),
    (
        "tx2",
        (1345, 7829),
        6,
        1,
        0.0,
        (114,),
        "VDD_IN",
        2003,
        {"VDD_IN", "VDD_CPU", "VDD_GPU", "VDD_SOC", "VDD_WIFI", "VDD_DDR"},
        ("GPU", 41.0),
    ),
]


@pytest.mark.parametrize("case", FIRST_LINES, ids=[c[0] for c in FIRST_LINES])
def test_first_line_of_each_jetson(case):
    name, ram, n_cores, online, gpu_load, gpu_freq, source, total, rails, hottest = case
    s = parse_line(fixture_lines(name)[0])
    assert (s.ram_used_mb, s.ram_total_mb) == ram
    assert len(s.cpus) == n_cores
    assert sum(c.online for c in s.cpus) == online
    assert s.gpu_load_pct == gpu_load
    assert s.gpu_freq_mhz == gpu_freq
    assert s.total_source == source
    assert s.total_mw == total
    assert set(s.rails) == rails
    assert s.max_temp == hottest


@pytest.mark.parametrize("name", sorted(p.stem for p in FIXTURES.glob("*.txt")))
def test_every_recorded_line_parses_with_power_and_ram(name):
    lines = fixture_lines(name)
    assert lines
    for line in lines:
        s = parse_line(line)
        assert s.ram_used_mb is not None and 0 < s.ram_used_mb <= s.ram_total_mb
        assert s.total_mw is not None and s.total_mw >= 0
        assert s.cpus and s.temps_c
        assert all(r.instant_mw >= 0 and r.average_mw >= 0 for r in s.rails.values())


def test_units_average_peak_timestamp_and_swap():
    jp4 = parse_line(fixture_lines("xavier_nx")[0])  # unitless mW, no timestamp
    assert jp4.timestamp is None and jp4.rails["VDD_IN"].instant_mw == 6140 and jp4.rails["VDD_IN"].average_mw == 5510
    assert (jp4.swap_used_mb, jp4.swap_total_mb, jp4.swap_cached_mb) == (983, 20269, 280)
    jp5 = parse_line(fixture_lines("xavier_nx")[1])
    assert jp5.timestamp == "07-09-2024 13:31:31" and jp5.rails["VDD_SOC"].average_mw == 711
    newest = parse_line(fixture_lines("agx_orin")[3])  # instant/average/peak and cur/max temperatures
    assert newest.rails["VDD_CPU_CV"].peak_mw == 2273 and newest.rails["VDD_CPU_CV"].instant_mw == 1137
    assert newest.temps_c["tj"] == 47.906
    assert newest.emc_load_pct is None  # this release prints no EMC_FREQ


def test_cpu_loads_frequencies_and_offline_cores():
    s = parse_line(fixture_lines("orin_nano")[2])
    assert [c.online for c in s.cpus] == [True, False, True, True, True, True]
    assert s.cpu_load_pct == pytest.approx((1 + 3 + 4 + 5 + 6) / 5)
    assert s.cpu_freq_mhz == 729
    assert (s.emc_load_pct, s.emc_freq_mhz) == (2.0, 2133)
    old = parse_line("RAM 100/1000MB CPU [10%,20%]@1200 GR3D_FREQ 40% GPU@45.5C VDD_IN 5000/6000")
    assert [c.freq_mhz for c in old.cpus] == [1200, 1200] and old.gpu_freq_mhz == ()


def test_not_tegrastats_raises():
    with pytest.raises(TegrastatsParseError, match="not a tegrastats line"):
        parse_line("hello world")
    with pytest.raises(TegrastatsParseError):
        parse_line("")


# ---------------------------------------------------------------- energy
def _reference_energy(t, p, t0, t1, steps=200_000):
    """Slow obvious reference: evaluate the piecewise-linear power on a very fine grid and sum rectangles."""
    grid = np.linspace(t0, t1, steps + 1)
    mids = (grid[:-1] + grid[1:]) / 2
    return float(np.sum(np.interp(mids, t, p) * np.diff(grid)))


def test_energy_constant_power():
    trace = PowerTrace("test", t=[0.0, 1.0, 2.0, 3.0], total_mw=[5000.0] * 4)
    e = energy_per_frame(trace, 0.5, 2.5, frames=100)
    assert e.energy_mj == pytest.approx(10_000.0)
    assert e.energy_mj_per_frame == pytest.approx(100.0)
    assert e.mean_power_w == pytest.approx(5.0)
    assert e.samples_in_window == 2


def test_energy_matches_fine_grid_reference():
    rng = np.random.default_rng(0)
    t = np.sort(rng.uniform(0, 10, 40))
    p = rng.uniform(2000, 15000, 40)
    trace = PowerTrace("test", t=list(t), total_mw=list(p))
    for t0, t1 in [(1.3, 7.9), (-1.0, 4.0), (9.0, 12.0), (3.21, 3.22)]:
        e = energy_per_frame(trace, t0, t1, frames=7)
        assert e.energy_mj == pytest.approx(_reference_energy(t, p, t0, t1), rel=1e-6)
        assert e.energy_mj_per_frame == pytest.approx(e.energy_mj / 7)


def test_energy_edge_cases():
    assert energy_per_frame(PowerTrace("x"), 0.0, 1.0, 10) is None
    one = PowerTrace("x", t=[5.0], total_mw=[4000.0])
    assert energy_per_frame(one, 0.0, 2.0, 4).energy_mj_per_frame == pytest.approx(2000.0)
    assert energy_per_frame(one, 2.0, 2.0, 4) is None
    assert energy_per_frame(one, 0.0, 2.0, 0) is None
    assert summarize_trace(PowerTrace("x"))["mean_w"] is None
    assert summarize_trace(one) == {"source": "x", "total_rail": None, "samples": 1, "mean_w": 4.0, "peak_w": 4.0}


# ---------------------------------------------------------------- samplers
def test_tegrastats_sampler_reads_a_real_subprocess(tmp_path, monkeypatch):
    """A stand-in `tegrastats` on PATH prints recorded lines; the sampler parses them as they arrive."""
    lines = fixture_lines("orin_nano")
    script = tmp_path / "tegrastats"
    script.write_text(
        f"#!{sys.executable}\nimport sys, time\nlines = {lines!r}\n"
        "assert sys.argv[1] == '--interval'\n"
        "for i in range(400):\n    print(lines[i % len(lines)], flush=True)\n    time.sleep(int(sys.argv[2]) / 1000)\n"
    )
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    sampler, how = open_sampler(interval_ms=10, prefer="tegrastats")
    assert isinstance(sampler, TegrastatsSampler) and "tegrastats" in how
    deadline = time.monotonic() + 10
    while len(sampler.trace.t) < 5 and time.monotonic() < deadline:
        time.sleep(0.02)
    trace = sampler.stop()
    assert sampler.error is None
    assert len(trace.t) >= 5 and trace.total_rail == "VDD_IN"
    expected = [parse_line(ln).total_mw for ln in lines]
    assert trace.total_mw[: len(expected)] == expected[: len(trace.total_mw)]
    assert all(b >= a for a, b in zip(trace.t, trace.t[1:], strict=False))
    assert sampler._proc.poll() is not None  # the subprocess is gone


def test_tegrastats_feed_ignores_noise():
    s = TegrastatsSampler()
    s.feed("NVPM WARN: something\n", 0.0)
    s.feed(fixture_lines("nano")[0], 1.0)
    assert s.trace.total_mw == [943.0] and s.trace.total_rail == "POM_5V_IN"


class _FakeJetson:
    def __init__(self, readings):
        self.readings = list(readings)
        self.power = None

    def ok(self):
        if not self.readings:
            return False
        self.power = self.readings.pop(0)
        return True

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def test_jtop_sampler_with_a_fake_client():
    readings = [
        {"tot": {"power": 5200, "avg": 5000, "name": "VDD_IN"}, "rail": {"VDD_SOC": {"power": 1400}}},
        {"tot": {"power": 6100, "avg": 5400, "name": "VDD_IN"}, "rail": {"VDD_SOC": {"power": 1500}}},
        {"rail": {"GPU": {"power": 100}, "CPU": {"power": 300}}},
    ]
    sampler = JtopSampler(interval_ms=10, jtop_factory=lambda interval: _FakeJetson(readings))
    sampler.start()
    sampler._thread.join(timeout=5)
    trace = sampler.stop()
    assert sampler.error is None
    assert trace.total_mw == [5200.0, 6100.0, 400.0] and trace.total_rail == "sum of rails"


def test_jtop_sampler_failure_is_reported_not_raised():
    def broken(interval):
        raise RuntimeError("The jtop.service is not active")

    sampler = JtopSampler(jtop_factory=broken)
    sampler.start()
    assert sampler.ready.wait(timeout=5)
    sampler.stop()
    assert "jtop.service is not active" in sampler.error


def test_open_sampler_off_a_jetson_says_why(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))  # no tegrastats
    monkeypatch.setitem(sys.modules, "jtop", None)  # import jtop -> ImportError
    sampler, reason = open_sampler()
    assert sampler is None
    assert "jtop" in reason and "tegrastats" in reason
    assert open_sampler(prefer="none") == (None, "power sampling disabled (--power none)")


# ---------------------------------------------------------------- throttling, nvpmodel, clocks
def test_throttling_by_temperature_and_clock_drop():
    busy = fixture_lines("orin_nano")[0]  # GR3D 99% @ 612 MHz, gpu@58.6C
    cool = detect_throttling([parse_line(busy)] * 3)
    assert not cool.throttled and cool.max_temp_sensor == "gpu" and cool.gpu_clock_drop == 0.0
    hot = detect_throttling([parse_line(busy)], temp_limit_c=55.0)
    assert hot.throttled and "gpu reached 58.6 C" in hot.reasons[0]
    slowed = busy.replace("GR3D_FREQ 99%@[612]", "GR3D_FREQ 99%@[306]")
    drop = detect_throttling([parse_line(busy), parse_line(slowed)])
    assert drop.throttled and drop.gpu_clock_drop == pytest.approx(0.5)
    assert "GPU clock fell 50%" in drop.reasons[0]
    idle = fixture_lines("orin_nano")[1]  # 0% load at 305 MHz: DVFS, not throttling
    assert not detect_throttling([parse_line(busy), parse_line(idle)]).throttled
    agx = detect_throttling([parse_line(fixture_lines("agx_orin")[0])], temp_limit_c=75.0)  # 12 cores busy, 77.3C
    assert agx.throttled and agx.cpu_clock_drop is None
    assert detect_throttling([]).as_dict()["max_temp_c"] is None
    # PMIC@100C on Xavier/Nano is a placeholder, never a throttling reason
    assert not detect_throttling([parse_line(ln) for ln in fixture_lines("nano")]).throttled


def test_parse_nvpmodel():
    assert parse_nvpmodel("NV Power Mode: MAXN\n0\n") == {"name": "MAXN", "id": 0}
    warn = "NVPM WARN: fan mode is not set!\nNV Power Mode: 15W\n2\n"
    assert parse_nvpmodel(warn) == {"name": "15W", "id": 2}
    assert parse_nvpmodel("NV Power Mode: MODE_15W_DESKTOP\n") == {"name": "MODE_15W_DESKTOP", "id": None}
    assert parse_nvpmodel("command not found") is None


def test_read_clocks_from_a_fake_sysfs(tmp_path):
    for cpu, khz in (("cpu0", "1497600"), ("cpu1", "729600")):
        d = tmp_path / "devices/system/cpu" / cpu / "cpufreq"
        d.mkdir(parents=True)
        (d / "scaling_cur_freq").write_text(khz + "\n")
    gpu = tmp_path / "class/devfreq/17000000.ga10b"
    gpu.mkdir(parents=True)
    (gpu / "cur_freq").write_text("612000000\n")
    bad = tmp_path / "class/devfreq/broken"
    bad.mkdir(parents=True)
    (bad / "cur_freq").write_text("n/a\n")
    assert read_clocks(tmp_path) == {
        "cpu_mhz": {"cpu0": 1497.6, "cpu1": 729.6},
        "devfreq_mhz": {"17000000.ga10b": 612.0},
    }
    assert read_clocks(tmp_path / "missing") == {"cpu_mhz": {}, "devfreq_mhz": {}}

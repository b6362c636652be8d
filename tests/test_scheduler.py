"""The central scheduler: tokens across the clock domains, overlap accounting, deadlocks,
token renumbering, the whole-machine program, energy, the trace-event timeline, and
`hpim run-isa` on mixed programs.

Cycle counts are derived by hand on the `hpim` preset: HBM-PIM at 5.2 Gb/s, tCK = 4 / 5.2 =
10/13 ns, a fresh channel's first command at cycle 0, RD_OUT complete nCL + nBL = 21
cycles after it issues, consecutive RD_OUTs nCCDL = 4 apart; SRAM-PIM at 1 GHz (1 ns), a
3-stage pipeline (a core's first instruction dispatches at cycle 2), `scalar n=N` N cycles.
"""

import json
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from hpim_ir.cli import main
from hpim_ir.errors import HpimError
from hpim_ir.hardware import load_hardware
from hpim_ir.sim.program import parse_program, read_program
from hpim_ir.sim.scheduler import Clocks, simulate_machine
from hpim_ir.sim.trace_events import trace_events

HW = load_hardware("hpim")
EXAMPLE = Path(__file__).parent.parent / "examples" / "attention_head.mlir"


def program(hbm: str, sram: str, section: str = "", repeat: int = 1):
    """A one-section program from the bodies of its two streams."""
    attributes = f'section = "{section}", repeat = {repeat} : i64' if section else ""
    attributes = f" attributes {{{attributes}}}" if attributes else ""
    return parse_program(
        f"builtin.module {{\n  hbm_isa.stream{attributes} {{\n{hbm}\n  }}\n"
        f"  sram_isa.stream{attributes} {{\n{sram}\n  }}\n}}\n",
        "t.mlir",
    )


def run(hbm: str, sram: str, **kwargs):
    return simulate_machine(program(hbm, sram), HW, **kwargs)


# ---------------------------------------------------------------------------------------
# Clocks


def test_clock_conversions_round_up_into_the_receiver() -> None:
    clocks = Clocks.of(HW)
    assert (clocks.hbm_ns, clocks.sram_ns) == (Fraction(10, 13), Fraction(1))
    # 13 HBM cycles are exactly 10 ns; 1 HBM cycle (0.77 ns) is within SRAM cycle 1.
    assert [clocks.hbm_to_sram(c) for c in (0, 1, 13, 14, 21)] == [0, 1, 10, 11, 17]
    # 1 ns is 1.3 HBM cycles: the next HBM cycle is 2; 10 ns is exactly 13.
    assert [clocks.sram_to_hbm(c) for c in (0, 1, 10, 11)] == [0, 2, 13, 15]
    assert clocks.units == (10, 13)  # in 1/13 ns


# ---------------------------------------------------------------------------------------
# Tokens


def test_token_from_hbm_crosses_into_sram_cycles() -> None:
    # HBM: RD_OUT at 0, complete at 21; the signal raises token 0 at HBM cycle 21
    # = 16.15 ns, i.e. SRAM cycle 17. Core 0 reaches the wait at 2, leaves it at 17; the
    # scalar dispatches at 18 and completes at 23.
    result = run(
        "    hbm_isa.readout ch 0 to 1 n 1\n    hbm_isa.signal tok 0",
        "    sram_isa.wait cores 0 to 1 tok 0\n    sram_isa.scalar cores 0 to 1 n 5",
    )
    assert result.tokens == {0: ("hbm", 21 * 10 / 13)}
    assert result.sram_start.tolist() == [17, 18]
    assert result.sram_end.tolist() == [17, 23]
    assert (result.sram.cycles, result.ns) == (23, 23.0)


@pytest.mark.parametrize(("scalar", "released"), [(8, 13), (9, 15)])
def test_hbm_wait_released_at_the_signal_time(scalar: int, released: int) -> None:
    # Core 0: scalar from 2 to 2 + N; the signal (dispatched at 3) raises the token when
    # the scalar completes, at 2 + N. N = 8: SRAM cycle 10 = 10 ns = HBM cycle 13 exactly;
    # N = 9: 11 ns = 14.3 HBM cycles, so cycle 15. The RD_OUT issues then, complete 21 later.
    result = run(
        "    hbm_isa.wait tok 0\n    hbm_isa.readout ch 0 to 1 n 1",
        f"    sram_isa.scalar cores 0 to 1 n {scalar}\n    sram_isa.signal cores 0 to 1 tok 0",
    )
    assert result.tokens == {0: ("sram", 2.0 + scalar)}
    # The wait takes effect when the token arrives (the engine's timeline has the stall:
    # from when every earlier command had completed, none here, to the token).
    assert result.hbm_start.tolist() == [released, released]
    wait = result.hbm.timeline[result.hbm.timeline["record"] == 0]
    assert wait[["channel", "start", "end"]].tolist() == [(-1, 0, released)]
    assert result.hbm_end.tolist() == [released, released + 21]
    assert result.hbm.cycles == released + 21


def test_tokens_of_a_repeated_section_are_renumbered_per_iteration() -> None:
    # Each iteration's wait is for its own iteration's signal. HBM: RD_OUTs at 0, 4, 8
    # (nCCDL), each signal when everything before it is complete: 21, 25, 29 HBM cycles =
    # SRAM 17, 20, 23 (16.2, 19.2, 22.3 ns). Core 0: wait -> 17, scalar 18..19, wait -> 20,
    # scalar 21..22, wait -> 23, scalar 24..25.
    step = program(
        "    hbm_isa.readout ch 0 to 1 n 1\n    hbm_isa.signal tok 0",
        "    sram_isa.wait cores 0 to 1 tok 0\n    sram_isa.scalar cores 0 to 1 n 1",
        section="layers",
        repeat=3,
    )
    result = simulate_machine(step, HW)
    assert result.step.token_origin.tolist() == [[0, 0], [0, 1], [0, 2]]
    assert result.step.token_name(2) == "token 0 (iteration 2 of section 'layers')"
    assert [cycle for _, cycle in result.tokens.values()] == pytest.approx(
        [21 * 10 / 13, 25 * 10 / 13, 29 * 10 / 13]
    )
    assert result.sram_end.tolist() == [17, 19, 20, 22, 23, 25]


# ---------------------------------------------------------------------------------------
# Busy, idle, overlap


def test_overlap_busy_and_idle_on_a_tiny_program() -> None:
    # No sync: HBM RD_OUTs at 0, 4, 8, the last complete at 29 HBM cycles = 290/13 ns
    # (22.31); SRAM core 0 busy from 2 to 32 ns. Both busy from 2 to 290/13 ns: 264/13 ns.
    # The step ends at 32 ns: 41.6, so 42 HBM cycles (busy 29, idle 13); 32 SRAM cycles
    # (busy 30, idle 2).
    result = run(
        "    hbm_isa.readout ch 0 to 1 n 3",
        "    sram_isa.scalar cores 0 to 1 n 30",
    )
    assert result.ns == 32.0
    assert result.overlap_ns == pytest.approx(264 / 13)
    hbm, sram = result.hbm_report, result.sram_report
    assert (hbm.cycles, hbm.total_cycles, hbm.busy_cycles, hbm.idle_cycles) == (29, 42, 29, 13)
    assert (sram.cycles, sram.total_cycles, sram.busy_cycles, sram.idle_cycles) == (32, 32, 30, 2)
    assert hbm.busy[:2] == (29, 0) and sum(hbm.busy) == 29
    assert sram.busy[:2] == (30, 0)
    assert hbm.overlap_ns == sram.overlap_ns == result.overlap_ns


def test_part_shares_split_each_instant_by_the_units_working() -> None:
    # HBM channel 0: RD_OUT at 0, complete 21 HBM cycles = 210/13 ns (16.15), for qkv.
    # Core 0: scalar from 2 to 12 ns, for attention. A channel weighs 32 (the cores), a core
    # 64 (the channels): [0, 2) qkv alone; [2, 12) qkv 32/96, attention 64/96; then qkv.
    result = run(
        '    hbm_isa.readout ch 0 to 1 n 1 {part = "qkv"}',
        '    sram_isa.scalar cores 0 to 1 n 10 {part = "attention"}',
    )
    times = result.part_times()
    assert times.share_ns["qkv"] == pytest.approx(2 + 10 / 3 + (210 / 13 - 12))
    assert times.share_ns["attention"] == pytest.approx(20 / 3)
    assert times.span_ns == pytest.approx({"qkv": 210 / 13, "attention": 10.0})
    assert times.idle_ns == pytest.approx(0.0)
    assert sum(times.share_ns.values()) + times.idle_ns == pytest.approx(result.ns)


def test_part_shares_leave_the_time_no_unit_works_idle() -> None:
    # The RD_OUT (untagged) to 210/13 ns; the token reaches core 0 at 17 ns, the scalar runs
    # 18 to 23: nothing works from 210/13 to 18 ns; the waits are no work.
    result = run(
        "    hbm_isa.readout ch 0 to 1 n 1\n    hbm_isa.signal tok 0",
        '    sram_isa.wait cores 0 to 1 tok 0\n    sram_isa.scalar cores 0 to 1 n 5 {part = "ffn"}',
    )
    times = result.part_times()
    assert times.share_ns == pytest.approx({"": 210 / 13, "ffn": 5.0})
    assert times.idle_ns == pytest.approx(18 - 210 / 13)
    assert result.ns == 23.0


def test_busy_is_the_union_over_channels_and_cores() -> None:
    # Two channels busy at the same time count once for the subsystem, once each for
    # themselves; a wait is no work.
    result = run(
        "    hbm_isa.readout ch 0 to 2 n 1\n    hbm_isa.wait tok 0\n"
        "    hbm_isa.readout ch 0 to 1 n 1",
        "    sram_isa.scalar cores 0 to 2 n 40\n    sram_isa.signal cores 0 to 2 tok 0",
    )
    # Channels 0 and 1: RD_OUT at 0, complete 21. The token at SRAM 42 = HBM 54.6 -> 55;
    # channel 0's second RD_OUT at 55, complete 76.
    assert result.hbm_report.busy[:3] == (21 + 21, 21, 0)
    assert result.hbm_report.busy_cycles == 42
    assert result.sram_report.busy[:3] == (40, 40, 0)
    assert result.sram_report.busy_cycles == 40


# ---------------------------------------------------------------------------------------
# Deadlocks


def deadlock(hbm: str, sram: str) -> str:
    with pytest.raises(HpimError) as error:
        run(hbm, sram)
    return str(error.value)


def test_a_token_nothing_raises() -> None:
    message = deadlock("    hbm_isa.readout ch 0 to 1 n 1", "    sram_isa.wait cores 0 to 2 tok 7")
    assert message == (
        "deadlock on token 7: sram.wait tok=7 cores=0:2 at t.mlir:6 waits for it, and no "
        "instruction raises it"
    )


def test_a_raiser_behind_a_wait_on_the_other_side() -> None:
    # HBM waits for token 1 before it raises token 0; SRAM waits for token 0 before it
    # raises token 1.
    message = deadlock(
        "    hbm_isa.wait tok 1\n    hbm_isa.signal tok 0",
        "    sram_isa.wait cores 0 to 1 tok 0\n    sram_isa.signal cores 0 to 1 tok 1",
    )
    assert message == (
        "deadlock on token 1: hbm.wait tok=1 at t.mlir:3 (every channel) waits for it; "
        "sram.signal tok=1 cores=0:1 at t.mlir:8 would raise it, but core 0 stops before "
        "it, at sram.wait tok=0 cores=0:1 at t.mlir:7 (waiting for token 0)"
    )


def test_a_raiser_only_some_cores_reach() -> None:
    # Core 1 waits for a token that core 0 raises only after a wait for the signal core 1
    # would raise: both wait forever; the signal needs cores 0 and 1.
    message = deadlock(
        "",
        "    sram_isa.wait cores 0 to 1 tok 3\n    sram_isa.signal cores 0 to 2 tok 4\n"
        "    sram_isa.wait cores 1 to 2 tok 4\n    sram_isa.signal cores 1 to 2 tok 3",
    )
    assert message == (
        "deadlock on token 3: sram.wait tok=3 cores=0:1 at t.mlir:6 on core 0 waits for it; "
        "sram.signal tok=3 cores=1:2 at t.mlir:9 would raise it, but core 1 stops before it, "
        "at sram.wait tok=4 cores=1:2 at t.mlir:8 (waiting for token 4)"
    )


def test_an_hbm_wait_before_its_own_signal() -> None:
    message = deadlock("    hbm_isa.wait tok 2\n    hbm_isa.signal tok 2", "")
    assert message == (
        "t.mlir:3: hbm.wait tok=2 waits for a token that nothing raises before it (no earlier "
        "hbm.signal, and no other stream provides it): hbm.signal tok=2 at t.mlir:4 raises it "
        "only after the wait (a deadlock)"
    )


def test_a_token_raised_by_both_subsystems() -> None:
    message = deadlock(
        "    hbm_isa.signal tok 5", "    sram_isa.signal cores 0 to 32 tok 5"
    )
    assert message == (
        "token 5 is raised by hbm.signal tok=5 at t.mlir:3 and by sram.signal tok=5 "
        "cores=0:32 at t.mlir:6: a token is raised once"
    )


def test_a_wait_outside_the_repeated_section_of_its_token() -> None:
    text = """builtin.module {
  hbm_isa.stream attributes {section = "layers", repeat = 2 : i64} {
    hbm_isa.signal tok 0
  }
  sram_isa.stream attributes {section = "epilogue"} {
    sram_isa.wait cores 0 to 1 tok 0
  }
}
"""
    with pytest.raises(HpimError) as error:
        simulate_machine(parse_program(text, "t.mlir"), HW)
    assert str(error.value) == (
        "sram.wait tok=0 cores=0:1 at t.mlir:6 waits for token 0, which hbm.signal tok=0 at "
        "t.mlir:3 (iteration 0 of section 'layers') raises in every iteration of section "
        "'layers' (repeat=2): a wait outside that section cannot say which iteration's it means"
    )


def test_sections_must_repeat_together() -> None:
    text = """builtin.module {
  hbm_isa.stream attributes {section = "layers", repeat = 2 : i64} {
  }
  sram_isa.stream attributes {section = "layers", repeat = 3 : i64} {
  }
}
"""
    with pytest.raises(HpimError, match="section 'layers': hbm_isa.stream repeat=2 but "
                       "sram_isa.stream repeat=3"):
        parse_program(text, "t.mlir")


def test_a_context_dependent_program_needs_a_context() -> None:
    with pytest.raises(HpimError) as error:
        simulate_machine(read_program(EXAMPLE), HW)
    assert str(error.value).startswith(
        f"{EXAMPLE}:57: sram.alloc depends on the context length (ctx=); give one to simulate it"
    )


# ---------------------------------------------------------------------------------------
# The example, its report, energy and trace


@pytest.fixture(scope="module")
def example():
    return simulate_machine(read_program(EXAMPLE), HW, ctx=512)


def test_example_reports_are_consistent(example) -> None:
    result = example
    hbm, sram = result.hbm_report, result.sram_report
    assert result.ns == max(hbm.ns, sram.ns)
    assert 0 < result.overlap_ns <= min(hbm.busy_ns, sram.busy_ns)
    assert hbm.busy_cycles + hbm.idle_cycles == hbm.total_cycles
    # Channels 0..11 and cores 0..11 do the work, nothing else.
    assert all(b > 0 for b in hbm.busy[:12]) and not any(hbm.busy[12:])
    assert all(b > 0 for b in sram.busy[:12]) and not any(sram.busy[12:])
    # Tokens alternate between the subsystems in program order.
    assert [side for side, _ in result.tokens.values()] == ["sram", "hbm", "hbm", "hbm", "sram", "hbm"]
    times = [ns for _, ns in result.tokens.values()]
    assert times == sorted(times)
    # Per record timelines: every SRAM record between the first and last dispatch.
    assert len(result.sram_start) == len(result.step.sram.records)
    assert (result.sram_end >= result.sram_start).all()
    assert result.sram_end.max() == result.sram.cycles
    assert result.hbm_end.max() == result.hbm.cycles


def test_sram_energy_counts_the_work(example) -> None:
    # q.K^T and s.V: 12 cores x (64 x 513 + 513 x 64) MACs at 0.068 pJ; the static power of
    # 32 cores at 20 mW over the step.
    energy = example.sram_report.energy_pj
    assert energy["pim"] >= 12 * 2 * 64 * 513 * 0.068
    assert energy["static"] == pytest.approx(32 * 20 * example.ns)
    assert energy["tcu"] == 0
    assert energy["total"] == pytest.approx(sum(v for k, v in energy.items() if k != "total"))
    # HBM: background over the whole step, not only the HBM-PIM stream's own cycles.
    assert example.hbm_report.energy_pj["background"] == pytest.approx(
        HW.hbm.energy.background_mw * 64 * example.ns
    )
    assert example.energy_pj["total"] == pytest.approx(
        example.hbm_report.energy_pj["total"] + energy["total"]
    )


def test_trace_events_are_valid_and_named(example) -> None:
    trace = json.loads(json.dumps(trace_events(example)))
    events = trace["traceEvents"]
    assert isinstance(events, list) and events
    named: dict[tuple[int, int], str] = {}
    for event in events:
        assert {"ph", "pid", "tid", "name"} <= set(event)
        if event["ph"] == "M":
            if event["name"] == "thread_name":
                named[event["pid"], event["tid"]] = event["args"]["name"]
            continue
        assert event["ph"] in ("X", "i")
        assert event["ts"] >= 0
        if event["ph"] == "X":
            assert event["dur"] > 0
    slices = [e for e in events if e["ph"] == "X"]
    # Every slice is on a named track, and slices on one track do not overlap.
    by_track: dict[tuple[int, int], list[tuple[float, float]]] = {}
    for event in slices:
        assert (event["pid"], event["tid"]) in named
        by_track.setdefault((event["pid"], event["tid"]), []).append(
            (event["ts"], event["ts"] + event["dur"])
        )
    for spans in by_track.values():
        spans.sort()
        assert all(a[1] <= b[0] + 1e-9 for a, b in zip(spans, spans[1:]))
    names = {e["name"] for e in slices}
    assert {"gemv", "load_gb", "readout", "mvm", "softmax", "transpose", "load"} <= names
    # The 12 busy channels run the same records at the same cycles: one track.
    hbm_tracks = {named[key] for key in by_track if key[0] == 1}
    assert "channels 0-11" in hbm_tracks
    gemv = next(e for e in slices if e["name"] == "gemv")
    assert gemv["args"]["section"] == "attention" and gemv["args"]["rows"] == 1
    assert gemv["args"]["line"] > 0


# ---------------------------------------------------------------------------------------
# hpim run-isa


def test_run_isa_on_the_example(capsys, tmp_path) -> None:
    trace = tmp_path / "t.json"
    argv = ["run-isa", str(EXAMPLE), "--hw", "hpim", "--ctx", "512", "--json", "--trace", str(trace)]
    assert main(argv) == 0
    report = json.loads(capsys.readouterr().out)
    assert set(report) >= {"hardware", "ctx", "ns", "overlap_ns", "energy_pj", "hbm", "sram", "tokens"}
    assert report["ctx"] == 512
    assert report["ns"] == pytest.approx(max(report["hbm"]["ns"], report["sram"]["ns"]))
    machine = report["sram"]["machine"]
    assert machine["busy_cycles"] + machine["idle_cycles"] == machine["total_cycles"]
    assert json.loads(trace.read_text())["traceEvents"]
    assert main(["run-isa", str(EXAMPLE), "--hw", "hpim", "--ctx", "512"]) == 0
    out = capsys.readouterr().out
    assert "overlap" in out and "SRAM-PIM" in out


def test_run_isa_errors_without_traceback(capsys, tmp_path) -> None:
    bad = tmp_path / "bad.mlir"
    bad.write_text(
        "builtin.module {\n  sram_isa.stream {\n    sram_isa.wait cores 0 to 1 tok 3\n  }\n}\n"
    )
    assert main(["run-isa", str(bad), "--hw", "hpim"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("hpim run-isa: error: deadlock on token 3: sram.wait tok=3 cores=0:1 at")
    assert "Traceback" not in err
    assert main(["run-isa", str(bad), "--hw", "hbm3-5.2gbps"]) == 1
    assert "has no SRAM-PIM subsystem" in capsys.readouterr().err


def test_per_record_parts_and_origins_map_back() -> None:
    step = program(
        "    hbm_isa.readout ch 0 to 1 n 1 {part = \"qkv\"}",
        "    sram_isa.scalar cores 0 to 1 n 1 {part = \"attention\"}",
        section="layers",
        repeat=2,
    ).step(HW)
    assert step.hbm_parts().tolist() == ["qkv", "qkv"]
    assert step.sram_parts().tolist() == ["attention", "attention"]
    assert step.sram_origin.iteration.tolist() == [0, 1]
    assert step.sram_origin.record.tolist() == [0, 0]
    assert np.array_equal(step.hbm_program_index, [0, 0])


def test_run_isa_traces_an_hbm_only_program(capsys, tmp_path) -> None:
    # Assembly goes through the same scheduler (no SRAM-PIM stream): its JSON is the HBM-PIM
    # engine's, its trace has the channels and the signal and cross-channel barrier.
    program = tmp_path / "g.hpimasm"
    program.write_text(
        "hbm.load_gb ch=0:2 cols=4\nhbm.gemv ch=0:2 row=10 rows=3 cols=4\nhbm.signal tok=1\n"
        "hbm.barrier\nhbm.readout ch=1 n=2\n"
    )
    trace = tmp_path / "g.json"
    argv = ["run-isa", str(program), "--hw", "hbm3-5.2gbps", "--json", "--trace", str(trace)]
    assert main(argv) == 0
    assert set(json.loads(capsys.readouterr().out)) == {
        "hardware", "engine", "cycles", "ns", "tck_ns", "channel_cycles", "commands",
        "controller_commands", "energy_pj",
    }
    events = json.loads(trace.read_text())["traceEvents"]
    tracks = {e["args"]["name"] for e in events if e["name"] == "thread_name"}
    assert tracks == {"channel 0", "channel 1", "sync"}  # channel 1 also reads out
    assert sorted(e["name"] for e in events if e["ph"] == "i") == ["barrier", "signal"]

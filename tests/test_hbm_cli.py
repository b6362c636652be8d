"""`hpim run-isa`: JSON and summary output, the command trace, energy, context lengths,
sections, and bad input."""

import json

import pytest

from hpim_ir.cli import main
from hpim_ir.hardware import load_hardware
from tests.hbm_checker import check_trace

PROGRAM = """# two channels: load the buffer, a GEMV over 3 rows, read the results
hbm.load_gb ch=0:2 cols=4
hbm.gemv ch=0:2 row=10 rows=3 cols=4
hbm.barrier
hbm.readout ch=1 n=2
"""


@pytest.fixture
def program(tmp_path):
    path = tmp_path / "gemv.hpimasm"
    path.write_text(PROGRAM)
    return path


def run_json(capsys, *argv: str) -> dict:
    assert main(["run-isa", *argv, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_json_report(capsys, program):
    report = run_json(capsys, str(program), "--hw", "hbm3-5.2gbps")
    # Per channel: WR_GB 0, 4, 8, 12; ACT 12 (in order after the last WR_GB); MACs from
    # 31 (nRCD), i.e. max(31, 12 + nCWL + nBL = 20) = 31: 31, 37, 43, 49; PRE at
    # max(12 + nRAS = 57, 49 + nRTP = 57) = 57; ACT 76; MACs 95..113; PRE 121; ACT 140;
    # MACs 159, 165, 171, 177 (done 198). After the barrier at 198, channel 1 reads out at
    # 198 and 202 (nCCDL); done at 202 + nCL + nBL = 223.
    assert report["cycles"] == 223
    assert report["channel_cycles"][:3] == [198, 223, 0]
    assert report["ns"] == pytest.approx(223 * 4 / 5.2)
    assert report["commands"] == {
        "ACT_AB": 6, "PRE_AB": 4, "REF_AB": 0, "MAC_AB": 24, "WR_GB": 8, "RD_OUT": 2,
        "ACT": 0, "PRE": 0, "RD": 0, "WR": 0, "RDA": 0, "WRA": 0,
    }  # fmt: skip
    assert report["controller_commands"] == {
        "ACT_AB": 6, "PRE_AB": 4, "REF_AB": 0, "ACT": 0, "PRE": 0
    }  # fmt: skip
    energy = load_hardware("hbm3-5.2gbps").hbm.energy
    assert report["energy_pj"]["MAC_AB"] == pytest.approx(24 * energy.mac_ab)
    assert report["energy_pj"]["background"] == pytest.approx(
        energy.background_mw * 16 * report["ns"]
    )
    parts = sum(value for name, value in report["energy_pj"].items() if name != "total")
    assert report["energy_pj"]["total"] == pytest.approx(parts)


def test_reference_engine_reports_the_same(capsys, program):
    fast = run_json(capsys, str(program), "--hw", "hbm3-5.2gbps-npc")
    reference = run_json(capsys, str(program), "--hw", "hbm3-5.2gbps-npc", "--engine", "reference")
    assert fast.pop("engine") == "fast" and reference.pop("engine") == "reference"
    assert fast == reference


def test_summary_and_trace_file(capsys, program, tmp_path):
    trace = tmp_path / "trace.csv"
    assert main(["run-isa", str(program), "--hw", "hbm3-5.2gbps", "--trace-commands",
                 str(trace)]) == 0
    out = capsys.readouterr().out
    assert "cycles        223 (" in out
    assert "MAC_AB 24" in out
    text = trace.read_text()
    assert text.splitlines()[0] == (
        "cycle,channel,pseudo_channel,rank,bank_group,bank,command,row,column"
    )
    assert len(text.splitlines()) == 1 + 6 + 4 + 24 + 8 + 2
    assert check_trace(text, load_hardware("hbm3-5.2gbps").hbm) == []


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("hbm.mac_ab ch=16 row=0 col=0",
         "bad.hpimasm:2: hbm.mac_ab ch=16 is out of range: hbm3-5.2gbps has 16 channels (0..15)"),
        ("hbm.gemv ch=0:17 row=0 rows=1 cols=1",
         "bad.hpimasm:2: hbm.gemv ch=0:17 is out of range: hbm3-5.2gbps has 16 channels"),
        ("hbm.mac_ab ch=0 row=16384 col=0",
         "bad.hpimasm:2: hbm.mac_ab row=16384 is out of range: hbm3-5.2gbps has 16384 rows"),
        ("hbm.gemv ch=0 row=16000 rows=400 cols=1",
         "bad.hpimasm:2: hbm.gemv row=16000 rows=400 is out of range"),
        ("hbm.mac_ab ch=0 row=0 col=32",
         "bad.hpimasm:2: hbm.mac_ab col=32 is out of range: hbm3-5.2gbps has 32 columns"),
        ("hbm.wr_gb ch=0 col=40",
         "bad.hpimasm:2: hbm.wr_gb col=40 is out of range: hbm3-5.2gbps has 32 global-buffer"),
        ("hbm.load_gb ch=0 cols=33",
         "bad.hpimasm:2: hbm.load_gb cols=33 is out of range"),
        ("hbm.wait tok=7",
         "bad.hpimasm:2: hbm.wait tok=7 waits for a token that nothing raises before it"),
        ("hbm.rd ch=0 bank=64 row=0 col=0",
         "bad.hpimasm:2: hbm.rd bank=64 is out of range: hbm3-5.2gbps has 64 banks per channel"),
        ("hbm.wra ch=0 bank=3 row=0 col=32",
         "bad.hpimasm:2: hbm.wra col=32 is out of range: hbm3-5.2gbps has 32 columns (0..31)"),
        ("hbm.read ch=0 row=16380 rows=5 cols=32",
         "bad.hpimasm:2: hbm.read row=16380 rows=5 is out of range"),
        ("hbm.write ch=0:2 row=0 rows=1 cols=33",
         "bad.hpimasm:2: hbm.write cols=33 is out of range: hbm3-5.2gbps has 32 columns (1..32)"),
        ("hbm.read ch=0 row=0 rows=0 cols=32 ctx=1/4",
         "bad.hpimasm:2: hbm.read depends on the context length (ctx=); give one to simulate"),
    ],
)
def test_out_of_range_names_the_line(capsys, tmp_path, line, message):
    path = tmp_path / "bad.hpimasm"
    path.write_text(f"hbm.wr_gb ch=0 col=0\n{line}\nhbm.signal tok=7\n")
    assert main(["run-isa", str(path), "--hw", "hbm3-5.2gbps"]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"hpim run-isa: error: {path.parent}/{message}"), err
    assert "Traceback" not in err


def test_missing_file_and_bad_engine(capsys, tmp_path):
    assert main(["run-isa", str(tmp_path / "none.hpimasm"), "--hw", "hbm3-5.2gbps"]) == 1
    assert "cannot read" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["run-isa", "x.hpimasm", "--engine", "slow"])


def test_context_length_binds_the_counts(capsys, tmp_path):
    # rows = 1 + ceil(3 * 7 / 8) = 4 at ctx 7: the same as the program written with rows=4.
    path = tmp_path / "cache.hpimasm"
    path.write_text("hbm.read ch=0:2 row=100 rows=1 cols=32 ctx=3/8\n")
    bound = run_json(capsys, str(path), "--hw", "hbm3-5.2gbps", "--ctx", "7")
    path.write_text("hbm.read ch=0:2 row=100 rows=4 cols=32\n")
    assert bound == run_json(capsys, str(path), "--hw", "hbm3-5.2gbps")
    assert bound["commands"]["RD"] + bound["commands"]["RDA"] == 2 * 4 * 64 * 32
    assert main(["run-isa", str(path), "--hw", "hbm3-5.2gbps", "--ctx", "-1"]) == 1
    assert "the context length must be non-negative, got -1" in capsys.readouterr().err


def test_sections_run_repeated(capsys, tmp_path):
    # Three iterations of a GEMV 10 rows apart are the three GEMVs written out.
    path = tmp_path / "layers.hpimasm"
    path.write_text(
        "hbm.load_gb ch=0 cols=4\n.section layers repeat=3 row_stride=10\n"
        "hbm.gemv ch=0 row=5 rows=2 cols=4\n"
    )
    repeated = run_json(capsys, str(path), "--hw", "hbm3-5.2gbps")
    path.write_text(
        "hbm.load_gb ch=0 cols=4\n"
        + "".join(f"hbm.gemv ch=0 row={5 + 10 * l} rows=2 cols=4\n" for l in range(3))
    )
    assert repeated == run_json(capsys, str(path), "--hw", "hbm3-5.2gbps")
    assert repeated["commands"]["MAC_AB"] == 3 * 2 * 4
    # The last iteration's rows must exist too: 16000 + 2 x 200 + 2 > 16384.
    path.write_text(
        ".section layers repeat=3 row_stride=200\nhbm.gemv ch=0 row=16000 rows=2 cols=4\n"
    )
    assert main(["run-isa", str(path), "--hw", "hbm3-5.2gbps"]) == 1
    assert capsys.readouterr().err.startswith(
        f"hpim run-isa: error: {path}:2: hbm.gemv row=16000 rows=2 in iteration 2 of section "
        "'layers' (row_stride=200: row 16400) is out of range: hbm3-5.2gbps has 16384 rows"
    )

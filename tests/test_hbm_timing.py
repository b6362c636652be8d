"""Each timing rule of the HBM-PIM engine against a hand-derived expectation.

Values of hbm3-5.2gbps used below (cycles): nBL 2, nCL 19, nCWL 6, nRCD 19, nRP 19, nRAS 45,
nRC 63, nRTP 8, nCCDS 2, nCCDL 4, nCCDAB 6 (4 in -npc), nRRDS 2, nRRDL 4, nFAW 39, nWTRS 8,
nRTW 3, nREFI 5070, nRFC 455. Completion: MAC / RD_OUT issue + nCL + nBL = +21, WR_GB
issue + nCWL + nBL = +8. Rules the presets never let bind (nRC, nRRD, nFAW) are shown on a
preset derived with `extends`. Every test runs both engines.
"""

import pytest

from hpim_ir.asm import read_asm
from hpim_ir.errors import HpimError
from hpim_ir.hardware import load_hardware
from hpim_ir.sim.hbm import simulate

ENGINES = ("fast", "reference")


def run(text: str, engine: str, hw: str = "hbm3-5.2gbps"):
    return simulate(read_asm(text, "rules.hpimasm"), load_hardware(hw), engine=engine, trace=True)


def commands(result, channel: int = 0) -> list[tuple[int, str]]:
    trace = result.trace[result.trace["channel"] == channel]
    names = ["ACT_AB", "PRE_AB", "REF_AB", "MAC_AB", "WR_GB", "RD_OUT"]
    return [(int(cycle), names[command]) for cycle, command in trace[["cycle", "command"]]]


@pytest.fixture
def extended(tmp_path):
    """A preset derived from hbm3-5.2gbps with some timings overridden."""

    def make(**timing: int) -> str:
        path = tmp_path / "derived.toml"
        lines = ['extends = "hbm3-5.2gbps"', "[hbm.timing]"]
        lines += [f"{name} = {value}" for name, value in timing.items()]
        path.write_text("\n".join(lines) + "\n")
        return str(path)

    return make


@pytest.mark.parametrize("engine", ENGINES)
def test_nrcd_row_miss_activates_first(engine):
    # The row is closed: the controller activates at 0; the MAC waits nRCD = 19. It completes
    # at 19 + nCL + nBL = 40.
    result = run("hbm.mac_ab ch=0 row=7 col=0\n", engine)
    assert commands(result) == [(0, "ACT_AB"), (19, "MAC_AB")]
    assert result.cycles == 40
    assert result.controller_commands["ACT_AB"] == 1


@pytest.mark.parametrize(("engine", "hw", "gap"), [
    (engine, hw, gap) for engine in ENGINES
    for hw, gap in (("hbm3-5.2gbps", 6), ("hbm3-5.2gbps-npc", 4))
])
def test_nccdab_paces_all_bank_macs(engine, hw, gap):
    # MACs to the open row: 19, 19 + nCCDAB, 19 + 2 nCCDAB (nCCDAB = 6, or 4 without the
    # power constraint, where nCCDL = 4 is the limit).
    result = run("hbm.gemv ch=0 row=0 rows=1 cols=3\n", engine, hw)
    assert commands(result) == [
        (0, "ACT_AB"), (19, "MAC_AB"), (19 + gap, "MAC_AB"), (19 + 2 * gap, "MAC_AB")
    ]
    assert result.cycles == 19 + 2 * gap + 21


@pytest.mark.parametrize("engine", ENGINES)
def test_nras_and_nrp_on_a_row_switch(engine):
    # ACT 0, MAC 19. PRE >= max(ACT + nRAS = 45, MAC + nRTP = 27) = 45 (nRAS binds).
    # ACT >= max(PRE + nRP = 64, ACT + nRC = 63) = 64 (nRP binds). MAC at 64 + nRCD = 83.
    result = run("hbm.mac_ab ch=0 row=0 col=0\nhbm.mac_ab ch=0 row=1 col=0\n", engine)
    assert commands(result) == [
        (0, "ACT_AB"), (19, "MAC_AB"), (45, "PRE_AB"), (64, "ACT_AB"), (83, "MAC_AB")
    ]
    assert result.controller_commands == {"ACT_AB": 2, "PRE_AB": 1, "REF_AB": 0}


@pytest.mark.parametrize("engine", ENGINES)
def test_nrtp_after_the_last_mac(engine):
    # MACs at 19, 25, 31, 37, 43. PRE >= max(ACT + nRAS = 45, 43 + nRTP = 51) = 51 (nRTP
    # binds); ACT at 51 + nRP = 70; MAC at 70 + nRCD = 89.
    result = run("hbm.gemv ch=0 row=0 rows=1 cols=5\nhbm.mac_ab ch=0 row=1 col=0\n", engine)
    assert commands(result)[-4:] == [
        (43, "MAC_AB"), (51, "PRE_AB"), (70, "ACT_AB"), (89, "MAC_AB")
    ]


@pytest.mark.parametrize("engine", ENGINES)
def test_nrc_between_activates(engine, extended):
    # With nRC = 80: PRE at 45 (nRAS), ACT >= max(45 + nRP = 64, 0 + nRC = 80) = 80.
    result = run(
        "hbm.act_ab ch=0 row=0\nhbm.act_ab ch=0 row=1\n", engine, extended(nRC=80)
    )
    assert commands(result) == [(0, "ACT_AB"), (45, "PRE_AB"), (80, "ACT_AB")]
    # The PRE was the controller's (to honour the explicit ACT), the ACTs the program's.
    assert result.controller_commands == {"ACT_AB": 0, "PRE_AB": 1, "REF_AB": 0}


@pytest.mark.parametrize("engine", ENGINES)
def test_nrrd_between_activates(engine, extended):
    # With nRRDL = 100 (an all-bank ACT reaches every bank group, so consecutive ACT_ABs are
    # same-bank-group activations): ACT 0, PRE 45, ACT >= max(64, 0 + nRRDL = 100) = 100.
    result = run(
        "hbm.act_ab ch=0 row=0\nhbm.act_ab ch=0 row=1\n", engine, extended(nRRDL=100)
    )
    assert commands(result) == [(0, "ACT_AB"), (45, "PRE_AB"), (100, "ACT_AB")]


@pytest.mark.parametrize("engine", ENGINES)
def test_nfaw_counts_an_all_bank_act_once_per_rank(engine, extended):
    # Each row switch: PRE at ACT + nRAS, ACT at PRE + nRP, so ACTs at 0, 64, 128, 192.
    # With nFAW = 300 the fifth ACT waits for the first + 300 = 300 (not 192 + 64 = 256).
    text = "".join(f"hbm.act_ab ch=0 row={row}\n" for row in range(5))
    result = run(text, engine, extended(nFAW=300))
    acts = [cycle for cycle, name in commands(result) if name == "ACT_AB"]
    assert acts == [0, 64, 128, 192, 300]


@pytest.mark.parametrize("engine", ENGINES)
def test_nccd_long_between_buffer_writes(engine):
    # Consecutive WR_GBs go to one target, the global buffer: nCCDL = 4 apart.
    result = run("hbm.load_gb ch=0 cols=3\n", engine)
    assert commands(result) == [(0, "WR_GB"), (4, "WR_GB"), (8, "WR_GB")]
    assert result.cycles == 8 + 8


@pytest.mark.parametrize("engine", ENGINES)
def test_nccd_short_and_buffer_write_to_mac(engine):
    # ACT 0, MAC 19. The WR_GB goes to another target than the banks: 19 + nCCDS = 21.
    # The next MAC reads the buffer: >= max(19 + nCCDAB = 25, 21 + nCWL + nBL = 29) = 29.
    result = run(
        "hbm.mac_ab ch=0 row=0 col=0\nhbm.wr_gb ch=0 col=1\nhbm.mac_ab ch=0 row=0 col=1\n",
        engine,
    )
    assert commands(result) == [(0, "ACT_AB"), (19, "MAC_AB"), (21, "WR_GB"), (29, "MAC_AB")]


@pytest.mark.parametrize("engine", ENGINES)
def test_nwtr_write_to_read_turnaround(engine):
    # WR_GB at 0: its data ends at 0 + nCWL + nBL = 8; a read waits nWTRS = 8 more: 16.
    # The RD_OUT completes at 16 + nCL + nBL = 37.
    result = run("hbm.wr_gb ch=0 col=0\nhbm.rd_out ch=0\n", engine)
    assert commands(result) == [(0, "WR_GB"), (16, "RD_OUT")]
    assert result.cycles == 37


@pytest.mark.parametrize("engine", ENGINES)
def test_nrtw_read_to_write_turnaround(engine):
    # RD_OUT at 0: its data occupies 19..21; write data (at WR_GB + nCWL) starts nRTW = 3
    # after: WR_GB >= 0 + nCL + nBL + nRTW - nCWL = 18.
    result = run("hbm.rd_out ch=0\nhbm.wr_gb ch=0 col=0\n", engine)
    assert commands(result) == [(0, "RD_OUT"), (18, "WR_GB")]


@pytest.mark.parametrize("engine", ENGINES)
def test_readout_waits_for_the_last_mac(engine):
    # MAC at 19; its result is accumulated at 19 + nCL + nBL = 40, when RD_OUT may issue.
    result = run("hbm.mac_ab ch=0 row=0 col=0\nhbm.readout ch=0 n=2\n", engine)
    assert commands(result) == [(0, "ACT_AB"), (19, "MAC_AB"), (40, "RD_OUT"), (44, "RD_OUT")]


@pytest.mark.parametrize("engine", ENGINES)
def test_refresh_interrupts_a_mac_stream(engine):
    # MAC i at 19 + 6 i; MAC 842 would issue at 5071 >= nREFI = 5070, so refresh first:
    # PRE >= max(5070, MAC 841 at 5065 + nRTP = 5073) = 5073, REF at 5073 + nRP = 5092,
    # ACT at 5092 + nRFC = 5547, MAC 842 at 5547 + nRCD = 5566, then every 6 cycles:
    # MAC 899 at 5566 + 57 * 6 = 5908, complete at 5908 + 21 = 5929.
    text = "".join(f"hbm.mac_ab ch=0 row=0 col={i % 32}\n" for i in range(900))
    result = run(text, engine)
    trace = commands(result)
    assert trace[842:847] == [
        (5065, "MAC_AB"), (5073, "PRE_AB"), (5092, "REF_AB"), (5547, "ACT_AB"), (5566, "MAC_AB")
    ]
    assert result.cycles == 5929
    assert result.controller_commands == {"ACT_AB": 2, "PRE_AB": 1, "REF_AB": 1}


@pytest.mark.parametrize("engine", ENGINES)
def test_refresh_while_waiting_at_a_barrier(engine):
    # Channel 0 streams 1800 MACs on row 0. As in the previous test MAC 842 is at 5566; MAC
    # 1604 at 5566 + 762 * 6 = 10138; the next would be at 10144 >= 10140: PRE at 10138 +
    # nRTP = 10146, REF 10165, ACT 10620, MAC 1605 at 10639, MAC 1799 at 10639 + 194 * 6 =
    # 11803, complete at 11824. Channel 1 idles at the barrier and refreshes on time, its
    # banks closed: REF at 5070 and 10140. Its MAC then needs an ACT >= max(barrier 11824,
    # 10140 + nRFC = 10595): the barrier binds; MAC at 11843, complete at 11864.
    text = "".join(f"hbm.mac_ab ch=0 row=0 col={i % 32}\n" for i in range(1800))
    text += "hbm.barrier\nhbm.mac_ab ch=1 row=0 col=0\n"
    result = run(text, engine)
    assert result.channel_cycles[0] == 11824
    assert commands(result, channel=1) == [
        (5070, "REF_AB"), (10140, "REF_AB"), (11824, "ACT_AB"), (11843, "MAC_AB")
    ]
    assert result.cycles == 11864


@pytest.mark.parametrize("engine", ENGINES)
def test_barrier_and_tokens_order_channels(engine):
    # Channel 0's MAC completes at 40. `hbm.barrier ch=0` does not hold channel 1; the signal
    # raises token 3 at 40 (everything so far complete), and the wait holds channel 1 until
    # then: ACT 40, MAC 59. Channel 2 ran before the wait: ACT 0, MAC 19.
    text = (
        "hbm.mac_ab ch=0 row=0 col=0\nhbm.barrier ch=0\nhbm.mac_ab ch=2 row=0 col=0\n"
        "hbm.signal tok=3\nhbm.wait tok=3\nhbm.mac_ab ch=1 row=0 col=0\n"
    )
    result = run(text, engine)
    assert commands(result, channel=2) == [(0, "ACT_AB"), (19, "MAC_AB")]
    assert commands(result, channel=1) == [(40, "ACT_AB"), (59, "MAC_AB")]
    assert result.channel_cycles[:3] == (40, 80, 40)


@pytest.mark.parametrize("engine", ENGINES)
def test_open_page_absorbs_redundant_row_commands(engine):
    # ACT of the open row and PRE of closed banks issue nothing: ACT 0, MAC 19, PRE 45.
    text = (
        "hbm.act_ab ch=0 row=3\nhbm.act_ab ch=0 row=3\nhbm.mac_ab ch=0 row=3 col=0\n"
        "hbm.pre_ab ch=0\nhbm.pre_ab ch=0\n"
    )
    result = run(text, engine)
    assert commands(result) == [(0, "ACT_AB"), (19, "MAC_AB"), (45, "PRE_AB")]
    assert result.controller_commands == {"ACT_AB": 0, "PRE_AB": 0, "REF_AB": 0}


def test_a_refresh_interval_too_short_for_a_row_cycle_is_an_error(extended):
    # After a refresh the controller needs up to max(nRAS + nRP, nRTP + nRP, nRC) + nRFC +
    # nRCD = 64 + 455 + 19 = 538 cycles to reopen the row and MAC; with nREFI = 538 it would
    # refresh forever.
    with pytest.raises(HpimError, match=r"hbm.timing.nREFI = 538 .* = 538 cycles"):
        run("hbm.mac_ab ch=0 row=0 col=0\n", "fast", extended(nREFI=538))

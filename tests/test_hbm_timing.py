"""Each timing rule of the HBM-PIM engine against a hand-derived expectation.

Values of hbm3-5.2gbps used below (cycles): nBL 2, nCL 19, nCWL 6, nRCD 19, nRP 19, nRAS 45,
nRC 63, nWR 21, nRTP 8, nCCDS 2, nCCDL 4, nCCDAB 6 (4 in -npc), nRRDS 2, nRRDL 4, nFAW 39,
nWTRS 8, nWTRL 11, nRTW 3, nREFI 5070, nRFC 455. Completion: MAC / RD_OUT / RD issue + nCL +
nBL = +21, WR_GB / WR issue + nCWL + nBL = +8. Rules the presets never let bind (nRC, nRRD,
nFAW for all-bank ACTs) are shown on a preset derived with `extends`. Every test runs both
engines.

Banks of hbm3-5.2gbps (2 pseudo-channels x 2 ranks x 4 bank groups x 4 banks) used below:
bank 0 (pseudo-channel 0, rank 0, group 0, bank 0), bank 1 (the same group), bank 4 (the same
rank, group 1), bank 16 (rank 1), bank 32 (pseudo-channel 1).
"""

import pytest

from hpim_ir.asm import read_asm
from hpim_ir.errors import HpimError
from hpim_ir.hardware import load_hardware
from hpim_ir.sim.hbm import Cmd, simulate

ENGINES = ("fast", "reference")


def run(text: str, engine: str, hw: str = "hbm3-5.2gbps"):
    return simulate(read_asm(text, "rules.hpimasm"), load_hardware(hw), engine=engine, trace=True)


def commands(result, channel: int = 0) -> list[tuple[int, str]]:
    trace = result.trace[result.trace["channel"] == channel]
    return [(int(cycle), Cmd(command).name) for cycle, command in trace[["cycle", "command"]]]


def bank_commands(result) -> list[tuple[int, str, int | None]]:
    """(cycle, command, bank number or None) of channel 0, on hbm3-5.2gbps's geometry."""
    fields = ["cycle", "command", "pseudo_channel", "rank", "bank_group", "bank"]
    return [
        (cycle, Cmd(command).name, ((pc * 2 + rank) * 4 + group) * 4 + bank if bank >= 0 else None)
        for cycle, command, pc, rank, group, bank in result.trace[fields].tolist()
    ]


NO_CONTROLLER_COMMANDS = {"ACT_AB": 0, "PRE_AB": 0, "REF_AB": 0, "ACT": 0, "PRE": 0}


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
    assert result.controller_commands == {**NO_CONTROLLER_COMMANDS, "ACT_AB": 2, "PRE_AB": 1}


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
    assert result.controller_commands == {**NO_CONTROLLER_COMMANDS, "PRE_AB": 1}


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
    assert result.controller_commands == {
        **NO_CONTROLLER_COMMANDS, "ACT_AB": 2, "PRE_AB": 1, "REF_AB": 1
    }


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
    assert result.controller_commands == NO_CONTROLLER_COMMANDS


def test_a_refresh_interval_too_short_for_a_row_cycle_is_an_error(extended):
    # After a refresh the controller needs up to max(nRAS + nRP, nRTP + nRP, nCWL + nBL + nWR
    # + nRP, nRC) + nRFC + nRCD = 64 + 455 + 19 = 538 cycles to reopen the row and MAC; with
    # nREFI = 538 it would refresh forever.
    with pytest.raises(HpimError, match=r"hbm.timing.nREFI = 538 .* = 538 cycles"):
        run("hbm.mac_ab ch=0 row=0 col=0\n", "fast", extended(nREFI=538))


# --- normal mode: single-bank commands --------------------------------------------------------


@pytest.mark.parametrize("engine", ENGINES)
def test_nrcd_single_bank_row_miss(engine):
    # Bank 5 is closed: the controller activates it at 0; the RD waits nRCD = 19 and
    # completes at 19 + nCL + nBL = 40.
    result = run("hbm.rd ch=0 bank=5 row=7 col=3\n", engine)
    assert bank_commands(result) == [(0, "ACT", 5), (19, "RD", 5)]
    assert result.cycles == 40
    assert result.controller_commands == {**NO_CONTROLLER_COMMANDS, "ACT": 1}


@pytest.mark.parametrize(
    ("engine", "other", "act", "read", "rule"),
    [
        (engine, *case)
        for engine in ENGINES
        for case in [
            # ACT of the other bank: row bus 2, or nRRDL = 4 in bank 0's group. Its RD after
            # RDs of bank 0 at 19 and 23 (nCCDL, same bank): with nCCDS = 3 below,
            (1, 4, 27, "tCCD_L"),  # same bank group: 23 + nCCDL
            (4, 2, 26, "tCCD_S"),  # same rank, other group: 23 + nCCDS
            (16, 2, 25, "burst"),  # other rank, same data bus: 23 + nBL
            (32, 2, 24, "column bus"),  # other pseudo-channel: 23 + 1
        ]
    ],
)
def test_column_to_column_by_scope(engine, extended, other, act, read, rule):
    text = (
        f"hbm.act ch=0 bank=0 row=0\nhbm.act ch=0 bank={other} row=0\n"
        f"hbm.rd ch=0 bank=0 row=0 col=0\nhbm.rd ch=0 bank=0 row=0 col=1\n"
        f"hbm.rd ch=0 bank={other} row=0 col=0\n"
    )
    result = run(text, engine, extended(nCCDS=3))
    assert bank_commands(result) == [
        (0, "ACT", 0), (act, "ACT", other), (19, "RD", 0), (23, "RD", 0), (read, "RD", other)
    ]


@pytest.mark.parametrize(
    ("engine", "other", "read"),
    [
        (engine, *case)
        for engine in ENGINES
        # WR of bank 0 at 19 (nRCD); its data ends at 19 + nCWL + nBL = 27.
        for case in [
            (1, 27 + 11),  # same bank group: nWTRL
            (4, 27 + 8),  # same rank, other group: nWTRS
            (16, 27 + 8),  # other rank, same data bus: nWTRS
            (32, 21),  # other pseudo-channel: no turnaround; its ACT at 2 + nRCD binds
        ]
    ],
)
def test_write_to_read_turnaround(engine, other, read):
    text = (
        f"hbm.act ch=0 bank=0 row=0\nhbm.act ch=0 bank={other} row=0\n"
        f"hbm.wr ch=0 bank=0 row=0 col=0\nhbm.rd ch=0 bank={other} row=0 col=0\n"
    )
    result = run(text, engine)
    assert bank_commands(result)[2:] == [(19, "WR", 0), (read, "RD", other)]


@pytest.mark.parametrize(("engine", "other", "write"), [
    (engine, *case) for engine in ENGINES
    # RD of bank 0 at 19; write data may start nRTW after its data ends: WR >= 19 + nCL + nBL
    # + nRTW - nCWL = 37 on the same data bus; on the other pseudo-channel 2 + nRCD = 21.
    for case in [(1, 37), (16, 37), (32, 21)]
])  # fmt: skip
def test_read_to_write_turnaround(engine, other, write):
    text = (
        f"hbm.act ch=0 bank=0 row=0\nhbm.act ch=0 bank={other} row=0\n"
        f"hbm.rd ch=0 bank=0 row=0 col=0\nhbm.wr ch=0 bank={other} row=0 col=0\n"
    )
    result = run(text, engine)
    assert bank_commands(result)[2:] == [(19, "RD", 0), (write, "WR", other)]


@pytest.mark.parametrize("engine", ENGINES)
def test_nwr_write_recovery_before_precharge(engine):
    # ACT 0, WR 19. PRE >= max(ACT + nRAS = 45, WR + nCWL + nBL + nWR = 48) = 48 (tWR binds);
    # the next ACT of the bank >= max(48 + nRP = 67, 0 + nRC = 63) = 67.
    text = "hbm.wr ch=0 bank=9 row=0 col=0\nhbm.pre ch=0 bank=9\nhbm.act ch=0 bank=9 row=1\n"
    result = run(text, engine)
    assert bank_commands(result) == [(0, "ACT", 9), (19, "WR", 9), (48, "PRE", 9), (67, "ACT", 9)]


@pytest.mark.parametrize("engine", ENGINES)
def test_nrtp_single_bank(engine):
    # RDs of one bank nCCDL = 4 apart: 19, 23, ..., 47. PRE >= max(0 + nRAS = 45, 47 + nRTP =
    # 55) = 55.
    text = "".join(f"hbm.rd ch=0 bank=0 row=0 col={k}\n" for k in range(8))
    text += "hbm.pre ch=0 bank=0\n"
    result = run(text, engine)
    assert bank_commands(result)[-2:] == [(47, "RD", 0), (55, "PRE", 0)]


@pytest.mark.parametrize(("engine", "command", "closed"), [
    (engine, *case) for engine in ENGINES
    # ACT 0, RDA / WRA 19. The bank precharges itself at max(19 + nRTP = 27, 0 + nRAS = 45) =
    # 45 after RDA, at max(19 + nCWL + nBL + nWR = 48, 45) = 48 after WRA. The next access finds
    # it closed: ACT >= closed + nRP (and >= nRC = 63), its command nRCD later.
    for case in [("rda", 45), ("wra", 48)]
])  # fmt: skip
def test_auto_precharge(engine, command, closed):
    text = f"hbm.{command} ch=0 bank=3 row=0 col=0\nhbm.rd ch=0 bank=3 row=0 col=1\n"
    result = run(text, engine)
    act = max(closed + 19, 63)
    assert bank_commands(result) == [
        (0, "ACT", 3), (19, command.upper(), 3), (act, "ACT", 3), (act + 19, "RD", 3)
    ]
    assert result.controller_commands == {**NO_CONTROLLER_COMMANDS, "ACT": 2}


@pytest.mark.parametrize("engine", ENGINES)
def test_activations_per_rank(engine):
    # Banks 0, 4, 8, 12 (groups 0..3 of rank 0, pseudo-channel 0): 2 apart (row bus, nRRDS).
    # Bank 1 (group 0 again) would be next at 8, but four ACTs of the rank since 0 make it wait
    # for nFAW: 39. Bank 16 (rank 1) is not in that window: 41 (row bus); bank 33 (the other
    # pseudo-channel's rank 0) neither: 43.
    text = "".join(f"hbm.act ch=0 bank={b} row=0\n" for b in (0, 4, 8, 12, 1, 16, 33))
    result = run(text, engine)
    assert [cycle for cycle, _, _ in bank_commands(result)] == [0, 2, 4, 6, 39, 41, 43]


@pytest.mark.parametrize("engine", ENGINES)
def test_rrd_single_bank(engine, extended):
    # With nRRDS = 5, nRRDL = 9: bank 4 (other group) 5 after bank 0, bank 1 (bank 0's group)
    # max(5 + 5, 0 + 9) = 10.
    text = "".join(f"hbm.act ch=0 bank={b} row=0\n" for b in (0, 4, 1))
    result = run(text, engine, extended(nRRDS=5, nRRDL=9))
    assert [cycle for cycle, _, _ in bank_commands(result)] == [0, 5, 10]


@pytest.mark.parametrize("engine", ENGINES)
def test_all_bank_command_after_single_bank_rows(engine):
    # RD of bank 5 (ACT 0, RD 19) leaves one row open; a MAC needs the row in every bank: the
    # controller precharges all at max(0 + nRAS, 19 + nRTP) = 45, activates all at max(45 +
    # nRP, 0 + nRC) = 64, and MACs at 64 + nRCD = 83.
    result = run("hbm.rd ch=0 bank=5 row=3 col=0\nhbm.mac_ab ch=0 row=3 col=0\n", engine)
    assert commands(result) == [
        (0, "ACT"), (19, "RD"), (45, "PRE_AB"), (64, "ACT_AB"), (83, "MAC_AB")
    ]


@pytest.mark.parametrize("engine", ENGINES)
def test_refresh_reopens_single_bank_rows(engine):
    # Banks 0 and 1 (one group) open rows 1 and 2: ACT 0 and 4 (nRRDL). RDs of bank 0 nCCDL = 4
    # apart from 19: RD i at 19 + 4 i; RD 1263 would be at 5071 >= nREFI = 5070. Refresh:
    # PRE_AB >= max(5070, RD 1262 at 5067 + nRTP = 5075) = 5075, REF_AB at 5075 + nRP = 5094.
    # The rows differed per bank, so the controller reopens both: ACT bank 0 at 5094 + nRFC =
    # 5549, bank 1 at 5549 + nRRDL = 5553; RD 1263 at 5549 + nRCD = 5568.
    text = "hbm.act ch=0 bank=0 row=1\nhbm.act ch=0 bank=1 row=2\n"
    text += "".join(f"hbm.rd ch=0 bank=0 row=1 col={i % 32}\n" for i in range(1300))
    result = run(text, engine)
    assert bank_commands(result)[1264:1270] == [
        (5067, "RD", 0), (5075, "PRE_AB", None), (5094, "REF_AB", None),
        (5549, "ACT", 0), (5553, "ACT", 1), (5568, "RD", 0),
    ]  # fmt: skip
    assert result.controller_commands == {
        **NO_CONTROLLER_COMMANDS, "PRE_AB": 1, "REF_AB": 1, "ACT": 2
    }


# --- normal mode: the read / write macros -----------------------------------------------------


def stream_lines(write: bool, channel: int, row: int, rows: int, cols: int) -> str:
    """The raw lines `hbm.read` / `hbm.write` stands for on hbm3-5.2gbps, written out from the
    definition in docs/hbm-engine.md: lane j = (group j // 2, pseudo-channel j % 2), set s =
    (bank s // 2, rank s % 2); per row and set one pass of `cols` rounds of the 8 lanes, the
    last round with auto-precharge; the next pass's ACT of lane j after round min(j, cols - 1),
    the first pass's ACTs before its first round."""
    access, last = ("wr", "wra") if write else ("rd", "rda")
    passes = [(r, s) for r in range(row, row + rows) for s in range(8)]

    def bank(s: int, j: int) -> int:
        return (((j % 2) * 2 + s % 2) * 4 + j // 2) * 4 + s // 2

    lines = [f"hbm.act ch={channel} bank={bank(0, j)} row={row}" for j in range(8)]
    for p, (r, s) in enumerate(passes):
        for k in range(cols):
            name = last if k == cols - 1 else access
            lines += [
                f"hbm.{name} ch={channel} bank={bank(s, j)} row={r} col={k}" for j in range(8)
            ]
            if p + 1 < len(passes):
                r_next, s_next = passes[p + 1]
                lines += [
                    f"hbm.act ch={channel} bank={bank(s_next, j)} row={r_next}"
                    for j in range(8)
                    if min(j, cols - 1) == k
                ]
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize(("write", "rows", "cols"), [(False, 2, 3), (True, 1, 12), (False, 1, 1)])
@pytest.mark.parametrize("engine", ENGINES)
def test_stream_macro_is_its_raw_sequence(engine, write, rows, cols):
    macro = run(f"hbm.{'write' if write else 'read'} ch=2 row=7 rows={rows} cols={cols}\n", engine)
    raw = run(stream_lines(write, 2, 7, rows, cols), engine)
    assert macro.cycles == raw.cycles
    assert macro.commands == raw.commands
    assert (macro.trace == raw.trace).all()
    assert macro.commands["WRA" if write else "RDA"] == rows * 64


@pytest.mark.parametrize("engine", ENGINES)
def test_read_streams_one_burst_per_cycle(engine):
    # One row of every bank, 32 columns: 8 passes x 32 rounds x 8 lanes = 2048 bursts. The
    # first pass's ACTs go 2 apart (row bus) from 0, so its first round's RDs are at 19 + 2 j
    # (nRCD): 19..33. From then on every burst follows the previous one by 1 cycle (the
    # column bus; each pseudo-channel every 2 = nCCDS = nBL, each group every 8 >= nCCDL) and
    # the next pass's ACTs never hold it up: the last at 33 + 2040 = 2073, done at 2094.
    result = run("hbm.read ch=0 row=5 rows=1 cols=32\n", engine)
    bursts = [cycle for cycle, name in commands(result) if name in ("RD", "RDA")]
    assert bursts[:8] == list(range(19, 34, 2))
    assert bursts[8:] == list(range(34, 2074))
    assert result.cycles == 2094

"""The pulse generator driver against the emulator, over a real pty and over TCP."""

from __future__ import annotations

import dataclasses
import logging
import random
import socket
import time
from decimal import Decimal

import pytest

from acquisition.synchronizer import (
    RESOLUTION_S,
    DisconnectedError,
    GarbledReplyError,
    Identity,
    InstrumentError,
    NoReplyError,
    NotRunningError,
    OutOfBoundsError,
    PortNotFoundError,
    PulseGenerator,
    ReadbackMismatchError,
    SynchronizerError,
    UnrepresentableWidthError,
    WrongInstrumentError,
    format_period,
    format_time,
    quantise,
    representable,
)
from hardware_sim.pulse_generator import FaultPlan, PulseGeneratorEmulator
from hardware_sim.signals import Pulse, PulseBus

WIDTH_B, WIDTH_S, DELAY = 0.012, 0.0005, 0.000001


@pytest.fixture
def pulses() -> list[Pulse]:
    return []


@pytest.fixture
def emu(pulses):
    bus = PulseBus()
    bus.connect(1, pulses.append)
    bus.connect(2, pulses.append)
    with PulseGeneratorEmulator(bus) as emulator:
        yield emulator


def endpoint(emu: PulseGeneratorEmulator, transport: str) -> str:
    return emu.serve_pty() if transport == "pty" else f"socket://127.0.0.1:{emu.serve_tcp()}"


def unused_tcp_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# ------------------------------------------------------------------ the whole conversation
@pytest.mark.parametrize("echo", [False, True], ids=["echo-off", "echo-on"])
@pytest.mark.parametrize("transport", ["pty", "tcp"])
def test_capture_conversation(emu, pulses, transport, echo):
    emu.echo = echo
    with PulseGenerator(endpoint(emu, transport), timeout_s=0.5) as pg:
        assert pg.identity == Identity("BNC", "575-4", "SIM0001", "2.4.1-2.0.11")
        assert pg.identify() == pg.identity
        pg.reset()
        pg.configure_pair(WIDTH_B, WIDTH_S, DELAY)
        assert (pg.query(":PULSE1:WIDTH?"), pg.query(":PULS2:WIDT?")) == (
            "0.01200000000",
            "0.00050000000",
        )
        assert pg.query(":PULSE0:MODE?") == "SING"
        assert not pg.is_armed()
        with pytest.raises(NotRunningError) as refused:
            pg.trigger()
        assert refused.value.code == 8 and "*TRG" in str(refused.value)
        assert pulses == []
        pg.arm()
        assert pg.is_armed()
        pg.trigger()
        pg.trigger()
        pg.disarm()
        assert not pg.is_armed()
    assert [(p.channel, p.fire_count, p.width_s, p.delay_s, p.polarity) for p in pulses] == [
        (1, 0, WIDTH_B, DELAY, "NORM"),
        (2, 0, WIDTH_S, DELAY, "NORM"),
        (1, 1, WIDTH_B, DELAY, "NORM"),
        (2, 1, WIDTH_S, DELAY, "NORM"),
    ]
    assert pulses[0].time_ns == pulses[1].time_ns < pulses[2].time_ns == pulses[3].time_ns
    assert emu.channels[3].enabled is False


def test_exchanges_are_logged_at_debug(emu, caplog):
    with (
        caplog.at_level(logging.DEBUG, logger="acquisition.synchronizer"),
        PulseGenerator(emu.serve_pty()) as pg,
    ):
        pg.command(":PULSE1:WIDTH 0.001")
    assert any("'*IDN?' -> 'BNC,575-4" in r.getMessage() for r in caplog.records)
    assert any("':PULSE1:WIDTH 0.001' -> 'ok'" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize(
    "code, send",
    [
        (1, ("command", "PULSE1:WIDTH 0.001")),
        (2, ("command", ":PULSE1")),
        (3, ("command", ":PULSE1:FOO 1")),
        (4, ("command", ":PULSE1:WIDTH")),
        (5, ("command", ":PULSE0:MODE FAST")),
        (6, ("command", "*IDN")),
        (7, ("query", "*RST?")),
        (8, ("command", "*TRG")),
        (9, ("command", ":PULSE9:STATE ON")),
    ],
)
def test_instrument_errors_are_named(emu, code, send):
    method, line = send
    with (
        PulseGenerator(emu.serve_pty(), timeout_s=0.5) as pg,
        pytest.raises(InstrumentError) as error,
    ):
        getattr(pg, method)(line)
    assert error.value.code == code and error.value.command == line
    assert f"?{code}" in str(error.value) and line in str(error.value)
    if code == 9:
        assert isinstance(error.value, OutOfBoundsError)


@pytest.mark.parametrize("transport", ["pty", "tcp"])
def test_sharp_delay_is_sent_on_channel_b_and_read_back(emu, pulses, transport):
    """Camera S's channel (:PULSE2) gets the common delay plus the sharp delay, the emulator
    receives it as :PULSE2:DELAY, the driver queries it back and returns what is held."""
    received: list[str] = []
    handle = emu.handle_line
    emu.handle_line = lambda line: (received.append(line.strip()), handle(line))[1]
    sharp = quantise((WIDTH_B - WIDTH_S) / 2)  # 5.75 ms: S at the centre of B's window
    with PulseGenerator(endpoint(emu, transport), timeout_s=0.5) as pg:
        timing = pg.configure_pair(WIDTH_B, WIDTH_S, DELAY, sharp_delay_s=sharp)
        pg.arm()
        pg.trigger()
    assert ":PULSE2:DELAY 0.00575100000" in received and ":PULSE1:DELAY 0.00000100000" in received
    assert ":PULSE2:DELAY?" in received and ":PULSE1:DELAY?" in received
    assert received.index(":PULSE2:DELAY?") > received.index(":PULSE2:DELAY 0.00575100000")
    assert emu.channels[2].delay_s == DELAY + sharp and emu.channels[1].delay_s == DELAY
    assert (timing.width_b_s, timing.width_s_s, timing.delay_b_s) == (WIDTH_B, WIDTH_S, DELAY)
    assert timing.delay_s_s == pytest.approx(DELAY + sharp, abs=1e-15)
    assert timing.sharp_delay_s == sharp
    assert [(p.channel, p.delay_s) for p in pulses] == [(1, DELAY), (2, pytest.approx(DELAY + sharp, abs=1e-15))]
    # S's exposure [delay, delay + tS] of B's window is centred in B's [0, tL].
    assert timing.sharp_delay_s + WIDTH_S / 2 == pytest.approx(WIDTH_B / 2, abs=RESOLUTION_S)


def test_sharp_delay_beyond_the_generators_range_is_refused_before_sending(emu):
    with PulseGenerator(emu.serve_pty()) as pg:
        emu.faults = FaultPlan()
        for delay, sharp in ((0.0, 1000.0), (600.0, 500.0), (0.0, -1e-9), (0.0, 1.0000000001)):
            with pytest.raises(UnrepresentableWidthError, match="delay"):
                pg.configure_pair(WIDTH_B, WIDTH_S, delay, sharp_delay_s=sharp)
        assert emu.commands_received == 0


def test_a_sharp_delay_the_instrument_did_not_take_is_a_readback_mismatch(emu):
    delay = emu._leaves["delay"]
    emu._leaves["delay"] = dataclasses.replace(  # channel B ignores its delay
        delay, set=lambda n, arg: None if n == 2 else delay.set(n, arg)
    )
    with (
        PulseGenerator(emu.serve_pty(), timeout_s=0.5) as pg,
        pytest.raises(ReadbackMismatchError) as error,
    ):
        pg.configure_pair(WIDTH_B, WIDTH_S, sharp_delay_s=0.00575)
    assert error.value.mismatches == [(":PULSE2:DELAY", "0.00575000000", "0.00000000000")]


def test_readback_mismatch_is_reported(emu):
    width = emu._leaves["width"]
    emu._leaves["width"] = dataclasses.replace(width, set=lambda _n, _arg: None)  # ignores widths
    with (
        PulseGenerator(emu.serve_pty(), timeout_s=0.5) as pg,
        pytest.raises(ReadbackMismatchError) as error,
    ):
        pg.configure_pair(WIDTH_B, WIDTH_S)
    assert [m[0] for m in error.value.mismatches] == [":PULSE1:WIDTH", ":PULSE2:WIDTH"]
    assert "0.01200000000" in str(error.value)


def test_period(emu):
    with PulseGenerator(emu.serve_pty()) as pg:
        pg.set_period(0.1)
        assert pg.query(":PULSE0:PER?") == "0.100000000"
    assert format_period(0.1) == "0.100000000"
    with pytest.raises(UnrepresentableWidthError):
        format_period(1e-10)


# --------------------------------------------------------------------------- faults
def test_garbled_reply(emu):
    with PulseGenerator(emu.serve_pty(), timeout_s=0.3) as pg:
        emu.faults = FaultPlan(garble_after=2)
        assert pg.query(":PULSE1:WIDTH?")
        started = time.monotonic()
        with pytest.raises(GarbledReplyError, match="PULSE1:STATE"):
            pg.query(":PULSE1:STATE?")
        assert time.monotonic() - started < 0.3
        emu.faults = FaultPlan()
        assert pg.query(":PULSE1:STATE?") == "0"  # the stale garbage was flushed


@pytest.mark.parametrize("echo", [False, True], ids=["echo-off", "echo-on"])
def test_no_reply_within_the_timeout(emu, echo):
    emu.echo = echo
    with PulseGenerator(emu.serve_pty(), timeout_s=0.2, retries=0) as pg:
        emu.faults = FaultPlan(no_reply_to={":PULSE1:WIDTH?"})
        started = time.monotonic()
        with pytest.raises(NoReplyError, match=r"':PULSE1:WIDTH\?'.*0\.2 s"):
            pg.query(":PULSE1:WIDTH?")
        assert 0.2 <= time.monotonic() - started < 0.5
        assert emu.commands_received == 1
        assert pg.query(":PULSE2:WIDTH?") == "0.00000010000"


def test_no_reply_is_resent_once_after_reopening(emu):
    with PulseGenerator(emu.serve_pty(), timeout_s=0.2, retries=2) as pg:
        emu.faults = FaultPlan(no_reply_to={":PULSE1:WIDTH?"})
        with pytest.raises(NoReplyError):
            pg.query(":PULSE1:WIDTH?")
        assert emu.commands_received == 2


@pytest.mark.parametrize("transport", ["pty", "tcp"])
def test_disconnect_without_retries(emu, transport):
    with PulseGenerator(endpoint(emu, transport), timeout_s=0.3, retries=0) as pg:
        emu.faults = FaultPlan(disconnect_after=1)
        pg.query("*IDN?")
        started = time.monotonic()
        with pytest.raises(DisconnectedError, match="PULSE1:WIDTH"):
            pg.query(":PULSE1:WIDTH?")
        assert time.monotonic() - started < 0.3 + 0.4  # pyserial sleeps 0.3 s closing a socket://


def test_reconnects_and_resends_a_query_over_tcp(emu):
    with PulseGenerator(endpoint(emu, "tcp"), timeout_s=0.3, retries=1) as pg:
        emu.faults = FaultPlan(disconnect_after=1)
        pg.command(":PULSE1:WIDTH 0.002")
        assert pg.query(":PULSE1:WIDTH?") == "0.00200000000"
        assert emu.commands_received == 3  # one lost with the connection, one re-sent


def test_reconnects_to_a_new_pty_through_a_port_resolver(emu):
    paths: list[str] = []

    def resolve() -> str:
        paths.append(emu.serve_pty())
        return paths[-1]

    with PulseGenerator(resolve, timeout_s=0.3, retries=1) as pg:
        emu.faults = FaultPlan(disconnect_after=0)
        assert pg.query(":PULSE0:STATE?") == "0"
        assert len(paths) == 2 and pg.port == paths[-1]


def test_reconnect_that_fails_says_so(emu):
    paths = iter([emu.serve_pty(), "/dev/no-such-pulse-generator"])
    with PulseGenerator(lambda: next(paths), timeout_s=0.3, retries=1) as pg:
        emu.faults = FaultPlan(disconnect_after=0)
        with pytest.raises(DisconnectedError, match="no-such-pulse-generator") as error:
            pg.query("*IDN?")
    assert isinstance(error.value.__cause__, PortNotFoundError)


def test_lost_trigger_reply_is_never_resent(emu, pulses):
    with PulseGenerator(endpoint(emu, "tcp"), timeout_s=0.2, retries=3) as pg:
        pg.configure_pair(WIDTH_B, WIDTH_S)
        pg.arm()
        emu.faults = FaultPlan(no_reply_to={"*TRG"})
        with pytest.raises(NoReplyError, match="NOT re-sent.*unknown"):
            pg.trigger()
        assert emu.commands_received == 1 and emu.fire_count == 1
        assert [p.channel for p in pulses] == [1, 2]
        emu.faults = FaultPlan(disconnect_after=0)
        with pytest.raises(DisconnectedError, match="NOT re-sent.*unknown"):
            pg.trigger()
        assert emu.commands_received == 1 and emu.fire_count == 1
        assert pg.is_armed()  # the next call reopens the port
        assert emu.fire_count == 1 and len(pulses) == 2


# ------------------------------------------------------------------------ open / identity
def test_port_that_does_not_exist():
    with pytest.raises(PortNotFoundError, match="/dev/no-such-pulse-generator"):
        PulseGenerator("/dev/no-such-pulse-generator").open()
    url = f"socket://127.0.0.1:{unused_tcp_port()}"
    with pytest.raises(PortNotFoundError, match=url):
        PulseGenerator(url).open()


def test_another_instrument_is_refused():
    with PulseGeneratorEmulator(identity="KEYSIGHT,33500B,MY12345678,4.00") as emulator:
        pg = PulseGenerator(emulator.serve_pty(), timeout_s=0.3)
        with pytest.raises(WrongInstrumentError, match="KEYSIGHT 33500B"):
            pg.open()
        assert not pg.is_open
        assert pg.open(expect_family=False) is None
        assert pg.identify().make == "KEYSIGHT"
        pg.close()
        pg.close()
        with pytest.raises(SynchronizerError, match="not open"):
            pg.query("*IDN?")
    with (
        PulseGeneratorEmulator(identity="garbage") as emulator,
        pytest.raises(WrongInstrumentError),
    ):
        PulseGenerator(emulator.serve_pty(), timeout_s=0.3).open()
    with (
        PulseGeneratorEmulator(identity="QC,9524,02311,1.2.2-1.2.0") as emulator,
        PulseGenerator(emulator.serve_pty(), timeout_s=0.3) as pg,
    ):
        assert pg.identity.model == "9524"


def test_query_needs_a_question_mark(emu):
    with PulseGenerator(emu.serve_pty()) as pg, pytest.raises(ValueError):
        pg.query(":PULSE1:WIDTH")


# --------------------------------------------------------------------------- numbers
@pytest.mark.parametrize(
    "width_b, width_s, delay",
    [
        (0.0120000001, WIDTH_S, 0.0),  # 12 ms + 100 ps: off the 250 ps grid
        (WIDTH_B, 5e-9, 0.0),
        (WIDTH_B, 1000.0, 0.0),
        (WIDTH_B, WIDTH_S, -1e-9),
        (WIDTH_B, float("nan"), 0.0),
        (True, WIDTH_S, 0.0),
    ],
)
def test_unrepresentable_times_are_refused_before_sending(emu, width_b, width_s, delay):
    with PulseGenerator(emu.serve_pty()) as pg:
        emu.faults = FaultPlan()
        with pytest.raises(UnrepresentableWidthError) as error:
            pg.configure_pair(width_b, width_s, delay)
        assert emu.commands_received == 0
    assert isinstance(error.value, ValueError)


def test_quantise_round_trip(emu):
    assert RESOLUTION_S == 250e-12
    assert not representable(0.0120000001)
    assert quantise(0.0120000001) == 0.012 and representable(0.012)
    assert representable(0.004 * 3)  # float noise far below 1e-15 relative is tolerated
    assert quantise(9.9e-9) == 10e-9 and representable(0.0, "delay") and not representable(0.0)
    assert quantise(5e-9) == 5e-9 and not representable(quantise(5e-9))  # range is not clamped
    assert not representable(quantise(1001.0))
    with pytest.raises(ValueError, match="kind"):
        representable(1e-6, "volts")
    assert (
        format_time(0.012) == "0.01200000000" and format_time(999.99999999975) == "999.99999999975"
    )
    for bad in (float("inf"), float("nan"), "1e-3"):
        with pytest.raises(UnrepresentableWidthError):
            quantise(bad)
    rng = random.Random(575)
    widths = [quantise(rng.uniform(10e-9, 0.5)) for _ in range(200)]
    for width in widths:
        assert representable(width) and quantise(width) == width
        assert (Decimal(format_time(width)) * 4_000_000_000) % 1 == 0
    with PulseGenerator(emu.serve_pty()) as pg:
        for width in widths[:20]:
            pg.configure_pair(width, quantise(width / 3), quantise(width / 7))
            assert emu.channels[1].width_s == width

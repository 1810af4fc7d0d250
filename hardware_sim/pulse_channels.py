"""The output channels of the emulated BNC 575 and their timing: state, SYNC chains, delays.

Channel numbers: 0 is the system timer T0, 1 is channel A (``CHA``), 2 is B, ... Widths and
delays are integers of 250 ps ticks (:data:`acquisition.bnc575.TICKS_PER_S` per second). A
channel's ``sync`` is ``"T0"`` or another channel's ``CH<letter>``: its delay counts from that
channel's start, so the delay after T0 is the sum along the chain (loops are refused when set).
"""

from __future__ import annotations

from dataclasses import dataclass

from acquisition.bnc575 import TICKS_PER_S

__all__ = ["ChannelState", "channel_letter", "effective_delay_ticks", "sync_source", "syncs_back_to"]


@dataclass
class ChannelState:
    """One output channel (A = 1). Times are held as 250 ps ticks."""

    enabled: bool = False
    width_ticks: int = 400  # 100 ns
    delay_ticks: int = 0
    sync: str = "T0"
    polarity: str = "NORM"
    cmode: str = "NORM"

    @property
    def width_s(self) -> float:
        return self.width_ticks / TICKS_PER_S

    @property
    def delay_s(self) -> float:
        return self.delay_ticks / TICKS_PER_S


def channel_letter(channel: int) -> str:
    """The instrument's name of channel ``channel`` ≥ 1: ``CHA``, ``CHB``, ..."""
    return "CH" + chr(ord("A") + channel - 1)


def sync_source(sync: str) -> int:
    """The channel number a ``sync`` value names (``"T0"`` → 0, ``"CHA"`` → 1, ...)."""
    return 0 if sync == "T0" else ord(sync[2]) - ord("A") + 1


def effective_delay_ticks(channels: dict[int, ChannelState], channel: int) -> int:
    """The delay of ``channel`` after T0, in ticks: its own plus those along its SYNC chain."""
    total, seen = 0, set()
    while channel and channel not in seen:
        seen.add(channel)
        state = channels[channel]
        total += state.delay_ticks
        channel = sync_source(state.sync)
    return total


def syncs_back_to(channels: dict[int, ChannelState], start: int, channel: int) -> bool:
    """True when the SYNC chain from ``start`` reaches ``channel`` (syncing ``channel`` to
    ``start`` would make a loop)."""
    walk, seen = start, set()
    while walk and walk not in seen:
        if walk == channel:
            return True
        seen.add(walk)
        walk = sync_source(channels[walk].sync)
    return False

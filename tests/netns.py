"""A host of the test's own: a network namespace joined to this one by a veth link.

The camera runs inside and reaches the server only through the link, whose far end
(:attr:`Link.host`) is the one address on this side it may use. The link can then be
degraded the ways a rural mobile network is: random loss (an nftables ``numgen`` rule),
a rate cap (``tc tbf``), a cut (every packet dropped, silently, as in a dead zone), and
UDP blocked. Delay comes from :mod:`tests.relay`, since this kernel has no ``netem``.
"""

from __future__ import annotations

import ipaddress
import random
import re
import secrets
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from tests.services import missing

_TABLE = "woundcare_link"


class NetnsError(RuntimeError):
    pass


def _run(*args: str, input: str | None = None) -> None:
    done = subprocess.run(args, input=input, capture_output=True, text=True, timeout=20)
    if done.returncode != 0:
        raise NetnsError(f"{' '.join(args)}: {done.stderr.strip()}")


def _free_subnet() -> ipaddress.IPv4Network:
    """A /30 in 10.0.0.0/8 that no interface here uses."""
    used = subprocess.run(["ip", "-o", "-4", "addr"], capture_output=True, text=True).stdout
    for _ in range(100):
        net = ipaddress.IPv4Network(f"10.{random.randrange(100, 250)}.{random.randrange(256)}.0/30")
        if f" {net.network_address + 1}/" not in used and f" {net.network_address + 2}/" not in used:
            return net
    raise NetnsError("no free 10.x.y.0/30 subnet")


@dataclass
class Link:
    name: str
    """The namespace."""
    host: str
    """This side's address on the link: the only address the namespace can reach."""
    inside: str
    """The namespace's address."""
    host_dev: str
    inside_dev: str

    def command(self, *args: str) -> list[str]:
        """``args`` run inside the namespace."""
        return ["ip", "netns", "exec", self.name, *args]

    def _nft(self, script: str) -> None:
        _run(*self.command("nft", "-f", "-"), input=script)

    def degrade(self, *, loss_percent: int = 0, rate_kbit: int | None = None) -> None:
        """Random loss on every packet in and out of the namespace, and a rate cap on both
        directions. Replaces any earlier degradation (and a cut)."""
        self.restore(loss_percent=loss_percent)
        for dev, run in ((self.inside_dev, self.command), (self.host_dev, lambda *a: list(a))):
            subprocess.run(run("tc", "qdisc", "del", "dev", dev, "root"), capture_output=True)
            if rate_kbit is not None:
                # burst: one full-size packet at least, ~20 ms at this rate; latency: the queue.
                burst = max(1600, rate_kbit * 1000 // 8 // 50)
                _run(*run("tc", "qdisc", "add", "dev", dev, "root", "tbf", "rate", f"{rate_kbit}kbit",
                          "burst", str(burst), "latency", "200ms"))

    def cut(self) -> None:
        """Drop everything on the link, silently, until :meth:`restore`."""
        self._drop("")

    def restore(self, *, loss_percent: int = 0) -> None:
        """Back to random loss only (the rate cap stays)."""
        self._drop(f"numgen random mod 100 < {loss_percent}" if loss_percent else None)

    def block_udp(self) -> None:
        self._drop("meta l4proto udp")

    def dropped(self) -> int:
        """Packets the current rules have dropped."""
        done = subprocess.run(self.command("nft", "-j", "list", "table", "inet", _TABLE),
                              capture_output=True, text=True, timeout=20)
        counters = re.findall(r'"counter": \{"packets": (\d+)', done.stdout)
        return sum(int(c) for c in counters)

    def _drop(self, match: str | None) -> None:
        """Drop what ``match`` selects on the link, both ways (``""``: everything; ``None``: nothing)."""
        body = ""
        if match is not None:
            body = "".join(
                f"  chain {chain} {{ type filter hook {hook} priority 0; {side} \"{self.inside_dev}\" {match} counter drop; }}\n"
                for chain, hook, side in (("in", "input", "iifname"), ("out", "output", "oifname"))
            )
        # Declaring the table first makes the delete succeed on a fresh namespace too.
        self._nft(f"table inet {_TABLE} {{}}\ndelete table inet {_TABLE}\ntable inet {_TABLE} {{\n{body}}}\n")


def _require_tools() -> None:
    for tool in ("ip", "nft", "tc"):
        if shutil.which(tool) is None and shutil.which(tool, path="/usr/sbin:/sbin") is None:
            missing(f"network namespace tests need '{tool}' (Debian iproute2, nftables)")


@contextmanager
def namespace() -> Iterator[Link]:
    """A fresh namespace with a veth link to this one; removed on exit."""
    _require_tools()
    tag = secrets.token_hex(3)
    net = _free_subnet()
    link = Link(
        name=f"wc-{tag}",
        host=str(net.network_address + 1),
        inside=str(net.network_address + 2),
        host_dev=f"wch{tag}",
        inside_dev=f"wcn{tag}",
    )
    try:
        _run("ip", "netns", "add", link.name)
    except NetnsError as exc:
        missing(f"cannot make a network namespace here ({exc})")
    try:
        _run("ip", "link", "add", link.host_dev, "type", "veth", "peer", "name", link.inside_dev)
        _run("ip", "link", "set", link.inside_dev, "netns", link.name)
        _run("ip", "addr", "add", f"{link.host}/30", "dev", link.host_dev)
        _run("ip", "link", "set", link.host_dev, "up")
        _run(*link.command("ip", "addr", "add", f"{link.inside}/30", "dev", link.inside_dev))
        _run(*link.command("ip", "link", "set", link.inside_dev, "up"))
        _run(*link.command("ip", "link", "set", "lo", "up"))
        link.restore()
        yield link
    finally:
        subprocess.run(["ip", "netns", "del", link.name], capture_output=True)
        subprocess.run(["ip", "link", "del", link.host_dev], capture_output=True)

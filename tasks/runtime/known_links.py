"""The stage links a run read or wrote on a host while it holds that host's lock: no other run moves them
then, so what this run saw of a link stays true until it lets the lock go. One per run (the Session's), kept
here rather than on the transport: a host's entry lives exactly as long as the run holds its lock."""
from __future__ import annotations

from ..config import Host


class KnownLinks:
    def __init__(self) -> None:
        self._hosts: dict[Host, dict[str, str | None]] = {}   # {host: {link: target or None}}
        self._last: dict[tuple[Host, str], str | None] = {}    # what the run last knew, kept after the lock goes

    def hold(self, host: Host) -> None:
        """The run holds the host's lock (again, or through a new connection): nothing is known yet."""
        self._hosts[host] = {}

    def drop(self, host: Host) -> None:
        """The lock is let go: another run may move the host's links."""
        self._hosts.pop(host, None)

    def get(self, host: Host, link: str) -> tuple[bool, str | None]:
        """(True, target) when this run, holding the host's lock, read or wrote the link; else (False, None)."""
        links = self._hosts.get(host)
        return (True, links[link]) if links is not None and link in links else (False, None)

    def remember(self, host: Host, link: str, target: str | None) -> None:
        """What the link holds, as this run just read or wrote it (only while the run holds the lock, and only
        a target that every reader reads alike: one line, no surrounding blanks)."""
        links = self._hosts.get(host)
        if links is not None:
            if target is None or (target == target.strip() and "\n" not in target):
                links[link] = target
                self._last[(host, link)] = target
            else:
                links.pop(link, None)
                self._last.pop((host, link), None)

    def forget(self, host: Host, link: str) -> None:
        """The link is being moved: unknown until the command says it is done."""
        links = self._hosts.get(host)
        if links is not None:
            links.pop(link, None)
            self._last.pop((host, link), None)

    def last_seen(self, host: Host, link: str) -> tuple[bool, str | None]:
        """What this run last knew of the link, also after it let the host's lock go (a report's "the release
        the stage ran when this run last saw it"; never a reason to skip a read)."""
        key = (host, link)
        return (True, self._last[key]) if key in self._last else (False, None)

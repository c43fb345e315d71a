"""executor: a host function that raises anything counts as that host failing, never as its success."""
import threading

import pytest

from doit_stages.config import Host
from doit_stages.errors import StepError
from doit_stages.executor import Connections, Executor

HOSTS = [Host("local", hostname="a"), Host("local", hostname="b")]


def _fn(t):
    if t.host.hostname == "b":
        raise ValueError("No closing quotation")
    return "ok"


def test_an_unexpected_exception_fails_its_host_and_names_it(capsys):
    results = Executor(Connections(), parallel=2).outcomes(HOSTS, _fn)
    assert results[0] == "ok"
    assert isinstance(results[1], StepError)
    assert "ValueError: No closing quotation" in str(results[1])
    assert "Traceback" in capsys.readouterr().err      # a bug shows its traceback


def test_each_raises_one_line_for_an_unexpected_exception():
    with pytest.raises(StepError, match=r"failed on 1 of 2 host\(s\): local: internal error ValueError"):
        Executor(Connections(), parallel=2).each(HOSTS, _fn, "switch")


def _together(barrier, timeout=5.0):
    def fn(t):
        barrier.wait(timeout=timeout)     # every host must be under way at once to pass it
        return t.host.hostname
    return fn


def test_wide_works_every_host_at_once_whatever_parallel_says():
    hosts = [Host("local", hostname=c) for c in "abcd"]
    barrier = threading.Barrier(len(hosts))
    assert Executor(Connections(), parallel=1).outcomes(hosts, _together(barrier), wide=True) == list("abcd")


def test_bounded_work_keeps_to_parallel():
    """Without wide, no more than `parallel` hosts are under way: a barrier for three is never passed by two."""
    hosts = [Host("local", hostname=c) for c in "abc"]
    results = Executor(Connections(), parallel=2).outcomes(hosts, _together(threading.Barrier(3), 0.3))
    assert all(isinstance(r, StepError) and "BrokenBarrierError" in str(r) for r in results)


def test_logins_under_way_at_once_are_bounded(monkeypatch):
    """Connections' logins (early ones and get's) keep to `logins` at once: a bastion drops new connections
    beyond its MaxStartups. A login is under way from its connect until its shell answered (wait_login: a
    transport's first command does not wait for it). One that could only pass with three under way would
    wait forever."""
    import doit_stages.executor as executor
    under_way, most, mutex = [0], [0], threading.Lock()

    class Login:
        def wait_login(self):
            threading.Event().wait(0.05)
            with mutex:
                under_way[0] -= 1

    def fake_connect(host, *args):
        with mutex:
            under_way[0] += 1
            most[0] = max(most[0], under_way[0])
        return Login()
    monkeypatch.setattr(executor, "connect", fake_connect)
    hosts = [Host("ssh", hostname=c) for c in "abcde"]
    conns = Connections(logins=2)
    conns.early(hosts[:3])
    got = []
    threads = [threading.Thread(target=lambda h=h: got.append(conns.get(h))) for h in hosts]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert len(got) == 5 and most[0] == 2

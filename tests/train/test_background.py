import threading

import pytest

from tandem.train.background import Background


def test_a_job_runs_off_the_calling_thread_and_wait_returns_its_result():
    jobs, ran_on = Background("job"), []
    jobs.start(lambda: ran_on.append(threading.current_thread().name) or 42)
    assert jobs.wait() == 42
    assert ran_on == ["job"]
    assert jobs.wait() is None  # nothing in flight


def test_the_next_job_waits_for_the_one_before():
    jobs, order, release = Background("job"), [], threading.Event()

    def first():
        release.wait(5)
        order.append("first")

    jobs.start(first)
    release.set()
    jobs.start(lambda: order.append("second"))
    jobs.wait()
    assert order == ["first", "second"]


def test_a_failure_is_raised_in_the_calling_thread_once():
    jobs = Background("job")
    jobs.start(lambda: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        jobs.wait()
    assert jobs.wait() is None


def test_a_failure_stops_the_next_job_from_starting():
    jobs, ran = Background("job"), []
    jobs.start(lambda: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        jobs.start(lambda: ran.append(True))
    assert ran == []

"""PerProcess: one object per process, a fresh one in a forked child, none after reset."""

import os

from flexiai_django.process_local import PerProcess


def test_it_builds_once_and_announces_the_build():
    built, announced = [], []
    holder = PerProcess(lambda: built.append(1) or object(), on_built=announced.append)
    first = holder.get()
    assert holder.get() is first and len(built) == 1 and announced == [first]
    holder.reset()
    assert holder.peek() is None and holder.get() is not first


def test_pop_hands_over_the_value_and_drops_it():
    holder = PerProcess(object)
    assert holder.pop() is None
    first = holder.get()
    assert holder.pop() is first and holder.peek() is None
    assert holder.get() is not first


def test_a_forked_child_gets_its_own():
    holder = PerProcess(os.getpid)
    assert holder.get() == os.getpid()
    read, write = os.pipe()
    child = os.fork()
    if child == 0:  # the child reports what it sees, then leaves at once
        os.write(write, f"{holder.peek()}:{holder.pop()}:{holder.get()}".encode())
        os._exit(0)
    os.close(write)
    seen = os.read(read, 100).decode()
    os.waitpid(child, 0)
    assert seen == f"None:None:{child}"  # the parent's value is never the child's

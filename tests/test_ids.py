"""Request and answer ids: unique, uuid4-hex shaped, and different in a forked worker."""

import os

from flexiai_django.ids import hex_id


def test_ids_are_hex_of_the_asked_length_and_do_not_repeat():
    ids = {hex_id() for _ in range(100_000)}
    assert len(ids) == 100_000
    assert all(len(i) == 32 and int(i, 16) >= 0 for i in list(ids)[:100])
    assert len(hex_id(64)) == 16


def test_a_forked_worker_draws_other_ids_than_its_parent():
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: gunicorn's workers are forked from one parent
        os.write(write, "".join(hex_id() for _ in range(4)).encode())
        os._exit(0)
    os.close(write)
    os.waitpid(pid, 0)
    child = os.read(read, 1024).decode()
    os.close(read)
    parent = "".join(hex_id() for _ in range(4))
    assert len(child) == len(parent) == 128
    assert child != parent

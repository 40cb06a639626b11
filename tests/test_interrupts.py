"""An interrupt during an atomic write waits for the write: the signal still stops the program (as a
KeyboardInterrupt carrying its number), and the file is whole. Without the deferral, torch.save turns
an interrupt that lands inside it into an unrelated RuntimeError ("unexpected pos")."""

from __future__ import annotations

import signal
import time

import torch

from m2po import interrupts
from m2po.fileio import atomic_torch_save


def test_an_interrupt_inside_torch_save_waits_for_the_file(tmp_path):
    obj = {f"t{i}": torch.full((20_000,), float(i)) for i in range(200)}  # ~16 MB, many records
    path = tmp_path / "x.pt"
    t0 = time.perf_counter()
    atomic_torch_save(obj, path)
    took = time.perf_counter() - t0
    previous = interrupts.install(signal.SIGALRM)
    try:
        for fraction in (0.2, 0.5, 0.8):
            path.unlink()
            signal.setitimer(signal.ITIMER_REAL, took * fraction)
            try:
                atomic_torch_save(obj, path)
                time.sleep(took)  # the timer fired after the save: it is raised here
            except KeyboardInterrupt as e:
                assert e.args == (signal.SIGALRM,)
            else:
                raise AssertionError("the interrupt was lost")
            finally:
                signal.setitimer(signal.ITIMER_REAL, 0)
            got = torch.load(path, weights_only=True)
            assert got.keys() == obj.keys() and all(torch.equal(got[k], obj[k]) for k in obj)
            assert not list(tmp_path.glob("*.tmp"))
    finally:
        interrupts.restore(previous)

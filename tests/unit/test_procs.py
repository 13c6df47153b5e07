import pytest

from whoiscrawl.devtools.services.procs import LockBusy, exclusive_lock


class Busy(RuntimeError):
    pass


def test_a_held_lock_makes_the_second_holder_fail_with_the_callers_error(tmp_path):
    path = tmp_path / "run" / "x.lock"
    with exclusive_lock(path, 1, "first"):
        with pytest.raises(Busy, match="another `second` holds"):
            with exclusive_lock(path, 0.2, "second", Busy):
                pass
        with pytest.raises(LockBusy):
            with exclusive_lock(path, 0.2, "third"):
                pass
    with exclusive_lock(path, 0.2, "after release"):  # released on exit
        pass

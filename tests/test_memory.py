"""gfkd.memory: the RSS now, the peak since a reset, and the working set a stage reports (protocol.md §7)."""

import sys

import pytest

from gfkd import memory

linux = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")


@linux
def test_the_peak_is_reset_to_now_and_then_follows_a_new_allocation():
    big = bytearray(64 * 2**20)
    big[:: 4096] = b"x" * len(big[:: 4096])  # touch every page: resident
    del big
    before = memory.peak_rss_bytes()
    assert memory.reset_peak()
    now = memory.rss_bytes()
    assert memory.peak_rss_bytes() < before - 32 * 2**20  # the 64 MB are gone from the peak
    assert abs(memory.peak_rss_bytes() - now) < 16 * 2**20
    block = bytearray(32 * 2**20)
    block[:: 4096] = b"y" * len(block[:: 4096])
    assert memory.peak_rss_bytes() - now > 24 * 2**20  # the working set of the block
    del block


@linux
def test_the_generate_stage_reports_its_own_peak_after_a_larger_earlier_one(tiny_teacher_dir, tiny_root, tmp_path):
    """The stage's peak and working set were read against the process's lifetime peak: after a larger earlier stage
    the peak was that stage's and the working set 0."""
    from gfkd.config import resolve_config
    from gfkd.layout import RunLayout
    from gfkd.stages import generate

    earlier = bytearray(256 * 2**20)  # what gfkd run's teacher stage could leave as the process's peak
    earlier[:: 4096] = b"x" * len(earlier[:: 4096])
    earlier_peak = memory.peak_rss_bytes()
    del earlier
    cfg = resolve_config(None, ["data.dataset=TINY", f"data.root='{tiny_root}'", "generate.iterations=2",
                                "generate.banks=1", "generate.num_graphs=8", "generate.batch_size=8"])
    m = generate.run(cfg, RunLayout(tmp_path / "run"), "k", teacher_dir=tiny_teacher_dir).manifest.metrics
    assert m["generate/mem/peak_rss_bytes"] < earlier_peak - 128 * 2**20
    assert m["generate/mem/measured_alone"] == 1  # nothing else measured in this process: the peak was reset


def _touch(mb: int) -> bytearray:
    block = bytearray(mb * 2**20)
    block[:: 4096] = b"x" * len(block[:: 4096])  # every page resident
    return block


@linux
def test_a_stage_measures_its_own_working_set_and_one_beside_it_does_not_wipe_it():
    """gfkd benchmark runs cells as threads of one process: a measurement that starts while another runs must not
    reset the peak under it (it reads the growth of the process's peak instead)."""
    _touch(64)  # an earlier peak (freed at once), which the first measurement must not count
    with memory.StagePeak() as outer:
        assert outer.alone
        block = _touch(48)
        del block
        with memory.StagePeak() as inner:  # another cell's stage, started beside
            assert not inner.alone
            small = _touch(8)
            inner_peak, inner_growth = inner.read()
            del small
        peak, growth = outer.read()
    assert growth > 40 * 2**20  # the 48 MB, not wiped by the inner start
    assert inner_growth < 16 * 2**20 and inner_peak <= peak  # never more than it could have added
    with memory.StagePeak() as again:  # none running: the peak is reset again
        assert again.alone and again.read()[1] < 16 * 2**20

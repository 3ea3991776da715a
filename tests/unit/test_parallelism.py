"""The parallelism controller's decisions on synthetic throughputs, and the memory bound it works within."""

from collections.abc import Callable

import pytest

from polyv_retriever.transfer.engine import MiB, TransferSettings, plan
from polyv_retriever.transfer.parallelism import Controller, RateMeter, window_seconds


def settle(controller: Controller, rate_at: Callable[[int], float], windows: int = 10) -> list[int]:
    """Feed the controller the rate each level gives until it settles; the levels it went through."""
    levels = [controller.target]
    for _ in range(windows):
        if controller.settled:
            break
        levels.append(controller.observe(rate_at(controller.target)))
    assert controller.settled, f"still moving after {windows} windows: {levels}"
    return levels


def capped_path(per_connection: float, capacity: float) -> Callable[[int], float]:
    return lambda n: min(n * per_connection, capacity)


def test_a_long_path_gets_the_connections_that_fill_it_and_no_more_than_pay() -> None:
    # 4 MiB/s a connection, 64 for the path: 8 give 32; 24 fill it; 32 add nothing, so back to 24.
    controller = Controller(start=8, ceiling=32)
    levels = settle(controller, capped_path(4 * MiB, 64 * MiB))
    assert levels == [8, 24, 32, 24]
    assert controller.target == 24


def test_where_few_streams_suffice_it_steps_back_to_them() -> None:
    # 16 MiB/s a connection: 8 already fill 64 MiB/s; trying 24 shows no gain, so it returns to 8.
    controller = Controller(start=8, ceiling=32)
    levels = settle(controller, capped_path(16 * MiB, 64 * MiB))
    assert levels == [8, 24, 8]
    assert controller.target == 8


def test_more_connections_that_cost_throughput_are_given_up() -> None:
    # A CPU-bound host: every connection added slows the whole (contention), so the first step is undone.
    controller = Controller(start=8, ceiling=32)
    settle(controller, lambda n: 100 * MiB - n * MiB)
    assert controller.target == 8


def test_a_gain_below_ten_percent_does_not_justify_the_step() -> None:
    rates = {8: 50 * MiB, 24: 54 * MiB}  # +8 %
    controller = Controller(start=8, ceiling=32)
    settle(controller, rates.__getitem__)
    assert controller.target == 8


def test_it_stops_at_the_ceiling_when_every_step_pays() -> None:
    controller = Controller(start=8, ceiling=32)
    levels = settle(controller, lambda n: n * 4 * MiB)
    assert levels == [8, 24, 32, 32]  # the last step is measured too: it paid, so it stays
    assert controller.target == 32


@pytest.mark.parametrize(("start", "ceiling"), [(8, 5), (8, 1), (8, 8)])
def test_a_ceiling_at_or_below_the_start_is_the_start_and_needs_no_measuring(
    start: int, ceiling: int
) -> None:
    controller = Controller(start=start, ceiling=ceiling)
    assert controller.target == ceiling
    assert controller.settled
    assert controller.observe(1.0) == ceiling  # a late measurement changes nothing


def test_from_one_connection_the_steps_still_grow() -> None:
    controller = Controller(start=1, ceiling=32, factor=3)
    levels = settle(controller, lambda n: n * MiB)
    assert levels == [1, 3, 9, 27, 32, 32]


def test_the_rate_meter_counts_bytes_over_its_window() -> None:
    now = [100.0]
    meter = RateMeter(clock=lambda: now[0])
    meter.add(5)
    mark = meter.mark()
    meter.add(3 * MiB)
    meter.add(1 * MiB)
    now[0] += 2.0
    assert meter.rate_since(mark) == 2 * MiB
    assert meter.total == 4 * MiB + 5


def test_windows_follow_the_paths_first_byte_time() -> None:
    assert window_seconds(0.0) == (0.2, 0.4)  # loopback: short, not zero
    settle_s, measure_s = window_seconds(0.2)  # the long path's 200 ms
    assert settle_s >= 0.3  # new connections have had their first byte before the window opens
    assert measure_s >= 0.4


@pytest.mark.parametrize("budget_mib", [64, 192, 256])
@pytest.mark.parametrize("part_mib", [5, 8])
def test_the_most_connections_ever_used_keep_part_buffers_within_the_budget(
    budget_mib: int, part_mib: int
) -> None:
    settings = TransferSettings(memory_budget=budget_mib * MiB, min_part_size=part_mib * MiB, max_workers=32)
    the_plan = plan(4096 * MiB, settings, ranged=True)
    controller = Controller(settings.start_workers, the_plan.workers)
    levels = settle(controller, lambda n: n * 4 * MiB)  # a path where every step pays: the worst case
    assert max(levels) * the_plan.part_size <= budget_mib * MiB
    assert max(levels) <= 32

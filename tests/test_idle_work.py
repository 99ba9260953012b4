"""The console's idle work: full garbage collections and the finder's build
wait for a pause in the keys (tui_billing/idle_work.py)."""

from __future__ import annotations

import gc
import time

import pytest

from tui_billing import idle_work
from tui_billing.idle_work import IdleWork


class App:
    def __init__(self):
        self.intervals = []

    def set_interval(self, seconds, callback):
        self.intervals.append((seconds, callback))


@pytest.fixture
def work():
    prepared = []
    w = IdleWork(App(), lambda: prepared.append(time.monotonic()))
    w.prepared = prepared
    before = gc.get_threshold()
    yield w
    w.stop()
    assert gc.get_threshold() == before and gc.get_freeze_count() == 0


@pytest.fixture
def full_collections():
    seen = []

    def note(phase, info):
        if phase == "start" and info["generation"] == 2:
            seen.append(info)

    gc.callbacks.append(note)
    yield seen
    gc.callbacks.remove(note)


def test_after_the_start_full_collections_wait_for_a_pause(work, full_collections):
    threshold = gc.get_threshold()
    work.start()
    assert gc.get_freeze_count() > 0  # what the start made: out of every collection
    assert gc.get_threshold()[:2] == threshold[:2] and gc.get_threshold()[2] > 10**6  # no automatic full one
    assert work.app.intervals == [(idle_work.IDLE / 2, work.tick)]

    work.key()  # the admin types: nothing happens
    work.tick()
    assert full_collections == [] and work.prepared == []

    work.last_key -= idle_work.IDLE  # a second without a key: one full collection, and the finder built
    work.tick()
    assert len(full_collections) == 1 and len(work.prepared) == 1
    work.tick()  # no key since: no other collection
    assert len(full_collections) == 1


def test_a_full_collection_at_least_every_minute_however_fast_the_keys(work, full_collections):
    work.start()
    work.key()
    work.last_full -= idle_work.FULL_EVERY
    work.tick()
    assert len(full_collections) == 1 and work.prepared == []  # nothing built while keys come


def test_stop_puts_the_collector_back(work):
    before = gc.get_threshold()
    work.start()
    work.stop()
    assert gc.get_threshold() == before and gc.get_freeze_count() == 0

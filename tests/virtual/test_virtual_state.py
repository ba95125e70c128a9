"""Durable state of virtual instances: loaded on activation, saved after each message or on
deactivation, fenced by compare-and-set, refused typed when unreadable."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from corps import ActorSystem, NoResponders, PlacementError, RemoteError
from tests.fault.world import wait_for
from tests.virtual.domain import Add, LazyWallet, Stateless, Wallet


async def test_state_survives_deactivation_and_the_node(actor_system_factory: Callable[..., Any]) -> None:
    a: ActorSystem = await actor_system_factory()
    await a.host(Wallet)
    ref = a.ref(Wallet, "w1")
    assert (await ref.ask(Add(5), timeout=5)).total == 5
    assert (await ref.ask(Add(7), timeout=5)).total == 12
    await wait_for(lambda: a.virtual.token(Wallet, "w1") is None, 10, "idle deactivation")
    assert (await ref.ask(Add(1), timeout=5)).total == 13  # reloaded from KV
    await a.__aexit__(None, None, None)  # the node leaves; another hosts the class
    b: ActorSystem = await actor_system_factory()
    await b.host(Wallet)
    assert (await b.ref(Wallet, "w1").ask(Add(1), timeout=5)).total == 14


async def test_state_saved_on_deactivate_includes_what_on_stop_did(actor_system: ActorSystem) -> None:
    await actor_system.host(LazyWallet)
    ref = actor_system.ref(LazyWallet, "w2")
    assert (await ref.ask(Add(2), timeout=5)).total == 2000
    await wait_for(lambda: actor_system.virtual.token(LazyWallet, "w2") is None, 10, "idle deactivation")
    assert (await ref.ask(Add(3), timeout=5)).total == 5001  # total 5, one on_stop saved with it


async def test_a_save_over_a_newer_write_is_fenced(actor_system: ActorSystem) -> None:
    await actor_system.host(Wallet)
    ref = actor_system.ref(Wallet, "w3")
    await ref.ask(Add(1), timeout=5)
    kv = await actor_system._nc.jetstream().key_value(f"{actor_system.namespace}_state")
    await kv.put("Wallet.w3", b"\x82\xa5total\x64\xa5stops\x00")  # another writer: {"total": 100}
    with pytest.raises(RemoteError) as err:
        await ref.ask(Add(1), timeout=5)
    assert err.value.type == "StateFenced"


async def test_unreadable_stored_state_refuses_the_activation(actor_system: ActorSystem) -> None:
    await actor_system.host(Wallet)
    kv = await actor_system._nc.jetstream().key_value(f"{actor_system.namespace}_state")
    await kv.put("Wallet.w4", b"[" * 100_000)
    with pytest.raises(NoResponders):
        await actor_system.ref(Wallet, "w4").ask(Add(1), timeout=5)
    await kv.put("Wallet.w4", b"\x81\xa5total\x07")  # repaired: the next message activates it
    assert (await actor_system.ref(Wallet, "w4").ask(Add(1), timeout=5)).total == 8


async def test_a_durable_class_must_declare_its_state(actor_system: ActorSystem) -> None:
    with pytest.raises(PlacementError, match="declare its state"):
        await actor_system.host(Stateless)

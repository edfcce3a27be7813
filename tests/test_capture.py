"""The shared capture: one pass, scoped hooks, no side effects on the model."""

from __future__ import annotations

import gc
import threading

import pytest
import torch

from explorer import compute_cams
from explorer.capture import CaptureError, capture
from tests.nets import conv_net

ALL_ONE_PASS = ["cam", "gradcam", "gradcampp", "xgradcam", "layercam", "extendedcam"]


def hook_count(model: torch.nn.Module) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks)
               for m in model.modules())


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096


def test_six_methods_use_one_forward_and_one_gradient(monkeypatch):
    net = conv_net()
    forwards = []
    net.model.register_forward_pre_hook(lambda *_: forwards.append(1))
    grads = []
    real_grad = torch.autograd.grad
    monkeypatch.setattr(torch.autograd, "grad", lambda *a, **k: grads.append(1) or real_grad(*a, **k))
    compute_cams(net, torch.randn(4, 3, 32, 32), [0, 1, 2, 3], ALL_ONE_PASS)
    assert len(forwards) == 1 and len(grads) == 1


def test_no_side_effects_on_the_model():
    net = conv_net()
    net.model.train()  # whatever state the caller left: it must be kept
    for p in net.model.conv1.parameters():
        p.requires_grad_(False)
    flags = [p.requires_grad for p in net.model.parameters()]
    compute_cams(net, torch.randn(2, 3, 32, 32), [1, 2], ALL_ONE_PASS)
    assert net.model.training
    assert [p.requires_grad for p in net.model.parameters()] == flags
    assert all(p.grad is None for p in net.model.parameters())
    assert hook_count(net.model) == 0


def test_works_inside_no_grad_and_with_frozen_parameters():
    net = conv_net()
    for p in net.model.parameters():
        p.requires_grad_(False)
    x = torch.randn(2, 3, 32, 32)
    reference = compute_cams(net, x, [0, 1], ["gradcam", "extendedcam"])
    with torch.no_grad():
        inside = compute_cams(net, x, [0, 1], ["gradcam", "extendedcam"])
    for m in reference:
        torch.testing.assert_close(inside[m], reference[m])
        assert inside[m].abs().sum() > 0


def test_in_place_relu_after_the_target_does_not_touch_the_captured_activation():
    net = conv_net(inplace=True)
    x = torch.randn(2, 3, 32, 32)
    cap = capture(net, x, [0, 1], layer="conv2")
    with torch.no_grad():
        pre_relu = net.model.conv2(net.model.relu1(net.model.conv1(x)))
    torch.testing.assert_close(cap.activations, pre_relu)
    assert (cap.activations < 0).any()


def test_hooks_are_removed_after_an_error():
    net = conv_net()
    with pytest.raises(CaptureError, match="one class per image"):
        capture(net, torch.randn(2, 3, 32, 32), [0])
    with pytest.raises((IndexError, RuntimeError)):
        capture(net, torch.randn(1, 3, 32, 32), [99])  # no such class
    assert hook_count(net.model) == 0


def test_1000_calls_leave_no_hooks_and_no_memory_growth():
    net = conv_net()
    x = torch.randn(4, 3, 32, 32)
    for _ in range(50):  # warm-up: allocator pools, lazy inits
        compute_cams(net, x, [0, 1, 2, 3], ALL_ONE_PASS)
    gc.collect()
    before = rss_bytes()
    for _ in range(1000):
        compute_cams(net, x, [0, 1, 2, 3], ALL_ONE_PASS)
    gc.collect()
    growth = rss_bytes() - before
    assert hook_count(net.model) == 0
    assert growth < 16 * 2**20, f"resident memory grew by {growth / 2**20:.1f} MiB over 1000 calls"


def test_concurrent_threads_on_one_shared_model_do_not_cross_talk():
    """Two app sessions share one cached model; each thread's hook must see only its own forward."""
    net = conv_net()
    inputs = [torch.randn(2, 3, 32, 32) for _ in range(4)]
    expected = [compute_cams(net, x, [i, i + 1], ["extendedcam"])["extendedcam"] for i, x in enumerate(inputs)]
    results: dict[int, list[torch.Tensor]] = {i: [] for i in range(4)}
    errors: list[BaseException] = []

    def work(i: int) -> None:
        try:
            for _ in range(40):
                results[i].append(compute_cams(net, inputs[i], [i, i + 1], ["extendedcam"])["extendedcam"])
        except BaseException as exc:  # reported below, with the thread's failure
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    for i in range(4):
        for r in results[i]:
            torch.testing.assert_close(r, expected[i])
    assert hook_count(net.model) == 0


def test_one_backward_for_every_layer_equals_one_capture_per_layer():
    from explorer.capture import capture_layers
    from tests.nets import conv_net

    net = conv_net()  # in-place ReLUs after the convolutions: the recorded outputs must survive them
    x = torch.randn(2, 3, 32, 32)
    together = capture_layers(net, x, [1, 6], ["conv1", "conv2", "relu2"])
    for layer in ("conv1", "conv2", "relu2"):
        alone = capture(net, x, [1, 6], layer)
        torch.testing.assert_close(together[layer].activations, alone.activations)
        torch.testing.assert_close(together[layer].grads, alone.grads, rtol=1e-5, atol=1e-7)

"""Models as users write them: every layer found, measured, finite; the model untouched.

Families: the PyTorch CIFAR-10 tutorial ``Net``, a small ResNet of torchvision-style
BasicBlocks, an ``nn.TransformerEncoder`` with an embedding and a head, an MLP with
Dropout, LayerNorm, GELU, SiLU and softmax. Truth for the parts: the model's own forward
(the transformer sublayers must recompose to the encoder's output), closed-form extremes
of LayerNorm and softmax (the bounds are attained), and random inputs (never outside).
"""

from __future__ import annotations

import copy
import math
import pickle
import warnings

import numpy as np
import pytest
import torch
from real_models import Net, NormMLP, SequenceClassifier, SmallResNet, seeded, uniform
from torch import nn

import causal_widgets as cw
from causal_widgets.network.discovery import find_layers
from causal_widgets.network.layer_norm import layer_norm_bounds

pytestmark = pytest.mark.usefixtures("one_torch_thread")

# the fewest interventions the engine accepts at 2 bins (32 / 16 per table cell)
CHEAP = dict(metrics=["ei_parts", "sensitivity"], bins=2, interventions=128,
             sensitivity_interventions=64)


def encoder_names(prefix: str, layers: int) -> list[str]:
    out = []
    for k in range(layers):
        p = f"{prefix}.layers.{k}"
        out += [f"{p}.self_attn", f"{p}.norm1", f"{p}.linear1..{p}.linear2", f"{p}.norm2"]
    return out


FAMILIES = {
    "cifar_net": (Net, (4, 3, 32, 32),
                  ["conv1", "pool", "conv2", "pool#2", "fc1", "fc2", "fc3"]),
    "resnet": (SmallResNet, (4, 3, 16, 16), ["conv1", "layer1", "layer2", "avgpool", "fc"]),
    "transformer": (SequenceClassifier, (4, 6, 4),
                    ["embed", *encoder_names("encoder", 2), "head"]),
    "norm_mlp": (NormMLP, (4, 6), ["fc1", "norm", "fc2", "fc3"]),
}


def snapshot(model: nn.Module):
    return (
        {k: v.clone() for k, v in model.state_dict().items()},
        {name: m.training for name, m in model.named_modules()},
        {name: p.requires_grad for name, p in model.named_parameters()},
    )


@pytest.mark.parametrize("family", list(FAMILIES))
@pytest.mark.parametrize("train_mode", [False, True])
def test_every_layer_is_measured_and_the_model_is_untouched(family, train_mode):
    factory, shape, names = FAMILIES[family]
    model = seeded(factory, seed=0)
    model.train(train_mode)
    next(model.parameters()).requires_grad_(False)  # a frozen parameter stays frozen
    before = snapshot(model)
    x = uniform(*shape, seed=1)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        df = cw.measure(model, x, in_range=(0, 1), **CHEAP)
    skipped = [str(w.message) for w in caught if "skipped" in str(w.message)]
    assert not skipped, skipped
    assert list(dict.fromkeys(df.layer)) == names
    assert set(df.metric) >= {"ei_parts", "sensitivity"}
    assert np.isfinite(df.value.to_numpy(dtype=float)).all()
    after = snapshot(model)
    assert after[1] == before[1] and after[2] == before[2]
    for k, v in before[0].items():
        assert torch.equal(after[0][k], v), k


def test_resnet_layers_fold_their_norms_and_use_receptive_fields():
    model = seeded(SmallResNet)
    layers = {layer.name: layer for layer in find_layers(model, uniform(2, 3, 16, 16),
                                                         in_range=(0, 1))}
    assert layers["conv1"].dense is not None and layers["conv1"].extra["folded_norm"] == "bn1"
    # stride-1 block: two 3x3 convs -> 5x5 window, all 16 channels; never the whole map
    assert layers["layer1"].n_in == 16 * 5 * 5 and layers["layer1"].out_shape == (16,)
    # strided block: 7x7 window (3 + 2 * stride) of 16 channels
    assert layers["layer2"].n_in == 16 * 7 * 7 and layers["layer2"].out_shape == (16,)


@pytest.mark.parametrize("norm_first", [False, True])
def test_transformer_sublayers_recompose_to_the_encoder(norm_first):
    model = seeded(lambda: SequenceClassifier(norm_first=norm_first), seed=4).eval()
    x = uniform(3, 6, 4, seed=5)
    layers = {layer.name: layer for layer in find_layers(model, x, in_range=(0, 1))}
    att = layers["encoder.layers.0.self_attn"]
    assert att.in_shape == (6, 16) and att.out_shape == (16,)
    assert "sequence length 6" in att.note and att.extra["sequence_length"] == 6
    assert layers["encoder.layers.0.linear1..encoder.layers.0.linear2"].in_shape == (16,)
    o = att.extra["out_position"][0]

    def token(layer, h):  # a per-token layer applied to every token
        return layer.forward_flat(h.reshape(-1, h.shape[-1])).reshape(h.shape)

    def attention(layer, h):
        # the span gives one token, at position o. Unmasked attention without positional
        # terms is permutation-equivariant, so rolling token t to position o and reading
        # position o off gives token t's output of the full layer
        outs = []
        for t in range(h.shape[1]):
            rolled = torch.roll(h, shifts=o - t, dims=1)  # token t sits at position o
            outs.append(layer.forward_flat(rolled.reshape(h.shape[0], -1)))
        return torch.stack(outs, dim=1)

    with torch.no_grad():
        h = model.embed(x)
        want = model.encoder(h)
        for k in range(2):
            p = f"encoder.layers.{k}"
            mlp = layers[f"{p}.linear1..{p}.linear2"]
            n1, n2, sa = layers[f"{p}.norm1"], layers[f"{p}.norm2"], layers[f"{p}.self_attn"]
            if norm_first:
                h = h + attention(sa, token(n1, h))
                h = h + token(mlp, token(n2, h))
            else:
                h = token(n1, h + attention(sa, h))
                h = token(n2, h + token(mlp, h))
    torch.testing.assert_close(h, want, rtol=1e-4, atol=1e-5)
    # every sublayer's range contains what it sees and gives on this batch
    for layer in layers.values():
        assert layer.in_range[0] < layer.in_range[1] and layer.out_range[0] < layer.out_range[1]


def test_layer_norm_bound_is_attained_and_never_exceeded():
    d = 9
    ln = seeded(lambda: nn.LayerNorm(d), seed=6).double()
    lo, hi = layer_norm_bounds(ln, None)
    gamma, beta = ln.weight.detach(), ln.bias.detach()
    # closed form: x = e_i gives normalised value sqrt(d - 1) at i (with eps -> 0)
    bound = math.sqrt(d - 1)
    i = int(torch.argmax(beta + gamma.abs() * bound))
    x = torch.zeros(1, d, dtype=torch.float64)
    x[0, i] = 1e3 if gamma[i] > 0 else -1e3
    with torch.no_grad():
        assert float(ln(x)[0, i]) == pytest.approx(hi, rel=1e-6)
        g = torch.Generator().manual_seed(7)
        y = ln(torch.randn(2000, d, generator=g, dtype=torch.float64) ** 3)
    assert lo <= float(y.min()) and float(y.max()) <= hi


def test_softmax_output_range_is_the_closed_form():
    model = seeded(lambda: nn.Sequential(nn.Linear(3, 4), nn.Softmax(dim=-1)), seed=8)
    (layer,) = find_layers(model, uniform(5, 3), in_range=(0, 1))
    assert layer.dense is None and layer.n_in == 3 and layer.n_out == 4
    w, b = model[0].weight.detach().double(), model[0].bias.detach().double()
    z_hi = float((torch.clamp(w, min=0).sum(1) + b).max())
    z_lo = float((torch.clamp(w, max=0).sum(1) + b).min())
    m, width = 4, z_hi - z_lo
    assert layer.out_range[0] == pytest.approx(1 / (1 + (m - 1) * math.exp(width)), abs=1e-9)
    assert layer.out_range[1] == pytest.approx(1 / (1 + (m - 1) * math.exp(-width)), abs=1e-9)
    inputs = torch.rand(4000, 3, generator=torch.Generator().manual_seed(9))
    with torch.no_grad():
        y = layer.forward_flat(inputs)
        torch.testing.assert_close(y, model(inputs))
    assert layer.out_range[0] <= float(y.min()) and float(y.max()) <= layer.out_range[1]


def test_unsupported_module_by_name_and_bad_example_input_are_clear_errors():
    model = seeded(SequenceClassifier)
    x = uniform(2, 6, 4)
    with pytest.raises(ValueError, match=r"'encoder.layers.0' \(TransformerEncoderLayer\) is "
                                         r"not measured whole.*encoder.layers.0.self_attn"):
        find_layers(model, x, ["encoder.layers.0"], in_range=(0, 1))

    class WithEmbedding(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(3, 3)
            self.emb = nn.Embedding(5, 3)

        def forward(self, x):
            return self.fc(x) + self.emb((x * 4).long()).sum(dim=1)

    with pytest.raises(ValueError, match=r"'emb' \(Embedding\).*measurable: Linear"):
        find_layers(seeded(WithEmbedding), uniform(2, 3), ["emb"], in_range=(0, 1))
    # 5 features where the embedding takes 4: the model's own error, named and chained
    with pytest.raises(TypeError, match=r"could not run the model on example_input of shape "
                                        r"\(2, 6, 5\).*RuntimeError") as err:
        find_layers(model, uniform(2, 6, 5), in_range=(0, 1))
    assert isinstance(err.value.__cause__, RuntimeError)


def test_measured_transformer_state_is_a_snapshot():
    model = seeded(SequenceClassifier)
    x = uniform(2, 6, 4)
    layers = find_layers(model, x, ["encoder.layers.1.self_attn"], in_range=(0, 1))
    ref = copy.deepcopy(layers[0])
    probe = uniform(3, 6 * 16, seed=3)
    with torch.no_grad():
        before = layers[0].forward_flat(probe)
        for p in model.parameters():
            p.add_(1.0)  # training further does not change the measured snapshot
        torch.testing.assert_close(layers[0].forward_flat(probe), before)
        torch.testing.assert_close(ref.forward_flat(probe), before)


class UntraceableClassifier(SequenceClassifier):
    """Data-dependent control flow: torch.fx cannot trace it, forward hooks are used."""

    def forward(self, x):
        if float(x.sum()) > -1:
            x = self.embed(x)
        return self.head(self.encoder(x).mean(dim=1))


def test_transformer_is_split_in_models_torch_fx_cannot_trace():
    model = seeded(UntraceableClassifier)
    layers = find_layers(model, uniform(3, 6, 4), in_range=(0, 1))
    assert [layer.name for layer in layers] == FAMILIES["transformer"][2]
    assert all("forward hooks" in layer.note for layer in layers)


@pytest.mark.parametrize("family", list(FAMILIES))
def test_layers_pickle_and_compute_the_same_after(family):
    # process executors send layers to workers: every layer function must pickle
    factory, shape, names = FAMILIES[family]
    for layer in find_layers(seeded(factory), uniform(*shape), in_range=(0, 1)):
        copy_ = pickle.loads(pickle.dumps(layer))
        v = uniform(5, layer.n_in, seed=2)
        with torch.no_grad():
            torch.testing.assert_close(copy_.forward_flat(v), layer.forward_flat(v))

import pytest
import torch

from otomodel.network import PRESETS, BiHeadedUNet, Mish, NetworkConfig, count_parameters


@pytest.mark.parametrize(
    "preset,size",
    [("tiny", (8, 12, 16)), ("small", (32, 16, 48)), ("compact", (16, 32, 48)), ("paper", (32, 32, 32))],
)
def test_output_shapes(preset, size):
    torch.manual_seed(0)
    net = BiHeadedUNet(NetworkConfig.preset(preset)).eval()
    x = torch.randn(2, 1, *size)
    with torch.no_grad():
        seg, heat = net(x)
        segs, heats = net(x, deep=True)
    assert seg.shape == (2, 1, *size)
    assert heat.shape == (2, 3, *size)
    # Deep supervision: full resolution first, then halves.
    depth = len(PRESETS[preset]) - 1
    assert len(segs) == len(heats) == 1 + min(3, depth - 1)
    for lvl, (s, h) in enumerate(zip(segs, heats)):
        assert s.shape == (2, 1, *[n >> lvl for n in size])
        assert h.shape == (2, 3, *[n >> lvl for n in size])
    assert torch.allclose(segs[0], seg) and torch.allclose(heats[0], heat)


def test_presets_widths():
    assert NetworkConfig.preset("paper").widths == (32, 64, 128, 256, 320)
    assert NetworkConfig.preset("paper").activation == "mish"
    assert NetworkConfig.preset("small").activation == "silu"
    assert NetworkConfig.preset("small", activation="mish").activation == "mish"
    assert NetworkConfig.preset("paper").spatial_multiple == 16
    assert max(NetworkConfig.preset("small").widths) <= 64
    with pytest.raises(ValueError):
        NetworkConfig.preset("huge")


def test_check_input_rejects_bad_sizes():
    net = BiHeadedUNet(NetworkConfig.preset("tiny"))
    net.check_input(torch.zeros(1, 1, 8, 4, 12))
    with pytest.raises(ValueError):
        net.check_input(torch.zeros(1, 1, 8, 6, 12))
    with pytest.raises(ValueError):
        net.check_input(torch.zeros(1, 2, 8, 8, 8))


def test_mish_matches_definition():
    x = torch.linspace(-20, 20, 1001)
    want = x * torch.tanh(torch.log1p(torch.exp(x.clamp(max=30))))
    assert torch.allclose(Mish()(x), want, atol=1e-5)
    if hasattr(torch.nn, "Mish"):
        assert torch.allclose(Mish()(x), torch.nn.Mish()(x), atol=1e-5)


@pytest.mark.parametrize("act", ["leakyrelu", "relu", "gelu", "silu", "prelu"])
def test_activations_and_no_attention(act):
    net = BiHeadedUNet(NetworkConfig(widths=(4, 8), activation=act, attention=False)).eval()
    with torch.no_grad():
        s, h = net(torch.randn(1, 1, 8, 8, 8))
    assert s.shape == (1, 1, 8, 8, 8) and h.shape == (1, 3, 8, 8, 8)
    with pytest.raises(ValueError):
        NetworkConfig(activation="nope") and BiHeadedUNet(NetworkConfig(widths=(4, 8), activation="nope"))


def test_parameter_counts_exclude_terminals():
    net = BiHeadedUNet(NetworkConfig.preset("small"))
    assert count_parameters(net) < count_parameters(net, exported_only=False)
    # The small preset must stay far below the 20 MB ONNX file limit.
    assert count_parameters(net) * 4 < 20e6


def test_compact_preset():
    cfg = NetworkConfig.preset("compact")
    # The paper's architecture with fewer channels at the two finest levels only.
    assert cfg.widths == (4, 8, 32, 64, 64)
    assert cfg.activation == "silu" and cfg.attention
    assert cfg.spatial_multiple == NetworkConfig.preset("small").spatial_multiple == 16
    net = BiHeadedUNet(cfg)
    # Exported parameters (deep-supervision terminals excluded), as measured when
    # the preset was added; the coarse levels hold nearly all of them, so compact is barely
    # smaller than small (1 488 508) while its per-voxel work halves.
    assert count_parameters(net) == 1425188
    assert count_parameters(net) < count_parameters(BiHeadedUNet(NetworkConfig.preset("small")))


def _pad_into(narrow: dict, wide: dict) -> dict:
    """The narrow network's weights placed at the first channels of the wide
    one's (the decoder's concatenation [skip, up]: the first channels of each
    half), every other weight zero: the wide network computes the same
    function, its extra channels dead."""
    out = {}
    for k, w in wide.items():
        t = torch.zeros_like(w)
        n = narrow[k]
        if k.startswith(("seg.blocks.", "heat.blocks.")) and k.endswith(".0.0.weight") and n.shape[1] != w.shape[1]:
            h, H = n.shape[1] // 2, w.shape[1] // 2
            t[: n.shape[0], :h] = n[:, :h]
            t[: n.shape[0], H: H + h] = n[:, h:]
        else:
            t[tuple(slice(0, s) for s in n.shape)] = n
        out[k] = t
    return out


def test_narrow_state_dict_keeps_the_function_of_dead_channels():
    from otomodel.network import narrow_state_dict

    torch.manual_seed(3)
    small = BiHeadedUNet(NetworkConfig(widths=(4, 8, 16), activation="silu")).eval()
    wide = BiHeadedUNet(NetworkConfig(widths=(8, 16, 16), activation="silu")).eval()
    for p in small.parameters():  # instance-norm affine parameters start at 1/0
        p.data.uniform_(-0.5, 0.5)
    wide.load_state_dict(_pad_into(small.state_dict(), wide.state_dict()))
    x = torch.randn(1, 1, 16, 16, 16)
    with torch.no_grad():
        want, got = small(x), wide(x)
        assert torch.allclose(want[0], got[0], atol=1e-4) and torch.allclose(want[1], got[1], atol=1e-4)
        back = narrow_state_dict(wide.state_dict(), small.state_dict(), scale=False)
        assert set(back) == set(small.state_dict())
        for k, v in small.state_dict().items():
            assert torch.equal(back[k], v), k
        # Scaled (the default): only input axes that were cut change, by old/new.
        scaled = narrow_state_dict(wide.state_dict(), small.state_dict())
        assert torch.equal(scaled["encoder.stem.0.0.weight"], back["encoder.stem.0.0.weight"])
        assert torch.allclose(scaled["seg.head.weight"], 2 * back["seg.head.weight"])
    with pytest.raises(ValueError):
        narrow_state_dict(small.state_dict(), wide.state_dict())
